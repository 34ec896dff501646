"""Revisions of auth.db, oldest first (r0001_..., r0002_...)."""
