"""Benchmarks: one module per subject (`conv`, `train`), each with `configure` and `run`."""
