"""Unit tests for partner events and summaries (signupflow.domain.summary)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from signupflow.domain.reuse import Conflict
from signupflow.domain.summary import merge_summary, partner_created
from signupflow.models.events import PartnerCreated, PartnerSummary, ProfileInsert

UUID = "9e8d7c6b-5a49-4382-9170-6f5e4d3c2b1a"
JOINED = "2024-06-15T09:30:00+00:00"
NOW = datetime(2024, 6, 15, 10, 0, 0, 123000, tzinfo=UTC)


def profile(role: str = "PARTNER", styles: list[int] | None = None) -> ProfileInsert:
    return ProfileInsert(
        uuid=UUID,
        role=role,
        nickname="velvet_amber7",
        favorite_styles=[4, 9, 2] if styles is None else styles,
        occurred_at=JOINED,
    )


def event(nickname: str = "velvet_amber7", style_count: int = 3,
          occurred_at: str = JOINED) -> PartnerCreated:
    return PartnerCreated(
        partner_id=UUID, nickname=nickname, style_count=style_count, occurred_at=occurred_at
    )


def summary(nickname: str = "velvet_amber7", style_count: int = 3,
            joined_at: str = JOINED) -> PartnerSummary:
    return PartnerSummary(
        partner_id=UUID,
        nickname=nickname,
        style_count=style_count,
        joined_at=joined_at,
        summarized_at="2024-06-15T09:31:00+00:00",
    )


# --- partner_created ---------------------------------------------------------------------------


def test_user_profile_creates_no_partner_event() -> None:
    assert partner_created(profile(role="USER")) is None


def test_partner_profile_creates_partner_event() -> None:
    created = partner_created(profile())

    assert isinstance(created, PartnerCreated)
    assert created.asdict() == {
        "partner_id": UUID,
        "nickname": "velvet_amber7",
        "style_count": 3,
        "occurred_at": JOINED,
        "kind": "created",
        "version": 1,
    }


@pytest.mark.parametrize("styles", [[], [1], [1, 2, 3, 4, 5]])
def test_style_count_is_the_number_of_styles(styles: list[int]) -> None:
    created = partner_created(profile(styles=styles))

    assert created is not None
    assert created.style_count == len(styles)


def test_occurred_at_is_carried_over() -> None:
    source = ProfileInsert(
        uuid=UUID, role="PARTNER", nickname="nn", favorite_styles=[1],
        occurred_at="2023-01-02T03:04:05.678901+09:00",
    )

    created = partner_created(source)

    assert created is not None
    assert created.occurred_at == "2023-01-02T03:04:05.678901+09:00"


# --- merge_summary -----------------------------------------------------------------------------


def test_first_event_creates_a_summary() -> None:
    new = merge_summary(None, event(), NOW)

    assert isinstance(new, PartnerSummary)
    assert new.asdict() == {
        "partner_id": UUID,
        "nickname": "velvet_amber7",
        "style_count": 3,
        "joined_at": JOINED,
        "summarized_at": NOW.isoformat(),
        "version": 1,
    }
    assert new.summarized_at == "2024-06-15T10:00:00.123000+00:00"


def test_redelivered_event_is_ignored() -> None:
    first = merge_summary(None, event(), NOW)
    assert first is not None

    later = datetime(2024, 6, 16, tzinfo=UTC)
    assert merge_summary(first, event(), later) is None
    assert merge_summary(summary(), event(), later) is None


@pytest.mark.parametrize(("changes", "named"), [
    ({"nickname": "other_name"}, "nickname 'velvet_amber7' != 'other_name'"),
    ({"style_count": 4}, "styles 3 != 4"),
    ({"occurred_at": "2024-06-15T09:29:59+00:00"}, "occurred_at"),
    ({"occurred_at": "2024-06-16T00:00:00+00:00"}, "occurred_at"),
])
def test_a_different_event_for_a_summarised_partner_is_a_conflict(
    changes: dict[str, object], named: str
) -> None:
    with pytest.raises(Conflict) as raised:
        merge_summary(summary(), event(**changes), NOW)  # type: ignore[arg-type]
    assert f"uuid {UUID} reused with different content" in str(raised.value)
    assert named in str(raised.value)


def test_the_same_instant_in_another_offset_is_a_redelivery() -> None:
    """18:00+09:00 is 09:00 UTC: the same event, not a conflict (instants, not strings)."""
    current = summary(joined_at="2024-06-15T09:00:00+00:00")
    again = event(occurred_at="2024-06-15T18:00:00+09:00")

    assert merge_summary(current, again, NOW) is None
