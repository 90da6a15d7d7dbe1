"""Coffer benchmarks: each module has `main(argv) -> int` and prints one JSON object per line."""
