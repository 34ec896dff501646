"""The benchmark's pure parts: the ratios (a skipped phase gives None, not a crash) and the
table's cells."""

from __future__ import annotations

import os

from signupflow.bench import per_s, ratios, times
from signupflow.bench_recovery import partner_events, render, rss_mib
from signupflow.models.events import PartnerCreated


def test_a_ratio_of_a_skipped_or_zero_figure_is_none() -> None:
    figures = {"member_signups_per_s": 3000.0, "quix_signups_per_s": None,
               "confluent_signups_per_s": 6000.0, "pipeline_2_members_signups_per_s": 0.0,
               "pipeline_1_member_signups_per_s": 0.0}
    got = ratios(figures)
    assert got["member_vs_quix"] is None
    assert got["member_vs_confluent"] == 0.5
    assert got["member_scaling"] is None
    assert got["pipeline_vs_baseline"] is None  # not measured at all


def test_cells_say_skipped_instead_of_a_number() -> None:
    assert per_s(7299.4) == "    7,299 signups/s"
    assert per_s(None, "msgs/s") == "  skipped msgs/s"
    assert times(0.456, "Quix") == "0.46 x Quix"
    assert times(None, "Quix") == "- x Quix"


def test_the_recovery_phase_has_partners_to_summarise_and_lines_side_by_side() -> None:
    events = partner_events(50)
    assert len({key for key, _, _ in events}) == 50
    assert all(PartnerCreated.loads(value).partner_id == key.decode()
               for key, value, _ in events)
    lines = render({"recovery_entries": 10_000, "recovery_memory_first_key_s": 2.14,
                    "recovery_memory_rss_mib": 101.2, "recovery_rocksdb_first_key_s": 1.5,
                    "recovery_rocksdb_rss_mib": 99.7})
    assert "10,000 table entries" in lines[0]
    assert lines[1].split() == ["rocksdb", "1.5", "s", "100", "MiB"]
    assert lines[2].split() == ["memory", "2.1", "s", "101", "MiB"]
    assert render({}) == []  # the phase did not run: nothing to show


def test_resident_memory_is_read_from_proc() -> None:
    assert 1 < rss_mib(os.getpid()) < 10_000
