"""Benchmarks of the whole pipeline: a worker process on the real broker, measured end to end."""
