"""Alembic script directory of member.db (its revisions are in versions/)."""
