"""One module per benchmarked server: each ``prepare(ctx)`` writes its files and says how to start it."""
