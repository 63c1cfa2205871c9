"""Benchmark scripts: they print figures measured side by side in one run (never asserted in tests)."""
