"""A JSON writer for fuzzing that can also write what json.dumps will not.

Shared by the decoder fuzzing (tests/protocol/test_fuzz.py) and the server's
(tests/server/test_fuzz_frames.py): raw JSON text (NaN, 1e999, a 5000-digit number,
deep nesting), objects with a key twice, and strings with non-ASCII characters or
lone surrogates left raw.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Raw:
    """JSON text written as is: NaN, 1e999, a 5000-digit integer, deep nesting."""

    text: str


@dataclass
class Pairs:
    """A JSON object as key/value pairs, so that a key can appear twice (mutable: the
    server fuzzing edits its fields in place)."""

    items: Sequence[tuple[str, Any]]


def dump(value: Any, ascii_only: bool = True) -> str:
    """*value* as JSON text; with ascii_only=False, non-ASCII (and surrogates) stay raw."""
    if isinstance(value, Raw):
        return value.text
    if value is None or isinstance(value, bool | int | float):
        return json.dumps(value)  # NaN, Infinity and -Infinity included
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=ascii_only)
    if isinstance(value, list | tuple):
        return "[" + ",".join(dump(v, ascii_only) for v in value) + "]"
    items = value.items if isinstance(value, Pairs) else tuple(value.items())
    return "{" + ",".join(f"{dump(k, ascii_only)}:{dump(v, ascii_only)}" for k, v in items) + "}"
