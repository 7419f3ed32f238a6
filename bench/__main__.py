# bench/__main__.py: `python -m bench` (make bench) runs the server benchmarks.
# The desktop client's lag benchmark needs a display: `python -m bench.gui_lag`.

from __future__ import annotations

import sys

from bench import replay

if __name__ == "__main__":
    sys.exit(replay.main(sys.argv[1:]))
