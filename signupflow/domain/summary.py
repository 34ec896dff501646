"""From profile events to partner events and partner summaries: pure, idempotent steps."""

from __future__ import annotations

from datetime import datetime

from signupflow.domain.fields import canonical_timestamp
from signupflow.domain.reuse import Conflict, Fingerprint, conflict
from signupflow.models.events import PartnerCreated, PartnerSummary, ProfileInsert


def partner_created(profile: ProfileInsert) -> PartnerCreated | None:
    """The event member publishes for a profile, or None when it is not a partner."""
    if profile.role != "PARTNER":
        return None
    return PartnerCreated(
        partner_id=profile.uuid,
        nickname=profile.nickname,
        style_count=len(profile.favorite_styles),
        occurred_at=profile.occurred_at,
    )


def merge_summary(
    current: PartnerSummary | None, event: PartnerCreated, now: datetime
) -> PartnerSummary | None:
    """The new summary for ``event``, or None when ``current`` already reflects it.

    Returning None on a redelivered event is what makes the batch stage idempotent: the table,
    its changelog and batch.db are left untouched. An event that says something else about a
    partner already summarised raises :class:`Conflict`: one partner-created per partner.
    """
    if current is not None:
        reason = conflict(event.partner_id, _fingerprint(current.nickname, current.style_count,
                                                         current.joined_at),
                          _fingerprint(event.nickname, event.style_count, event.occurred_at))
        if reason is not None:
            raise Conflict(reason)
        return None
    return PartnerSummary(
        partner_id=event.partner_id,
        nickname=event.nickname,
        style_count=event.style_count,
        joined_at=event.occurred_at,
        summarized_at=canonical_timestamp(now),
    )


def _fingerprint(nickname: str, style_count: int, occurred_at: str) -> Fingerprint:
    return Fingerprint.of("PARTNER", nickname, style_count, occurred_at)
