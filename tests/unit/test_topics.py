"""Topics created up front: a table's changelog gets the Kafka settings its table asks for."""

from __future__ import annotations

from datetime import timedelta

import faust

from signupflow.topics import topic_config


def test_a_changelog_is_created_as_its_table_asks() -> None:
    app = faust.App("signupflow-topics-test", autodiscover=False)
    plain = app.Table("plain", default=None)
    windowed = app.Table("windowed", default=None, extra_topic_configs={
        "segment.ms": "3600000"}).tumbling(60, expires=timedelta(days=1))
    assert topic_config(plain.changelog_topic) == {"cleanup.policy": "compact"}
    assert topic_config(windowed.table.changelog_topic) == {
        "cleanup.policy": "compact,delete", "retention.ms": "86400000", "segment.ms": "3600000"}
