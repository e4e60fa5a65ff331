"""Benchmarks: each prints its figures and a ratio against a baseline run in the same process.

Run them all with `make bench` (or `python -m bench [overhead|validation|parallel]`). Figures and
commands are recorded in docs/performance.md.
"""
