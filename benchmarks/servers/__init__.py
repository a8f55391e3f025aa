"""Servers the serving benchmark (``benchmarks/bench_serving.py``) compares deploykit against.

Each module is what a competent user would write for that stack; the model comes from the pickle
file named by ``$BENCH_MODEL`` (written by the harness), so every server serves the same fitted model.
"""
