"""Helpers that build tiny random models and tokenizers offline, for tests, benchmarks and --quick runs."""
