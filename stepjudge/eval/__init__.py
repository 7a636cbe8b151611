"""Benchmarks for judges. ``processbench``: the official ProcessBench metric and protocols."""
