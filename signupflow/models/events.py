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

A member's whole life travels on one topic (``profile-insert``: created, changed, deleted), and a
partner's on another (``partner-created``), each kind told apart by its ``kind`` field: Kafka
keeps one key's order within a topic only. Every event carries the member's ``version``, a
per-member sequence number (created is 1, each change or deletion adds one), so that a consumer
can ignore an event older than what it stored. The created kinds were the only events of
version 1 of these topics: their ``kind`` and ``version`` have defaults, so the events already on
the topics read as what they are (docs/decisions/member-lifecycle-events.md).
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
StyleList = Annotated[list[int], StyleIds()]
#: the member's per-member sequence number: 1 at creation, one more for each change or deletion
Version = Annotated[int, IntRange(1, 2**31 - 1)]
Created = Literal["created"]
Changed = Literal["changed"]
Deleted = Literal["deleted"]


class Event(faust.Record, abstract=True, serializer="json", include_metadata=False):
    """Base of all signupflow events."""


class ProfileInsert(Event):
    """``profile-insert``: auth -> member. A new member's public profile."""

    uuid: MemberUuid
    role: Role
    nickname: Nickname
    favorite_styles: StyleList
    occurred_at: Instant  # when the signup was accepted
    kind: Created = "created"
    version: Version = 1


class ProfileChanged(Event):
    """``profile-insert``: auth -> member. A member's public profile, changed (all of it)."""

    kind: Changed
    uuid: MemberUuid
    version: Version
    role: Role
    nickname: Nickname
    favorite_styles: StyleList
    occurred_at: Instant  # when auth accepted the change


class MemberDeleted(Event):
    """``profile-insert``: auth -> member. The account is deleted: its profile must go."""

    kind: Deleted
    uuid: MemberUuid
    version: Version
    role: Role
    occurred_at: Instant  # when auth accepted the deletion


#: Everything on ``profile-insert``, in the order of a member's life.
MemberEvent = ProfileInsert | ProfileChanged | MemberDeleted


class PartnerCreated(Event):
    """``partner-created``: member -> batch. A partner profile now exists."""

    partner_id: MemberUuid
    nickname: Nickname
    style_count: StyleCount
    occurred_at: Instant  # carried over from the ProfileInsert
    kind: Created = "created"
    version: Version = 1


class PartnerChanged(Event):
    """``partner-created``: member -> batch. A partner's profile changed."""

    kind: Changed
    partner_id: MemberUuid
    version: Version
    nickname: Nickname
    style_count: StyleCount
    occurred_at: Instant  # carried over from the ProfileChanged


class PartnerDeleted(Event):
    """``partner-created``: member -> batch. The partner's account is deleted."""

    kind: Deleted
    partner_id: MemberUuid
    version: Version
    occurred_at: Instant  # carried over from the MemberDeleted


#: Everything on ``partner-created``, in the order of a partner's life.
PartnerEvent = PartnerCreated | PartnerChanged | PartnerDeleted


class PartnerSummary(Event):
    """Value of the ``partner-summary`` table (and row of batch.db), one per partner."""

    partner_id: MemberUuid
    nickname: Nickname
    style_count: StyleCount
    joined_at: Instant
    summarized_at: Instant
    version: Version = 1  # of the partner's latest event it reflects
