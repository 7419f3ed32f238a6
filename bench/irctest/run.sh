#!/usr/bin/env bash
# The irctest gate for parley's IRC listener (docs/irc.md, "Conformance").
#
# irctest is not vendored: bring progval/irctest's source to $IRCTEST (default
# /work/irctest), give it a venv of its own ($IRCTEST/.venv with its
# requirements.txt and pytest-xdist), then run this from anywhere:
#
#     bench/irctest/run.sh            # the gate, 2 workers
#     bench/irctest/run.sh -n 1 -x    # extra pytest arguments go last
#
# The server under test is this checkout's (.venv/bin/python runs serve.py).
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
IRCTEST="${IRCTEST:-/work/irctest}"

MODULES=(connection_registration pingpong messages join part names who topic quit cap
  isupport buffering utf8 sasl time message_tags echo_message labeled_responses chathistory)

# Deselected, each for a reason (docs/irc.md lists them too).
DESELECT=(
)

files=()
for m in "${MODULES[@]}"; do files+=("irctest/server_tests/$m.py"); done
deselect=()
for d in "${DESELECT[@]}"; do deselect+=(--deselect "irctest/server_tests/$d"); done

cd "$IRCTEST"
PYTHONPATH="$HERE${PYTHONPATH:+:$PYTHONPATH}" exec .venv/bin/python -m pytest \
  --controller parley_controller \
  -m 'not implementation-specific and not deprecated and not strict' \
  -n 2 -p no:cacheprovider -q -rs \
  "${deselect[@]}" "${files[@]}" "$@"
