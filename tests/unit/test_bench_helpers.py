"""The benchmark's pure parts: the ratios (a skipped phase gives None, not a crash) and the
table's cells."""

from __future__ import annotations

from signupflow.bench import per_s, ratios, times


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
