"""Schemas: Kafka event records (``events``) and each service's database tables (``db``)."""
