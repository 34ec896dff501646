"""From member events to partner events, and partner events to partner summaries: pure,
idempotent steps, by the rules of :mod:`signupflow.domain.life` (older is stale, equal is a
redelivery or a conflict, newer applies)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from signupflow.domain.fields import canonical_timestamp
from signupflow.domain.life import Verdict
from signupflow.domain.reuse import Conflict, Fingerprint, conflict
from signupflow.models.events import (
    MemberEvent,
    PartnerChanged,
    PartnerCreated,
    PartnerDeleted,
    PartnerEvent,
    PartnerSummary,
    ProfileChanged,
    ProfileInsert,
)


def partner_created(profile: ProfileInsert) -> PartnerCreated | None:
    """The event member publishes for a profile, or None when it is not a partner."""
    event = partner_event(profile)
    assert event is None or isinstance(event, PartnerCreated)
    return event


def partner_event(event: MemberEvent) -> PartnerEvent | None:
    """The partner event member publishes for a member event, or None for a user's."""
    if event.role != "PARTNER":
        return None
    if isinstance(event, ProfileInsert):
        return PartnerCreated(partner_id=event.uuid, nickname=event.nickname,
                              style_count=len(event.favorite_styles),
                              occurred_at=event.occurred_at, version=event.version)
    if isinstance(event, ProfileChanged):
        return PartnerChanged(kind="changed", partner_id=event.uuid, version=event.version,
                              nickname=event.nickname, style_count=len(event.favorite_styles),
                              occurred_at=event.occurred_at)
    return PartnerDeleted(kind="deleted", partner_id=event.uuid, version=event.version,
                          occurred_at=event.occurred_at)


@dataclass(frozen=True)
class SummaryStep:
    """A partner's summary after an event (None: there is none), the version of its deletion
    (None: not deleted), and what became of the event."""

    summary: PartnerSummary | None
    deleted: int | None
    verdict: Verdict
    reason: str | None = None


def merge_partner(current: PartnerSummary | None, deleted: int | None, event: PartnerEvent,
                  now: datetime) -> SummaryStep:
    """The partner's summary after ``event``; ``deleted`` is the version of its deletion, if
    it was deleted. A conflict (the same version saying something else) raises
    :class:`Conflict`: it is dead-lettered."""
    if deleted is not None and event.version <= deleted:
        if isinstance(event, PartnerDeleted) and event.version == deleted:
            return SummaryStep(None, deleted, "same")
        return SummaryStep(None, deleted, "stale", f"partner deleted at version {deleted}")
    if current is None:
        if isinstance(event, PartnerCreated):
            return SummaryStep(_summary(event, event.occurred_at, now), None, "applied")
        if isinstance(event, PartnerChanged):
            return SummaryStep(None, deleted, "skipped", f"change (version {event.version}) of "
                               "a partner never summarised: its created event did not arrive")
        return SummaryStep(None, event.version, "applied")
    if event.version < current.version:
        return SummaryStep(current, None, "stale", f"version {event.version} is older than the "
                                                   f"summarised {current.version}")
    if event.version == current.version:
        reason = _differs(current, event)
        if reason is not None:
            raise Conflict(reason)
        return SummaryStep(current, None, "same")
    if isinstance(event, PartnerCreated):
        raise Conflict(f"partner {event.partner_id} created again at version {event.version} "
                       f"over version {current.version}")
    if isinstance(event, PartnerDeleted):
        return SummaryStep(None, event.version, "applied")
    return SummaryStep(_summary(event, current.joined_at, now), None, "applied")


def merge_summary(
    current: PartnerSummary | None, event: PartnerCreated, now: datetime
) -> PartnerSummary | None:
    """The new summary for ``event``, or None when ``current`` already reflects it (a
    redelivery). An event that says something else about a partner already summarised at its
    version raises :class:`Conflict`."""
    done = merge_partner(current, None, event, now)
    return done.summary if done.verdict == "applied" else None


def _summary(event: PartnerCreated | PartnerChanged, joined_at: str,
             now: datetime) -> PartnerSummary:
    return PartnerSummary(partner_id=event.partner_id, nickname=event.nickname,
                          style_count=event.style_count, joined_at=joined_at,
                          summarized_at=canonical_timestamp(now), version=event.version)


def _differs(current: PartnerSummary, event: PartnerEvent) -> str | None:
    if isinstance(event, PartnerDeleted):
        return f"partner {event.partner_id}: deletion at version {event.version}, which is " \
               "summarised as a partner"
    joined = event.occurred_at if isinstance(event, PartnerCreated) else current.joined_at
    return conflict(event.partner_id, _fingerprint(current.nickname, current.style_count,
                                                   current.joined_at),
                    _fingerprint(event.nickname, event.style_count, joined))


def _fingerprint(nickname: str, style_count: int, occurred_at: str) -> Fingerprint:
    return Fingerprint.of("PARTNER", nickname, style_count, occurred_at)
