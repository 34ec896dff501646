"""Topics created up front: a table's changelog gets the Kafka settings its table asks for."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import faust
import pytest

from signupflow import topics
from signupflow.kafka_client import KafkaAccess
from signupflow.settings import load_settings
from signupflow.topics import topic_config


def test_a_changelog_is_created_as_its_table_asks() -> None:
    app = faust.App("signupflow-topics-test", autodiscover=False)
    plain = app.Table("plain", default=None)
    windowed = app.Table("windowed", default=None, extra_topic_configs={
        "segment.ms": "3600000"}).tumbling(60, expires=timedelta(days=1))
    assert topic_config(plain.changelog_topic) == {"cleanup.policy": "compact"}
    assert topic_config(windowed.table.changelog_topic) == {
        "cleanup.policy": "compact,delete", "retention.ms": "86400000", "segment.ms": "3600000"}


def test_every_topic_is_named_after_the_app_ids_of_the_settings_given(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Finding: the changelogs came from the service modules' apps, built from the process's
    settings: a changed app id got the changelog of the default one."""
    asked: dict[str, Any] = {}

    async def ensure_topics(kafka: KafkaAccess, partitions: int, names: Any, configs: Any,
                            policy: Any, single: Any) -> list[Any]:
        asked.update(configs=dict(configs), single=list(single), partitions=partitions)
        return []

    monkeypatch.setattr(topics, "ensure_topics", ensure_topics)
    settings = load_settings({"SIGNUPFLOW_BATCH_APP_ID": "batch-v2",
                              "SIGNUPFLOW_MEMBER_APP_ID": "member-v2",
                              "SIGNUPFLOW_PARTITIONS": "6"})
    asyncio.run(topics.ensure_every_topic(KafkaAccess("127.0.0.1:1"), settings))
    assert asked["configs"] == {
        "batch-v2-partner-summary-changelog": {"cleanup.policy": "compact"},
        "member-v2-signups-per-minute-changelog": {
            "cleanup.policy": "compact,delete", "retention.ms": "86400000",
            "segment.ms": "3600000"}}
    assert asked["partitions"] == 6
    assert "batch-v2-__assignor-__leader" in asked["single"]
