"""An outage is told in transitions (down, a reminder every 30 s, back with how long), and a
library's repeated errors are collapsed without hiding the first one."""

from __future__ import annotations

import logging

import pytest

from signupflow.outages import REMINDER_EVERY, TRANSITION, Outage, RepeatFilter


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def messages(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "signupflow.outages"]


def test_an_outage_of_a_minute_is_four_lines_however_often_it_is_seen(
        caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    outage = Outage("member: database", clock=clock)
    with caplog.at_level(logging.INFO):
        outage.recovered()  # nothing to tell while it answers
        for _ in range(61 * 10):  # ten failed attempts a second for 61 s
            outage.failed("database is locked")
            clock.now += 0.1
        assert outage.down
        outage.recovered()
        outage.recovered()
    assert not outage.down
    assert messages(caplog) == [
        "member: database unavailable (database is locked); waiting",
        "member: database still unavailable after 30s (database is locked)",
        "member: database still unavailable after 60s (database is locked)",
        "member: database back after 61.0s",
    ]
    assert all(TRANSITION.search(m) for m in messages(caplog))


def test_an_outage_counts_from_the_start_of_the_attempt_that_found_it(
        caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    outage = Outage("member publish partner-created", down="failing", clock=clock)
    with caplog.at_level(logging.INFO):
        outage.failed("KafkaTimeoutError", since=clock.now - 10)
        clock.now += 5
        assert outage.observe(None) is None
        assert outage.observe("refused") == "refused"
    assert messages(caplog) == [
        "member publish partner-created failing (KafkaTimeoutError); waiting",
        "member publish partner-created back after 15.0s",
        "member publish partner-created failing (refused); waiting",
    ]


def test_ordinary_lines_are_not_taken_for_transitions() -> None:
    for line in ["[2026-12-07 00:09:32,875] [8844] [INFO] Discovered coordinator 2 for group",
                 "member: a batch of 12 failed (database rejected: x); splitting it",
                 "Unable connect to node with id 1: [Errno 111] Connection refused"]:
        assert not TRANSITION.search(line), line


def record(name: str, msg: str, *args: object, level: int = logging.ERROR) -> logging.LogRecord:
    return logging.LogRecord(name, level, __file__, 1, msg, args, None)


def test_repeated_library_errors_pass_once_per_interval_and_say_how_many_were_left_out() -> None:
    clock = Clock()
    repeats = RepeatFilter(clock=clock)
    passed = []
    for i in range(35 * 40):  # 35 a second for 40 s, alternating between two nodes
        r = record("aiokafka.client", "Unable connect to node with id %s: %s", i % 2 + 1,
                   "Connection refused")
        if repeats.filter(r):
            passed.append(r.getMessage())
        clock.now += 1 / 35
    assert passed[0] == "Unable connect to node with id 1: Connection refused"  # as it is
    assert len(passed) == 2
    assert passed[1].startswith("Unable connect to node with id ")
    assert passed[1].endswith(f"(and 1049 more like it in the last {REMINDER_EVERY:.0f}s, "
                              "not shown)")


def test_each_kind_of_library_error_shows_its_first_and_ours_are_never_filtered() -> None:
    repeats = RepeatFilter(clock=Clock())
    kinds = [record("aiokafka.client", "Unable connect to node with id %s: %s", 1, "refused"),
             record("aiokafka.consumer.fetcher", "Failed fetch messages from %s: %s", 1, "x"),
             record("aiokafka.consumer.group_coordinator", "Group Coordinator Request failed")]
    assert [repeats.filter(r) for r in kinds] == [True, True, True]
    assert [repeats.filter(r) for r in kinds] == [False, False, False]
    assert repeats.filter(record("aiokafka.client", "Discovered", level=logging.INFO))
    assert all(repeats.filter(record("signupflow.outages", "same line")) for _ in range(3))
