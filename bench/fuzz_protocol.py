r"""Coverage-guided fuzzing of the protocol decoder
(atheris, i.e. libFuzzer for Python). Not a test: run it with `make fuzz`,
which makes its own venv (.venv-fuzz) with atheris and runs this for
FUZZ_SECONDS (default 60) with the JSON dictionary and the seed frames:

  .venv-fuzz/bin/python bench/fuzz_protocol.py -max_total_time=60 \
      -dict=bench/fuzz/json.dict bench/fuzz/corpus bench/fuzz/seeds

libFuzzer writes the inputs it finds interesting into the first corpus
folder (bench/fuzz/corpus, not committed) and reads the seeds from the
second. A crash (any exception other than RemoteProtocolError, or a broken
invariant below) stops the run with a `crash-*` file holding the input;
replay it with `.venv-fuzz/bin/python bench/fuzz_protocol.py crash-...`.

What each input goes through, and what must hold:
1. The whole input as one line, through decode_client_line and
   decode_server_line: only RemoteProtocolError may come out.
2. The input as a byte stream, cut into two chunks at a point the input
   picks, through LineDecoder.feed with a small cap, and every line it
   returns decoded both ways: only StreamError / RemoteProtocolError.
3. Every frame that decodes re-encodes (protocol.encode) to a line under
   MAX_LINE_BYTES, which decodes again to the same frame.
"""

from __future__ import annotations

import sys
from pathlib import Path

import atheris

# Run as a script from anywhere: the repository root holds the protocol package.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

with atheris.instrument_imports():
    from parley_chat.protocol import (
        MAX_LINE_BYTES,
        Frame,
        LineDecoder,
        RemoteProtocolError,
        StreamError,
        decode_client_line,
        decode_server_line,
        encode,
    )

#: LineDecoder's cap in step 2: small, so the fuzzer reaches the over-cap paths
#: (a partial line past the cap, a complete one past it) with short inputs.
_STREAM_CAP = 256


def _check_round_trip(frame: Frame, decode: object) -> None:
    line = encode(frame)
    if len(line) >= MAX_LINE_BYTES:
        raise AssertionError(f"re-encoded {frame.TYPE} is {len(line)} bytes")
    again = decode(line[:-1])  # type: ignore[operator]
    if again != frame:
        raise AssertionError(f"round trip changed the frame: {frame!r} -> {again!r}")


def _decode_both(line: bytes) -> None:
    for decode in (decode_client_line, decode_server_line):
        try:
            frame = decode(line)
        except RemoteProtocolError:
            continue
        _check_round_trip(frame, decode)


def test_one_input(data: bytes) -> None:
    """libFuzzer's entry point: one input, checked as described at the top."""
    _decode_both(data)
    cut = data[0] % (len(data) + 1) if data else 0
    decoder = LineDecoder(max_line=_STREAM_CAP)
    lines: list[bytes] = []
    try:
        lines += decoder.feed(data[:cut])
        lines += decoder.feed(data[cut:])
    except StreamError:
        pass
    for line in lines:
        if len(line) > _STREAM_CAP:
            raise AssertionError(f"LineDecoder returned a line of {len(line)} bytes")
        _decode_both(line)


def main() -> None:
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
