"""flexforce allocator: the pure optimisation core (no Kafka, no clocks, no files)."""
