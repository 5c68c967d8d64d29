"""Benchmarks of frcnn_core; run ``python -m benchmarks.bench_stages``."""
