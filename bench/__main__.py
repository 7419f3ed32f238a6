"""`python -m bench` (make bench) runs the server benchmarks:
replay timing (10k and 1M messages) and throughput under load.
The desktop client's lag benchmark needs a display: `python -m bench.gui_lag`.
"""

from __future__ import annotations

import sys

from bench import load, replay

if __name__ == "__main__":
    rc = replay.main([])
    print()
    sys.exit(rc or load.main([]))
