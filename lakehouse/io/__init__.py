"""I/O at the edges: Kafka (source, admin, producer) and Delta (idempotent writes)."""
