"""The alpha-beta(-gamma) profiler: ``python -m collectives.alphabeta``."""
