"""Kafka adapters besides the consumers: the publisher, the embedded broker, the decisions relay."""
