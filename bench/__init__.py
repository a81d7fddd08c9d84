"""Reproducible benchmarks (``make bench``); never part of the test suite."""
