"""A member's whole life as member stores it: which event applies, which is old news.

Pure: a member's state and one event in, the next state and a verdict out. Every rule that
keeps member.db equal to the last event of each member lives here, so the property test
(tests/unit/test_life.py) can replay random lives with the redeliveries Kafka allows and
compare the end states, without a database.

The rules, by the event's ``version`` (the member's sequence number, one more per event):

* older than what is stored: **stale**, ignored (a redelivered prefix must not undo a newer
  change or bring a deleted member back);
* equal: **same**, a redelivery: nothing changes (a partner's event is published again, in case
  the first publish was lost in a crash). The same version with other content is a
  **conflict** (a uuid reused: a producer bug or a forgery) and is dead-lettered;
* newer: **applied**. A deletion leaves a tombstone (``Gone``) with its version;
* a change of a member never stored (its created event was dead-lettered) is **skipped**,
  recorded with its reason rather than dead-lettered again and again; a deletion of one is
  applied (its tombstone stops a late insert).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from signupflow.domain.reuse import Fingerprint, conflict, instant
from signupflow.models.events import MemberDeleted, MemberEvent, ProfileChanged, ProfileInsert

Verdict = Literal["applied", "same", "stale", "skipped", "conflict"]
#: The outcome ``signupflow_events_total`` counts for each verdict but a conflict (a dead
#: letter): a redelivery (``same``) is ignored as what is stored already, like an older event.
OUTCOME: dict[Verdict, str] = {"applied": "applied", "same": "stale", "stale": "stale",
                               "skipped": "skipped"}


@dataclass(frozen=True)
class Profile:
    """A stored profile: role (its table), nickname, styles, when the member joined, version."""

    role: str
    nickname: str
    styles: frozenset[int]
    joined_at: datetime
    version: int

    def fingerprint(self) -> Fingerprint:
        return Fingerprint(self.role, self.nickname, self.styles, self.joined_at)


@dataclass(frozen=True)
class Gone:
    """A deleted member's tombstone: nothing of ``version`` or older brings it back."""

    role: str
    version: int


State = Profile | Gone | None


@dataclass(frozen=True)
class Step:
    state: State
    verdict: Verdict
    #: why an event was not applied (stale, skipped, conflict); None when it was
    reason: str | None = None


def step(state: State, event: MemberEvent) -> Step:
    """The state after ``event``, and what became of it."""
    if isinstance(state, Gone):
        if isinstance(event, MemberDeleted) and event.version == state.version:
            return Step(state, "same")
        return Step(state, "stale", f"member deleted at version {state.version}")
    if state is None:
        if isinstance(event, ProfileChanged):
            return Step(None, "skipped", f"change (version {event.version}) of a member never "
                                         "stored: its created event did not reach member")
        return Step(_new_state(None, event), "applied")
    if event.role != state.role:
        return Step(state, "conflict", f"uuid {event.uuid} reused with different content "
                                       f"(stored vs event): role {state.role!r} != "
                                       f"{event.role!r}")
    if event.version < state.version:
        return Step(state, "stale", f"version {event.version} is older than the stored "
                                    f"{state.version}")
    if event.version == state.version:
        reason = _differs(state, event)
        return Step(state, "same") if reason is None else Step(state, "conflict", reason)
    if isinstance(event, ProfileInsert):  # created is version 1: nothing is older
        return Step(state, "conflict", f"uuid {event.uuid} created again at version "
                                       f"{event.version} over version {state.version}")
    return Step(_new_state(state, event), "applied")


def _new_state(state: Profile | None, event: MemberEvent) -> State:
    if isinstance(event, MemberDeleted):
        return Gone(event.role, event.version)
    joined = instant(event.occurred_at) if state is None else state.joined_at
    return Profile(event.role, event.nickname, frozenset(event.favorite_styles), joined,
                   event.version)


def _differs(state: Profile, event: MemberEvent) -> str | None:
    """Why an event of the stored version says something else (None: it does not)."""
    if isinstance(event, MemberDeleted):
        return f"uuid {event.uuid}: deletion at version {event.version}, which is stored as " \
               "a profile"
    joined = instant(event.occurred_at) if isinstance(event, ProfileInsert) else state.joined_at
    theirs = Fingerprint(event.role, event.nickname, frozenset(event.favorite_styles), joined)
    return conflict(event.uuid, state.fingerprint(), theirs)


def fold(state: State, events: list[MemberEvent]) -> tuple[State, list[Step]]:
    """``step`` over one member's events in order: the final state and each event's step."""
    steps = []
    for event in events:
        done = step(state, event)
        state = done.state
        steps.append(done)
    return state, steps
