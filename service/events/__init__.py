"""Kafka: versioned wire contracts, the request intake, dead letters and the outbox relay."""
