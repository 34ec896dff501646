"""When a worker counts as wedged: stuck on the same reasons of its own while its
dependencies answer, for longer than the limit."""

from __future__ import annotations

from collections.abc import Sequence

from signupflow import probes
from signupflow.liveness import Liveness
from signupflow.probes import Reason

REBALANCING = Reason("rebalancing: partitions are being reassigned", "progress")
BROKER_DOWN = Reason("broker unreachable (127.0.0.1:9092: refused)", "dependency")
DB_LOCKED = Reason("database of member cannot be written (database is locked)", "dependency")
IDLE = Reason("no partitions assigned (more workers than partitions)", "idle")


def recovering(records: int) -> Reason:
    return Reason(probes.recovering(records), "progress")


def stuck_after(liveness: Liveness, timeline: Sequence[tuple[float, Sequence[Reason]]]
                ) -> list[bool]:
    return [liveness.observe(t, reasons) for t, reasons in timeline]


def test_stuck_on_its_own_reason_while_dependencies_answer_is_wedged_after_the_limit() -> None:
    liveness = Liveness(180)
    assert stuck_after(liveness, [(t, [REBALANCING]) for t in range(0, 200, 20)]) == \
        [False] * 9 + [True]
    assert liveness.stuck_on == (REBALANCING.text,)


def test_being_ready_or_a_dependency_down_starts_the_clock_again() -> None:
    liveness = Liveness(60)
    timeline = [(0, [REBALANCING]), (50, []), (100, [REBALANCING]), (150, [REBALANCING]),
                (155, [REBALANCING, DB_LOCKED]), (200, [REBALANCING]), (250, [REBALANCING]),
                (259, [BROKER_DOWN]), (261, [REBALANCING]), (321, [REBALANCING])]
    assert stuck_after(liveness, timeline) == [False] * 9 + [True]


def test_a_recovery_that_moves_on_is_not_stuck_one_that_does_not_is() -> None:
    liveness = Liveness(60)
    moving = [(t, [recovering(10_000 - 10 * t)]) for t in range(0, 600, 10)]
    assert not any(stuck_after(liveness, moving))
    assert stuck_after(liveness, [(600 + t, [recovering(4000)]) for t in (0, 30, 60)]) == \
        [False, False, True]


def test_an_idle_worker_is_not_wedged() -> None:
    liveness = Liveness(60)
    assert not any(stuck_after(liveness, [(t, [IDLE]) for t in range(0, 600, 10)]))
    assert liveness.wedged is None
