"""Benchmarks: ``python -m benchmarks`` prints every figure with its reference measured in the same run."""
