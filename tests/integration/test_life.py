"""A member's whole life under faults: every store ends at every member's last event.

2,000 members (``SIGNUPFLOW_LIFE_MEMBERS``), each with a random life (signup, 0 to 3 changes,
maybe a deletion), issued as fast as the API accepts them through two auth workers sharing one
PostgreSQL outbox (a member's requests go to either worker, so its events are written by both
relays' neighbours), while kill -9 hits member, batch and the broker in turn. Then every
profile, style, tombstone and summary must be what the member's last accepted request said,
with its version, and ``signupflow verify`` must find nothing wrong. ``make soak
SOAK_TESTS=tests/integration/test_life.py`` runs it in a loop.
"""

from __future__ import annotations

import asyncio
import base64
import os
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import aiohttp

from signupflow.domain.fake import LifeStep, fake_lives
from tests.integration.system import System

MEMBERS = int(os.environ.get("SIGNUPFLOW_LIFE_MEMBERS", "2000"))
CONCURRENCY = 32


@dataclass
class Outcome:
    """What auth accepted for one member: its uuid, role, and last state (None: deleted)."""

    uuid: str
    role: str
    version: int
    nickname: str | None
    styles: frozenset[int] | None


@dataclass
class Driver:
    """Runs the lives against the auth workers on a thread of its own; ``outcomes`` fills in
    as members finish."""

    urls: list[str]
    lives: list[tuple[dict[str, Any], list[LifeStep]]]
    outcomes: list[Outcome] = field(default_factory=list)
    requests: int = 0
    error: BaseException | None = None
    thread: threading.Thread | None = None

    def start(self) -> None:
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def join(self, timeout: float) -> list[Outcome]:
        assert self.thread is not None
        self.thread.join(timeout)
        assert not self.thread.is_alive(), f"lives not done in {timeout:.0f}s"
        if self.error is not None:
            raise self.error
        return self.outcomes

    def _run(self) -> None:
        try:
            asyncio.run(self._all())
        except BaseException as exc:  # reported by join
            self.error = exc

    async def _all(self) -> None:
        gate = asyncio.Semaphore(CONCURRENCY)
        timeout = aiohttp.ClientTimeout(total=60)
        async with aiohttp.ClientSession(timeout=timeout) as session:

            async def one(i: int, body: dict[str, Any], actions: list[LifeStep]) -> None:
                async with gate:
                    outcome = await self._life(session, random.Random(i), body, actions)
                    if outcome is not None:
                        self.outcomes.append(outcome)

            await asyncio.gather(*(one(i, b, a) for i, (b, a) in enumerate(self.lives)))

    async def _life(self, session: aiohttp.ClientSession, rng: random.Random,
                    body: dict[str, Any], actions: list[LifeStep]) -> Outcome | None:
        status, answer = await self._send(session, rng, "POST", "/signup", body)
        assert status == 201, (status, answer)
        uuid = answer["uuid"]
        outcome = Outcome(uuid, body["role"], 1, body["nickname"],
                          frozenset(body["favorite_styles"]))
        credentials = base64.b64encode(f"{body['email']}:{body['password']}".encode()).decode()
        auth = {"Authorization": f"Basic {credentials}"}
        for change in actions:
            if change is not None:
                status, answer = await self._send(session, rng, "PATCH", f"/accounts/{uuid}",
                                                  change, auth)
                assert status == 200, (status, answer)
                assert answer["version"] == outcome.version + 1, answer
                outcome.version = answer["version"]
                outcome.nickname = answer["nickname"]
                outcome.styles = frozenset(answer["favorite_styles"])
            else:
                status, answer = await self._send(session, rng, "DELETE", f"/accounts/{uuid}",
                                                  None, auth)
                assert status == 204, (status, answer)
                outcome.version += 1
                outcome.nickname = outcome.styles = None
        return outcome

    async def _send(self, session: aiohttp.ClientSession, rng: random.Random, method: str,
                    path: str, body: dict[str, Any] | None,
                    headers: dict[str, str] | None = None) -> tuple[int, Any]:
        """One request to either auth worker, again after a shed (429/503) or a lost answer
        only when the request cannot have been applied twice (never for a change: a lost
        answer to a PATCH that did apply would be applied again, one version more)."""
        for attempt in range(60):
            url = rng.choice(self.urls) + path
            self.requests += 1
            async with session.request(method, url, json=body, headers=headers) as resp:
                if resp.status in (429, 503):
                    await asyncio.sleep(min(0.1 * 2 ** attempt, 2.0))
                    continue
                answer = await resp.json() if resp.content_type == "application/json" else None
                return resp.status, answer
        raise AssertionError(f"{method} {path}: shed 60 times")


def test_every_store_ends_at_every_members_last_event_through_kills(
    tmp_system: System,
) -> None:
    lives = fake_lives(MEMBERS, 0.4, seed=41)
    with tmp_system.databases("postgresql"):
        tmp_system.start()
        tmp_system.start_extra("auth-2", "auth")
        driver = Driver([tmp_system.url("auth"), tmp_system.url("auth-2")], lives)
        driver.start()
        for service in ("member", "batch"):
            wanted = len(driver.outcomes) + MEMBERS // 10

            def going_on(wanted: int = wanted) -> bool:
                return len(driver.outcomes) >= wanted

            tmp_system.wait_until(going_on, 300, f"lives going on before the kill of {service}")
            tmp_system.kill(service)
            time.sleep(1)
            tmp_system.start(service)
            tmp_system.wait_until(partial(tmp_system.ready, service), 120,
                                  f"{service} ready again")
        tmp_system.stop_broker(kill=True)
        time.sleep(2)
        tmp_system.start_broker()
        outcomes = driver.join(900)
        assert len(outcomes) == MEMBERS
        assert_every_store_at_the_last_event(tmp_system, outcomes)
        tmp_system.assert_consistent()


def assert_every_store_at_the_last_event(system: System, outcomes: list[Outcome]) -> None:
    live = {o.uuid: o for o in outcomes if o.nickname is not None}
    gone = {o.uuid: o for o in outcomes if o.nickname is None}
    partners = {u: o for u, o in live.items() if o.role == "PARTNER"}

    def profiles() -> dict[str, tuple[str, str, int]]:
        return {u: (role, n, v) for role, table in (("USER", "user_profile"),
                                                    ("PARTNER", "partner_profile"))
                for u, n, v in system.query("member", f"SELECT uuid, nickname, version "
                                                      f"FROM {table}")}

    want = {u: (o.role, o.nickname, o.version) for u, o in live.items()}
    settle(profiles, want, "every live member's profile at its last version")
    styles: dict[str, set[int]] = {}
    for u, s in system.query("member", "SELECT uuid, style_id FROM favorite_style"):
        styles.setdefault(u, set()).add(s)
    assert {u: frozenset(s) for u, s in styles.items()} == {
        u: o.styles for u, o in live.items() if o.styles}
    tombstones = dict(system.query("member", "SELECT uuid, version FROM member_tombstone"))
    assert tombstones == {u: o.version for u, o in gone.items()}
    assert system.query("member", "SELECT uuid FROM skipped_event") == []

    def summaries() -> dict[str, tuple[str, int, int]]:
        return {p: (n, c, v) for p, n, c, v in system.query(
            "batch", "SELECT partner_id, nickname, style_count, version FROM partner_summary")}

    want_summaries = {u: (o.nickname, len(o.styles or ()), o.version)
                      for u, o in partners.items()}
    settle(summaries, want_summaries, "every live partner's summary at its last version")
    partner_tombstones = dict(system.query("batch",
                                           "SELECT partner_id, version FROM partner_tombstone"))
    assert partner_tombstones == {u: o.version for u, o in gone.items() if o.role == "PARTNER"}
    erased = system.query("auth", "SELECT uuid FROM member WHERE deleted_at IS NOT NULL AND "
                                  "(email IS NOT NULL OR password_hash IS NOT NULL OR name IS "
                                  "NOT NULL OR phone IS NOT NULL OR birth IS NOT NULL)")
    assert erased == []
    assert {u for (u,) in system.query("auth", "SELECT uuid FROM member WHERE deleted_at IS "
                                               "NOT NULL")} == set(gone)


def settle(read: Callable[[], dict[str, Any]], want: dict[str, Any], what: str,
           timeout: float = 300) -> None:
    """Wait until ``read()`` is ``want``; otherwise fail naming what is missing, extra or
    different (a sample of each)."""
    deadline = time.monotonic() + timeout
    while (got := read()) != want and time.monotonic() < deadline:
        time.sleep(1)
    missing = sorted(set(want) - set(got))
    extra = sorted(set(got) - set(want))
    different = sorted(u for u in set(want) & set(got) if want[u] != got[u])
    assert got == want, (
        f"{what}: {len(missing)} missing {[(u, want[u]) for u in missing[:5]]}, "
        f"{len(extra)} extra {[(u, got[u]) for u in extra[:5]]}, {len(different)} different "
        f"{[(u, want[u], got[u]) for u in different[:5]]}")
