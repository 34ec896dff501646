"""The benchmark's peers (signupflow.peers) do the member stage's whole work: profiles stored,
PartnerCreated published for partners only, a dead letter with its reason for an invalid
event, and every offset committed once that is done."""

from __future__ import annotations

import asyncio
import sqlite3

import pytest

from signupflow import peers
from signupflow.bench import make_events
from signupflow.domain.decode import decode_partner_created
from signupflow.supervisor import start_process, stop_process
from signupflow.topics import dlq_topic, ensure_topics
from tests.integration.kafka_util import lag, produce, read_topic
from tests.integration.system import PARTITIONS, System


@pytest.mark.parametrize("name", sorted(peers.PACKAGES))
def test_a_peer_stores_publishes_dead_letters_and_commits(tmp_system: System, name: str) -> None:
    # the dev extra (make test) installs the peers: a missing one is a broken set-up
    assert name not in peers.missing_peers(), peers.missing_peers().get(name)
    source, target, group = f"{name}-in", f"{name}-partners", f"{name}-group"
    bootstrap = tmp_system.bootstrap
    asyncio.run(ensure_topics(tmp_system.admin, PARTITIONS, [source, target, dlq_topic(source)]))
    events = make_events(20, partner_ratio=0.5, seed=11)
    records: list[tuple[bytes | None, bytes | None]] = [(k, v) for k, v, _ in events]
    produce(bootstrap, source, [*records, (b"bad", b"not json")])
    db = tmp_system.root / f"{name}.db"
    proc = start_process(peers.command(name, bootstrap, source, target, group, db),
                         tmp_system.log(name))
    try:
        tmp_system.wait_until(lambda: lag(bootstrap, group, source) == 0, 90,
                              f"{name} to commit every offset")
    finally:
        assert stop_process(proc) == 0, tmp_system.log(name).read_text()[-3000:]
    with sqlite3.connect(db) as conn:
        stored = {uuid for (uuid,) in conn.execute(
            "SELECT uuid FROM user_profile UNION ALL SELECT uuid FROM partner_profile")}
    assert stored == {k.decode() for k, _, _ in events}
    published = [decode_partner_created(r.key, r.value, 4096).partner_id
                 for r in read_topic(bootstrap, target)]
    assert sorted(published) == sorted(k.decode() for k, _, partner in events if partner)
    [dead] = read_topic(bootstrap, dlq_topic(source))
    assert (dead.key, dead.value) == (b"bad", b"not json")
    assert dict(dead.headers)["dlq.error"].startswith(b"value is not valid UTF-8 JSON")
