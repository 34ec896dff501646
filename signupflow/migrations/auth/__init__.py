"""Alembic script directory of auth.db (its revisions are in versions/)."""
