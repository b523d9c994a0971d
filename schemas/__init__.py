"""flexforce event contract: versioned CloudEvents carried on Kafka."""
