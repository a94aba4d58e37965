"""Benchmarks: `python -m benchmarks` (see README); figures are reported, never asserted."""
