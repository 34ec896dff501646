"""Revisions of batch.db, oldest first (r0001_..., r0002_...)."""
