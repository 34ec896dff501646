"""The schema of every topic, as faust.Record classes.

Events are JSON without Faust's ``__faust`` metadata (``include_metadata=False``) so that any
Kafka client can read them. Every event is keyed by the member's uuid: one member's events land
in one partition, and Kafka keeps them in order. Events carry only what the consumer needs: no
password (not even its hash), email, phone, name or birth date.

These classes are the contract between the services: each field's type, and the rule the
decoder enforces on it (``Annotated[type, rule]``, :mod:`signupflow.domain.fields`), are what
``signupflow schemas export`` writes as the topic's JSON Schema under ``schemas/``, and what the
compatibility gate (tests/unit/test_contracts.py) checks against the committed schemas. A field
with a default is optional. How to change an event safely: README, "Event contracts".
"""

from __future__ import annotations

from typing import Annotated, Literal, get_args

import faust

from signupflow.domain.fields import IntRange, StyleIds, Text, Timestamp, Uuid

Role = Literal["USER", "PARTNER"]
ROLES: tuple[Role, ...] = get_args(Role)

MemberUuid = Annotated[str, Uuid()]
Nickname = Annotated[str, Text(2, 30)]
#: ISO-8601 with a UTC offset; the decoder normalises it to UTC
Instant = Annotated[str, Timestamp()]
StyleCount = Annotated[int, IntRange(0, 100)]


class Event(faust.Record, abstract=True, serializer="json", include_metadata=False):
    """Base of all signupflow events."""


class ProfileInsert(Event):
    """``profile-insert``: auth -> member. A new member's public profile."""

    uuid: MemberUuid
    role: Role
    nickname: Nickname
    favorite_styles: Annotated[list[int], StyleIds()]
    occurred_at: Instant  # when the signup was accepted


class PartnerCreated(Event):
    """``partner-created``: member -> batch. A partner profile now exists."""

    partner_id: MemberUuid
    nickname: Nickname
    style_count: StyleCount
    occurred_at: Instant  # carried over from the ProfileInsert


class PartnerSummary(Event):
    """Value of the ``partner-summary`` table (and row of batch.db), one per partner."""

    partner_id: MemberUuid
    nickname: Nickname
    style_count: StyleCount
    joined_at: Instant
    summarized_at: Instant
