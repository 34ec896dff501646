"""Revisions of member.db, oldest first (r0001_..., r0002_...)."""
