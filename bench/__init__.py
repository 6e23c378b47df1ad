"""Benchmarks and load tools."""
