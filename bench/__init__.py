"""Benchmark programs. They print tables; they are not tests.
`python -m bench` (make bench) runs the server-side ones; bench.gui_lag runs
the desktop client's event-loop lag measurement on a (virtual) display.
"""
