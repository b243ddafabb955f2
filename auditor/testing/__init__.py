"""Helpers for tests and benchmarks: random-weight checkpoints of the real architectures."""
