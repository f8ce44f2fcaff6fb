"""Helpers of `benchmarks/runtime.py`, one job per module: parameter counts, timing, FLOPs, the
backends under test, process memory and cold start, the paper's quoted rows, and the report."""
