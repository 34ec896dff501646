"""Faults on the real broker and real worker processes: nothing lost, nothing duplicated.

Each test has its own broker. Load comes from ``signupflow signup`` running in the background
while a worker is killed with SIGKILL (no shutdown hook, no final commit or flush) or the
broker is stopped. Afterwards, the exact row counts and ``signupflow verify`` must agree.
"""

from __future__ import annotations

import contextlib
import sqlite3
import time

import pytest

from signupflow.settings import SERVICES
from signupflow.topics import PARTNER_CREATED, PROFILE_INSERT
from tests.integration.kafka_util import lag, read_topic
from tests.integration.system import System, finish

LOAD = 2000


def test_member_killed_mid_load_loses_and_duplicates_nothing(tmp_system: System) -> None:
    tmp_system.start()
    load = tmp_system.signup(LOAD, seed=11)
    tmp_system.wait_until(lambda: tmp_system.profiles() >= 200, 120, "member under load")
    tmp_system.kill("member")
    time.sleep(2)
    tmp_system.start("member")
    assert finish(load) == LOAD
    tmp_system.assert_exactly(LOAD, seed=11)
    tmp_system.assert_counted_per_minute()  # the redelivered events were not counted twice


def test_batch_killed_mid_load_recovers_its_table_from_the_changelog(
    tmp_system: System,
) -> None:
    tmp_system.start()
    load = tmp_system.signup(LOAD, seed=12)
    tmp_system.wait_until(lambda: tmp_system.count("batch", "partner_summary") >= 60, 120,
                          "batch under load")
    tmp_system.kill("batch")
    time.sleep(2)
    tmp_system.start("batch")
    assert finish(load) == LOAD
    # verify compares batch.db with the table served by the restarted worker
    tmp_system.assert_exactly(LOAD, seed=12)


def test_auth_killed_between_commit_and_publish_publishes_after_restart(
    tmp_system: System,
) -> None:
    tmp_system.start("member", "batch")
    tmp_system.start("auth", SIGNUPFLOW_OUTBOX_RELAY="off")  # commit, never publish
    accepted = finish(tmp_system.signup(300, seed=13))
    assert accepted == 300
    assert read_topic(tmp_system.bootstrap, PROFILE_INSERT) == []
    assert tmp_system.count("auth", "member") == 300 and tmp_system.profiles() == 0
    tmp_system.kill("auth")
    tmp_system.start("auth")
    tmp_system.assert_exactly(300, seed=13)


def test_auth_killed_mid_load_leaves_no_account_without_profile(tmp_system: System) -> None:
    tmp_system.start()
    load = tmp_system.signup(LOAD, seed=14)
    tmp_system.wait_until(lambda: tmp_system.count("auth", "member") >= 300, 120,
                          "auth under load")
    tmp_system.kill("auth")
    time.sleep(1)
    tmp_system.start("auth")
    finish(load)  # requests in flight at the kill fail; the client reports them rejected
    accounts = tmp_system.count("auth", "member")
    assert 300 <= accounts <= LOAD
    tmp_system.wait_until(lambda: tmp_system.profiles() == accounts, 180,
                          "a profile for every account")
    tmp_system.assert_consistent()


def test_workers_joining_and_leaving_mid_load_lose_and_duplicate_nothing(
    tmp_system: System,
) -> None:
    """Scaling out and back in: two rebalances per group (join, leave) while events flow."""
    tmp_system.start()
    load = tmp_system.signup(LOAD, seed=17)
    tmp_system.wait_until(lambda: tmp_system.profiles() >= 200, 120, "the system under load")
    tmp_system.start_extra("member-2", "member")
    tmp_system.start_extra("batch-2", "batch")
    profiles = tmp_system.profiles()
    tmp_system.wait_until(lambda: tmp_system.profiles() >= profiles + 200, 120,
                          "progress with two workers per service")
    tmp_system.stop("member-2", "batch-2")  # graceful: they hand their partitions back
    assert finish(load) == LOAD
    tmp_system.assert_exactly(LOAD, seed=17)
    tmp_system.assert_counted_per_minute()


def test_two_auth_workers_on_one_postgresql_database_publish_each_event_once(
    tmp_system: System,
) -> None:
    """Both relays poll the same outbox; row locks (SKIP LOCKED) split it between them."""
    with tmp_system.databases("postgresql"):
        tmp_system.start()
        tmp_system.start_extra("auth-2", "auth")  # relays only: the signups go to the first
        assert finish(tmp_system.signup(LOAD, seed=18)) == LOAD
        tmp_system.assert_exactly(LOAD, seed=18)
        assert len(read_topic(tmp_system.bootstrap, PROFILE_INSERT)) == LOAD


def test_broker_restart_under_load_loses_and_duplicates_nothing(tmp_system: System) -> None:
    tmp_system.start()
    load = tmp_system.signup(LOAD, seed=15)
    tmp_system.wait_until(lambda: tmp_system.profiles() >= 200, 120, "the system under load")
    tmp_system.stop_broker()
    time.sleep(5)  # auth keeps accepting: signups wait in its outbox
    tmp_system.start_broker()  # same store, same port
    assert finish(load) == LOAD
    tmp_system.assert_exactly(LOAD, seed=15)
    tmp_system.assert_counted_per_minute()


@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
def test_replaying_profile_insert_from_zero_in_a_fresh_group_creates_no_duplicates(
    tmp_system: System, database: str,
) -> None:
    """Also the whole flow on PostgreSQL: outbox, inserts that ignore conflicts, upserts."""
    with tmp_system.databases(database):
        tmp_system.start()
        assert finish(tmp_system.signup(500, seed=16)) == 500
        tmp_system.assert_exactly(500, seed=16)
        partners = tmp_system.count("member", "partner_profile")
        tmp_system.start_extra("member-replay", "member",
                               SIGNUPFLOW_MEMBER_APP_ID="signupflow-member-replay")
        tmp_system.wait_until(
            lambda: lag(tmp_system.bootstrap, "signupflow-member-replay", PROFILE_INSERT) == 0,
            120, "the fresh group to replay profile-insert from offset 0")
        # the replay re-published every PartnerCreated; batch absorbed them as well
        tmp_system.wait_until(
            lambda: len(read_topic(tmp_system.bootstrap, PARTNER_CREATED)) == 2 * partners, 60,
            "the replayed PartnerCreated events")
        tmp_system.wait_until(
            lambda: lag(tmp_system.bootstrap, "signupflow-batch", PARTNER_CREATED) == 0, 60,
            "batch to consume them")
        tmp_system.assert_exactly(500, seed=16)
        assert tmp_system.count("member", "partner_profile") == partners
        # the PostgreSQL run really wrote there, not to the default SQLite files (which the
        # harness's upgrade at the broker's start makes, empty)
        assert [rows_in_sqlite_file(tmp_system, s) for s in SERVICES] == (
            [True] * len(SERVICES) if database == "sqlite" else [False] * len(SERVICES))


def rows_in_sqlite_file(system: System, service: str) -> bool:
    """Whether ``service``'s default SQLite file holds any of its rows."""
    path = system.data_dir / f"{service}.db"
    if not path.exists():
        return False
    table = {"auth": "member", "member": "user_profile", "batch": "partner_summary"}[service]
    with contextlib.closing(sqlite3.connect(path)) as conn:
        return bool(conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0])


@pytest.mark.parametrize("service", ["member", "batch"])
def test_a_service_is_rebuilt_by_a_replay_under_a_new_app_id(
    tmp_system: System, service: str,
) -> None:
    """docs/production.md, "Replaying under a new app id": a lost database (or table) comes
    back whole from its topic, into an empty database, under a new consumer group."""
    tmp_system.start()
    assert finish(tmp_system.signup(300, seed=17)) == 300
    tmp_system.assert_exactly(300, seed=17)
    partners = tmp_system.count("member", "partner_profile")
    tmp_system.stop(service)  # 1. every worker of the service
    group = f"signupflow-{service}-2"  # 2. a new app id and an empty database, its topics
    tmp_system.env.update({
        f"SIGNUPFLOW_{service.upper()}_APP_ID": group,
        f"SIGNUPFLOW_{service.upper()}_DATABASE_URL":
            f"sqlite+aiosqlite:///{tmp_system.root / 'rebuilt.db'}"})
    topics = tmp_system.cli("topics")
    assert topics.returncode == 0 and f"{group}-__assignor-__leader" in topics.stdout, topics
    tmp_system.start(service)  # 3. until the new group has read its topic
    topic = PROFILE_INSERT if service == "member" else PARTNER_CREATED
    tmp_system.wait_until(lambda: lag(tmp_system.bootstrap, group, topic) == 0, 120,
                          f"{group} to replay {topic} from its first offset")
    if service == "member":  # (its replay published every PartnerCreated again)
        tmp_system.wait_until(
            lambda: lag(tmp_system.bootstrap, "signupflow-batch", PARTNER_CREATED) == 0, 60,
            "batch to absorb the PartnerCreated published again")
    tmp_system.assert_exactly(300, seed=17)  # 4. the rebuilt database, and verify
    assert tmp_system.count("member", "partner_profile") == partners
    assert tmp_system.count("batch", "partner_summary") == partners
    assert (tmp_system.root / "rebuilt.db").exists()
