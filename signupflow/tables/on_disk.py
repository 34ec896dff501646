"""Whether a table partition's store on disk can be trusted, decided from what it says about
itself and what the broker says about the changelog (pure: no disk, no broker).

A store holds its changelog partition's entries up to an offset, written in the same atomic
batch as the entries (:mod:`signupflow.tables.rocks`), and a marker naming the cluster and
the changelog partition it was built from. It is rebuilt from the changelog when:

* its marker names another cluster, topic or partition (a copy from another deployment);
* it has entries but no marker (not one of ours, or a marker lost with a damaged file);
* its offset is at or past the changelog's end (the topic was deleted and created again, or
  the store came from elsewhere): the records it would need are not those it holds;
* its offset is before the changelog's first record (retention or deleted records passed it):
  the records in between, tombstones among them, are gone, so catching up cannot be exact.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class Identity:
    """Which changelog partition of which cluster a store holds (None: cluster unknown)."""

    cluster: str | None
    topic: str
    partition: int

    def encode(self) -> bytes:
        return json.dumps(asdict(self), sort_keys=True).encode()

    @classmethod
    def decode(cls, raw: bytes) -> Identity | None:
        """The identity a marker holds; None if it is not one."""
        try:
            fields = json.loads(raw)
            return cls(fields["cluster"], str(fields["topic"]), int(fields["partition"]))
        except (ValueError, TypeError, KeyError):
            return None


def mismatch(marker: bytes | None, has_entries: bool, expected: Identity) -> str | None:
    """Why a store with this marker cannot be this partition's, or None if it can be."""
    if marker is None:
        return "it holds entries but no marker of its origin" if has_entries else None
    found = Identity.decode(marker)
    if found is None:
        return f"its marker is unreadable ({marker[:60]!r})"
    if (found.topic, found.partition) != (expected.topic, expected.partition):
        return f"it holds {found.topic}[{found.partition}]"
    if None not in (found.cluster, expected.cluster) and found.cluster != expected.cluster:
        return f"it comes from cluster {found.cluster}, not {expected.cluster}"
    return None


def stale(persisted: int | None, earliest: int | None, end: int | None) -> str | None:
    """Why a store whose last applied changelog offset is ``persisted`` cannot catch up from a
    changelog partition holding offsets ``earliest`` to ``end - 1``; None if it can."""
    if persisted is None or end is None:
        return None
    if persisted >= end:
        return (f"it has applied up to offset {persisted}, but the changelog ends at {end} "
                "(another deployment's, or the topic was created again)")
    if earliest is not None and persisted + 1 < earliest:
        return (f"it has applied up to offset {persisted}, but the changelog now starts at "
                f"{earliest}: the records in between are gone")
    return None
