"""Alembic script directory of batch.db (its revisions are in versions/)."""
