"""Synchronous wrappers for tests."""

from __future__ import annotations

import asyncio
from typing import Any

from signupflow import topic_reader


def read_topic(bootstrap: str, topic: str) -> list[Any]:
    return asyncio.run(topic_reader.read_topic(bootstrap, topic))
