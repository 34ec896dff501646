"""The settings of every producer that must not lose an event, in one place.

``acks=all`` waits for every in-sync replica and idempotence stops a retried send from writing
a duplicate; a short linger batches the sends of one burst. The outbox relay, dead-letter
replay, the benchmark and the tests all produce this way (the workers' own Faust producer is
configured alike in :func:`signupflow.app.create_app`).
"""

from __future__ import annotations

from typing import Any

from aiokafka import AIOKafkaProducer

DURABLE = {"acks": "all", "enable_idempotence": True, "linger_ms": 5}


def durable_producer(bootstrap: str, **options: Any) -> AIOKafkaProducer:
    """An (unstarted) producer with :data:`DURABLE` settings; ``options`` add to them."""
    return AIOKafkaProducer(bootstrap_servers=bootstrap, **{**DURABLE, **options})
