"""The tables' store on disk (signupflow/tables/rocks.py, on_disk.py), on real RocksDB files
and no broker: entries and their changelog offset survive a restart together (and a kill -9
never leaves an offset ahead of its data), deleted keys stay deleted, and a store that is
damaged, foreign or that the changelog cannot continue from is moved aside, once, and rebuilt.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import faust
import pytest
from faust.types import TP

from signupflow.tables import rocks
from signupflow.tables.on_disk import Identity, mismatch, stale

TOPIC = "signupflow-batch-partner-summary-changelog"


def open_store(folder: Path, cluster: str | None = "cluster-a",
               app_id: str = "signupflow-batch") -> rocks.Store:
    """The store of a ``partner-summary`` table kept in ``folder``: one worker's start."""
    app = faust.App(app_id, store=rocks.register(), tabledir=str(folder), autodiscover=False)
    table = app.Table("partner-summary", default=None, key_type=str, value_type=str,
                      partitions=4)
    store = cast(rocks.Store, table.data)
    store.cluster = cluster
    return store


def close(store: rocks.Store) -> None:
    """The worker's end: RocksDB's files closed (as at the exit of its process)."""
    for db in store._dbs.values():
        db.close()
    store._dbs.clear()


@pytest.fixture
def folder(tmp_path: Path) -> Iterator[Path]:
    yield tmp_path / "tables"


def entries(store: rocks.Store, partition: int) -> dict[str, str]:
    db = store._db_for_partition(partition)
    return {store._decode_key(k): store._decode_value(v) for k, v in store._visible_items(db)}


def tp(partition: int) -> TP:
    return TP(TOPIC, partition)


def test_entries_and_their_offset_survive_a_restart_and_a_deleted_key_stays_deleted(
        folder: Path) -> None:
    store = open_store(folder)
    store.write([(0, "a", "A", 10), (1, "b", "B", 3), (0, "c", "C", 11)])
    store.write([(0, "a", None, 12)])  # a tombstone
    close(store)

    again = open_store(folder)
    assert entries(again, 0) == {"c": "C"}
    assert entries(again, 1) == {"b": "B"}
    assert again.persisted_offset(tp(0)) == 12
    assert again.persisted_offset(tp(1)) == 3
    assert again.persisted_offset(tp(2)) is None  # never written: recovered from the start


def test_an_offset_acknowledged_by_the_broker_is_not_written_apart_from_its_entry(
        folder: Path) -> None:
    """Faust calls set_persisted_offset when the broker acknowledges a changelog record, before
    the batch writes the entry: written, a kill -9 in between would leave it ahead."""
    store = open_store(folder)
    store.set_persisted_offset(tp(0), 99)
    assert store.persisted_offset(tp(0)) is None


class Recording:
    """A partition's database that records the calls that change it."""

    def __init__(self, db: Any, calls: list[str]) -> None:
        self.db, self.calls = db, calls

    def __getattr__(self, name: str) -> Any:
        if name in ("put", "delete", "write", "__setitem__", "__delitem__"):
            self.calls.append(name)
        return getattr(self.db, name)


def test_each_partition_gets_one_atomic_write_for_its_entries_and_offset(
        folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = open_store(folder)
    calls: list[str] = []
    opened = store._db_for_partition
    monkeypatch.setattr(store, "_db_for_partition", lambda p: Recording(opened(p), calls))
    store.write([(0, "a", "A", 7), (0, "b", None, 8), (1, "c", "C", 2)])
    store.apply_changelog_batch([changelog_event(0, 9, b'"d"', b'"D"')], to_key=lambda k: k,
                                to_value=lambda v: v)
    assert calls == ["write", "write", "write"]
    assert (store.persisted_offset(tp(0)), store.persisted_offset(tp(1))) == (9, 2)


def changelog_event(partition: int, offset: int, key: bytes, value: bytes | None) -> Any:
    return SimpleNamespace(message=SimpleNamespace(
        tp=tp(partition), partition=partition, offset=offset, key=key, value=value))


def test_recovery_applies_records_and_tombstones_with_their_offset(folder: Path) -> None:
    store = open_store(folder)
    store.write([(2, "gone", "G", 4)])
    batch = [changelog_event(2, 5, b'"x"', b'"X"'), changelog_event(2, 6, b'"gone"', None),
             changelog_event(3, 1, b'"y"', b'"Y"')]  # as the changelog holds them (JSON)
    store.apply_changelog_batch(batch, to_key=lambda k: k, to_value=lambda v: v)
    close(store)

    again = open_store(folder)
    assert entries(again, 2) == {"x": "X"}
    assert entries(again, 3) == {"y": "Y"}
    assert (again.persisted_offset(tp(2)), again.persisted_offset(tp(3))) == (6, 1)


WRITER = textwrap.dedent("""
    import sys
    from pathlib import Path
    from tests.unit.test_table_store import open_store
    store = open_store(Path(sys.argv[1]))
    offset = 0
    while True:  # batches of 50 entries over two partitions, offsets counting up in each
        store.write([(p, f"k{p}-{offset + i}", str(offset + i), offset + i)
                     for i in range(50) for p in (0, 1)])
        if offset == 0:
            print("writing", flush=True)
        offset += 50
""")


def test_a_kill_9_during_writes_never_leaves_an_offset_ahead_of_its_entries(
        folder: Path) -> None:
    for attempt in range(3):
        writer = subprocess.Popen([sys.executable, "-c", WRITER, str(folder)],
                                  stdout=subprocess.PIPE, cwd=Path(__file__).parents[2])
        try:
            assert writer.stdout is not None and writer.stdout.readline() == b"writing\n"
            time.sleep(0.3 + 0.2 * attempt)
        finally:
            os.kill(writer.pid, signal.SIGKILL)
            writer.wait()
            assert writer.stdout is not None
            writer.stdout.close()
        store = open_store(folder)
        for partition in (0, 1):
            offset = store.persisted_offset(tp(partition))
            assert offset is not None and offset > 0
            held = entries(store, partition)
            assert all(f"k{partition}-{o}" in held for o in range(offset + 1))
        close(store)


def damage(folder: Path, partition: int) -> None:
    """What a full disk or a half-copied folder leaves: every file of the database truncated."""
    for path in folder.glob(f"*-{partition}.db/*"):
        if path.is_file():
            path.write_bytes(path.read_bytes()[:7])


def test_a_damaged_store_is_moved_aside_once_and_rebuilt(
        folder: Path, caplog: pytest.LogCaptureFixture) -> None:
    store = open_store(folder)
    store.write([(0, "a", "A", 1), (1, "b", "B", 1)])
    close(store)
    damage(folder, 0)

    with caplog.at_level(logging.WARNING, logger=rocks.__name__):
        again = open_store(folder)
        assert again.persisted_offset(tp(0)) is None
        assert entries(again, 0) == {}
        assert entries(again, 1) == {"b": "B"}  # the others are kept
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "partition 0" in warnings[0], warnings
    assert len(list(folder.glob("*-0.db.moved-*"))) == 1


@pytest.mark.parametrize(("cluster", "app_id", "moved"), [
    ("cluster-b", "signupflow-batch", True),  # another deployment's copy
    ("cluster-a", "other-batch", True),  # another app's changelog (another topic)
    (None, "signupflow-batch", False),  # cluster unknown: not held against it
    ("cluster-a", "signupflow-batch", False),
])
def test_a_store_from_another_cluster_or_topic_is_rebuilt(
        folder: Path, cluster: str | None, app_id: str, moved: bool) -> None:
    store = open_store(folder)
    store.write([(0, "a", "A", 1)])
    close(store)
    again = open_store(folder, cluster=cluster, app_id=app_id)  # the same files
    assert entries(again, 0) == ({} if moved else {"a": "A"})


def test_a_store_without_our_marker_is_rebuilt(folder: Path) -> None:
    store = open_store(folder)
    store.write([(0, "a", "A", 1)])
    store._db_for_partition(0).delete(store.identity_key)
    close(store)
    assert entries(open_store(folder), 0) == {}


@pytest.mark.parametrize(("earliest", "end", "rebuilt"), [
    (0, 11, False),  # caught up: offset 10 is the last record
    (0, 500, False),  # behind: reads 11 to 499
    (0, 10, True),  # past the changelog's end: the topic was created again
    (0, 3, True),
    (11, 500, False),  # the next record is the first there is
    (12, 500, True),  # record 11 is gone (a tombstone, maybe)
])
def test_a_store_the_changelog_cannot_continue_from_is_rebuilt(
        folder: Path, earliest: int, end: int, rebuilt: bool) -> None:
    store = open_store(folder)
    store.write([(0, "a", "A", 10)])
    assert store.check(tp(0), earliest, end) is rebuilt
    assert store.persisted_offset(tp(0)) == (None if rebuilt else 10)
    assert entries(store, 0) == ({} if rebuilt else {"a": "A"})


def test_a_store_held_by_another_worker_is_not_taken_for_a_damaged_one(
        folder: Path) -> None:
    """RocksDB's lock: a worker that shares the folder waits (Faust retries), it never moves
    the other's store aside."""
    store = open_store(folder)
    store.write([(0, "a", "A", 1)])
    with pytest.raises(Exception, match=r"(?i)lock"):
        open_store(folder)._db_for_partition(0)
    assert not list(folder.glob("*.moved-*"))
    assert entries(store, 0) == {"a": "A"}


def test_a_marker_says_which_cluster_topic_and_partition() -> None:
    mine = Identity("c", "t", 1)
    assert mismatch(mine.encode(), True, mine) is None
    assert mismatch(None, False, mine) is None  # a new, empty store
    assert "no marker" in str(mismatch(None, True, mine))
    assert "t[2]" in str(mismatch(Identity("c", "t", 2).encode(), True, mine))
    assert "cluster d" in str(mismatch(Identity("d", "t", 1).encode(), True, mine))
    assert "unreadable" in str(mismatch(b"\x00garbage", True, mine))


def test_an_offset_is_stale_only_outside_what_the_changelog_holds() -> None:
    assert stale(None, 0, 100) is None  # nothing applied yet
    assert stale(5, 0, None) is None  # the broker did not say
    assert stale(99, 0, 100) is None
    assert "ends at 100" in str(stale(100, 0, 100))
    assert "starts at 50" in str(stale(10, 50, 100))


def test_entries_are_read_in_key_order_after_a_key_from_the_active_partitions_only(
        folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = open_store(folder)
    store.write([(p, f"k{n}", f"v{n}", n) for n, p in enumerate([2, 0, 1, 3, 0, 2, 1, 3])])
    actives = {tp(0), tp(1), tp(2)}  # 3 was revoked (or is a standby): not this worker's
    monkeypatch.setattr(store.app.assignor, "assigned_actives", lambda: actives)
    assert [k for k, _ in store.items_after()] == ["k0", "k1", "k2", "k4", "k5", "k6"]
    assert list(store.items_after("k2")) == [("k4", "v4"), ("k5", "v5"), ("k6", "v6")]
    assert list(store.items_after("k3")) == [("k4", "v4"), ("k5", "v5"), ("k6", "v6")]
    reads = store.items_after("k0")
    assert next(reads) == ("k1", "v1")  # lazily: a page stops where it is full


def test_the_count_of_entries_is_kept_with_them_without_a_scan(
        folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = open_store(folder)
    store.write([(0, "a", "A", 1), (0, "b", "B", 2), (0, "a", "A2", 3), (1, "c", "C", 1)])
    store.write([(0, "b", None, 4), (0, "gone", None, 5), (1, "d", "D", 2), (1, "d", None, 3)])
    store.apply_changelog_batch([changelog_event(0, 6, b'"e"', b'"E"'),
                                 changelog_event(0, 7, b'"a"', None)],
                                to_key=lambda k: k, to_value=lambda v: v)
    close(store)
    again = open_store(folder)
    for partition in (0, 1):  # opened as the worker's partitions are assigned
        again._db_for_partition(partition)
    monkeypatch.setattr(again.app.assignor, "assigned_actives", lambda: {tp(0), tp(1)})
    monkeypatch.setattr(again, "_visible_keys", lambda db: pytest.fail("scanned the keys"))
    assert len(again) == 2  # e in 0, c in 1
    again._del(again._encode_key("c"))  # Faust's expiry
    assert len(again) == 1


def test_a_store_with_an_unreadable_offset_is_rebuilt(folder: Path) -> None:
    store = open_store(folder)
    store.write([(0, "a", "A", 1)])
    store._db_for_partition(0).put(store.offset_key, b"\x00\x01")
    assert store.persisted_offset(tp(0)) is None
    assert entries(store, 0) == {}
