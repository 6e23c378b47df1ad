"""The synthetic Python client: pre-encoded media, signaling, load tools for tests and benchmarks."""
