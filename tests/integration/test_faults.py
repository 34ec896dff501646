"""Faults on the real broker and real worker processes: nothing lost, nothing duplicated.

Each test has its own broker. Load comes from ``signupflow signup`` running in the background
while a worker is killed with SIGKILL (no shutdown hook, no final commit or flush) or the
broker is stopped. Afterwards, the exact row counts and ``signupflow verify`` must agree.
"""

from __future__ import annotations

import re
import subprocess
import time

from signupflow.domain.fake import fake_signups
from signupflow.topics import PARTNER_CREATED, PROFILE_INSERT
from tests.integration.kafka_util import lag, read_topic
from tests.integration.system import System

LOAD = 2000


def finish(proc: subprocess.Popen[str], timeout: float = 600) -> int:
    """Wait for a background ``signupflow signup``; return how many signups were accepted."""
    out, err = proc.communicate(timeout=timeout)
    match = re.search(r"accepted (\d+)", out)
    assert match, out + err
    return int(match.group(1))


def expected_styles(count: int, seed: int) -> int:
    return sum(len(s["favorite_styles"]) for s in fake_signups(count, 0.3, seed))


def assert_exactly(system: System, count: int, seed: int) -> None:
    system.wait_until(lambda: system.profiles() == count, 180, f"{count} profiles")
    assert system.count("auth", "member") == count
    assert system.count("member", "favorite_style") == expected_styles(count, seed)
    partners = system.count("member", "partner_profile")
    system.wait_until(lambda: system.count("batch", "partner_summary") == partners, 120,
                      "one summary per partner")
    system.assert_consistent()


def test_member_killed_mid_load_loses_and_duplicates_nothing(tmp_system: System) -> None:
    tmp_system.start()
    load = tmp_system.signup(LOAD, seed=11)
    tmp_system.wait_until(lambda: tmp_system.profiles() >= 200, 120, "member under load")
    tmp_system.kill("member")
    time.sleep(2)
    tmp_system.start("member")
    assert finish(load) == LOAD
    assert_exactly(tmp_system, LOAD, seed=11)


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
    assert_exactly(tmp_system, LOAD, seed=12)


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
    assert_exactly(tmp_system, 300, seed=13)


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
    assert_exactly(tmp_system, LOAD, seed=17)


def test_broker_restart_under_load_loses_and_duplicates_nothing(tmp_system: System) -> None:
    tmp_system.start()
    load = tmp_system.signup(LOAD, seed=15)
    tmp_system.wait_until(lambda: tmp_system.profiles() >= 200, 120, "the system under load")
    tmp_system.stop_broker()
    time.sleep(5)  # auth keeps accepting: signups wait in its outbox
    tmp_system.start_broker()  # same store, same port
    assert finish(load) == LOAD
    assert_exactly(tmp_system, LOAD, seed=15)


def test_replaying_profile_insert_from_zero_in_a_fresh_group_creates_no_duplicates(
    tmp_system: System,
) -> None:
    tmp_system.start()
    assert finish(tmp_system.signup(500, seed=16)) == 500
    assert_exactly(tmp_system, 500, seed=16)
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
    assert_exactly(tmp_system, 500, seed=16)
    assert tmp_system.count("member", "partner_profile") == partners
