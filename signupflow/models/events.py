"""The schema of every topic, as faust.Record classes.

Events are JSON without Faust's ``__faust`` metadata (``include_metadata=False``) so that any
Kafka client can read them. Every event is keyed by the member's uuid: one member's events land
in one partition, and Kafka keeps them in order. Events carry only what the consumer needs: no
password (not even its hash), email, phone, name or birth date.
"""

from __future__ import annotations

from typing import Literal, get_args

import faust

Role = Literal["USER", "PARTNER"]
ROLES: tuple[Role, ...] = get_args(Role)


class Event(faust.Record, abstract=True, serializer="json", include_metadata=False):
    """Base of all signupflow events."""


class ProfileInsert(Event):
    """``profile-insert``: auth -> member. A new member's public profile."""

    uuid: str
    role: Role
    nickname: str
    favorite_styles: list[int]
    occurred_at: str  # ISO-8601 with offset: when the signup was accepted


class PartnerCreated(Event):
    """``partner-created``: member -> batch. A partner profile now exists."""

    partner_id: str
    nickname: str
    style_count: int
    occurred_at: str  # carried over from the ProfileInsert


class PartnerSummary(Event):
    """Value of the ``partner-summary`` table (and row of batch.db), one per partner."""

    partner_id: str
    nickname: str
    style_count: int
    joined_at: str
    summarized_at: str
