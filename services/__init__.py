"""flexforce services: Kafka plumbing, Faust workers, CLI and adapters."""
