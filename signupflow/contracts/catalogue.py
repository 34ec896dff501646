"""What each topic carries, who writes it and who reads it: the contracts between the services.

A contract's kinds are shapes read from the Records (or, for dead letters, from their headers);
a topic that carries several kinds of event (a member's whole life on one topic, to keep its
order) lists them all, told apart by a ``discriminator`` field. Its ``version`` names the
committed schema file, ``schemas/<topic>/v<version>.json``: a deliberate break is a new version
(README, "Event contracts").
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

from signupflow import dlq, tracing
from signupflow.domain.fields import Pattern
from signupflow.models.events import (
    MemberDeleted,
    MemberUuid,
    PartnerChanged,
    PartnerCreated,
    PartnerDeleted,
    PartnerSummary,
    ProfileChanged,
    ProfileInsert,
)
from signupflow.models.shape import Field, Shape, field_of, shape_of, shape_of_mapping
from signupflow.settings import Service, load_settings
from signupflow.tables.partner_summary import TABLE_NAME as PARTNER_SUMMARY
from signupflow.topics import PARTNER_CREATED, PROFILE_INSERT, changelog_topic, dlq_topic

#: The defaults every value here is generated with (no environment: the document is the same
#: on every machine).
DEFAULTS = load_settings({})
TRACEPARENT = "^[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$"

TRACE_HEADERS = shape_of_mapping(
    "TraceHeaders", "W3C trace context of the signup, when tracing is on (README, Seeing the "
    "flow).", {}, optional={tracing.HEADER: Annotated[str, Pattern(TRACEPARENT)]})
DEAD_LETTER_HEADERS = shape_of_mapping(
    "DeadLetterHeaders", "Why and where from an event was dead-lettered; the key and value are "
    "the original bytes, unchanged.", dlq.HEADER_FIELDS)
MEMBER_KEY = field_of("key", MemberUuid)


@dataclass(frozen=True)
class Contract:
    topic: str
    #: the committed schema this code keeps to: ``schemas/<topic>/v<version>.json``
    version: int
    summary: str
    #: the kinds of message on the topic (one Record each; several: a tagged union)
    kinds: tuple[Shape, ...]
    sent_by: tuple[Service, ...]
    read_by: tuple[Service, ...]
    key_description: str
    #: the field whose value tells the kinds apart (None: one kind)
    discriminator: str | None = None
    #: what the schema describes: the JSON value, or the headers (dead letters)
    part: Literal["value", "headers"] = "value"
    #: the key's schema (None: any bytes)
    key: Field | None = MEMBER_KEY
    #: how the key's bytes hold it: its UTF-8 text, or JSON (Faust's table keys)
    key_encoding: Literal["utf-8", "json"] = "utf-8"
    #: headers a message may carry besides the contract's part
    headers: Shape | None = None
    #: Kafka topic settings signupflow gives the topic
    config: Mapping[str, Any] = field(default_factory=dict)

    @property
    def file(self) -> str:
        """The committed schema's path under ``schemas/``."""
        return f"{self.topic}/v{self.version}.json"


def _dead_letters(source: Contract) -> Contract:
    return Contract(
        topic=dlq_topic(source.topic), version=1,
        summary=f"Events of {source.topic} that {' and '.join(source.read_by)} could not use, "
                "with the reason in the headers (signupflow dlq show|replay).",
        kinds=(DEAD_LETTER_HEADERS,), sent_by=source.read_by, read_by=(),
        key_description=f"the original key of the {source.topic} event, unchanged",
        part="headers", key=None, config={"retention.ms": int(DEFAULTS.dlq_retention * 1000)})


PROFILE_INSERT_CONTRACT = Contract(
    topic=PROFILE_INSERT, version=2,
    summary="A member's whole life, in order: created, profile changed, deleted; from auth's "
            "outbox to member. An event without a kind is a created one (version 1).",
    kinds=(shape_of(ProfileInsert), shape_of(ProfileChanged), shape_of(MemberDeleted)),
    discriminator="kind", sent_by=("auth",), read_by=("member",),
    key_description="the member's uuid: one member's events stay in order",
    headers=TRACE_HEADERS)

PARTNER_CREATED_CONTRACT = Contract(
    topic=PARTNER_CREATED, version=2,
    summary="A partner's life, in order: created, changed, deleted; from member to batch. An "
            "event without a kind is a created one (version 1).",
    kinds=(shape_of(PartnerCreated), shape_of(PartnerChanged), shape_of(PartnerDeleted)),
    discriminator="kind", sent_by=("member",), read_by=("batch",),
    key_description="the partner's uuid (the member's)", headers=TRACE_HEADERS)

PARTNER_SUMMARY_CONTRACT = Contract(
    topic=changelog_topic(DEFAULTS.app_ids["batch"], PARTNER_SUMMARY), version=1,
    summary="The changelog of batch's partner-summary table: one summary per partner, read "
            "back by batch when it starts (the name follows SIGNUPFLOW_BATCH_APP_ID).",
    kinds=(shape_of(PartnerSummary),), sent_by=("batch",), read_by=("batch",),
    key_description="the partner's uuid as a JSON string (Faust's table key), in the partition "
                    "of its partner-created event",
    key_encoding="json", config={"cleanup.policy": ["compact"]})

CONTRACTS: tuple[Contract, ...] = (
    PROFILE_INSERT_CONTRACT,
    _dead_letters(PROFILE_INSERT_CONTRACT),
    PARTNER_CREATED_CONTRACT,
    _dead_letters(PARTNER_CREATED_CONTRACT),
    PARTNER_SUMMARY_CONTRACT,
)


def contract(topic: str) -> Contract:
    return next(c for c in CONTRACTS if c.topic == topic)
