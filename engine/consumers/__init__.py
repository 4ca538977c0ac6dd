"""Ways events reach the engine: JSON Lines files (here) and Kafka (engine.consumers.kafka)."""
