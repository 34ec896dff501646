"""The tables' persistent store: Faust's RocksDB store (``rocksdict``), one database per
changelog partition under the worker's table directory, made safe for kill -9.

What differs from Faust's:

* **A changelog offset is written only with its data.** Faust writes the offset of a changelog
  record when the broker acknowledges it, apart from the entry (which it writes before
  sending, and which a batch here writes after the acknowledgement), and writes a recovered
  batch's entries and its offset in two writes. A kill -9 in between could leave an offset
  ahead of its data, and the restarted worker would skip the records it lacks for good. Here
  the entries of a write or of a recovered batch and their partition's offset go in one
  atomic ``WriteBatch``; Faust's separate offset writes are ignored. A store that lags its
  changelog (kill -9 before a write) just reads more of it.
* **A store that is not this partition's is moved aside and rebuilt**, with one warning: one
  that does not open (corrupt, truncated), one built from another cluster or topic, one whose
  offset the changelog cannot continue from (:mod:`signupflow.tables.on_disk`).
* **Memory is bounded by two settings**: one block cache and one memtable budget shared by
  every partition of every table of the worker (Faust's default is a 2 GiB cache and 192 MiB
  of memtables per partition).
* Writes without a current event (a batch handler has none), by partition.
"""

from __future__ import annotations

import heapq
import logging
import shutil
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from operator import itemgetter
from pathlib import Path
from typing import Any, cast

import rocksdict
from faust.stores import STORES
from faust.stores import rocksdb as faust_rocksdb
from faust.types import TP, AppT, CollectionT, EventT

from signupflow.tables.on_disk import Identity, mismatch, stale

log = logging.getLogger(__name__)

#: The store URL scheme of this module's store (``signupflow-rocksdb://``).
SCHEME = "signupflow-rocksdb"
MIB = 1024 * 1024
#: Where a store moved aside goes: next to it, ``<name>.db.moved-<unix time>``.
MOVED_SUFFIX = ".moved-"


def register() -> str:
    """Make ``signupflow-rocksdb://`` name :class:`Store` in Faust's registry; returns the URL."""
    STORES.aliases[SCHEME] = f"{__name__}:Store"
    return f"{SCHEME}://"


class Budget:
    """The block cache and memtable budget every store of this process shares."""

    def __init__(self, cache_mb: int = 64, write_buffer_mb: int = 32) -> None:
        self.cache = rocksdict.Cache(cache_mb * MIB)
        self.write_buffer_mb = write_buffer_mb
        self.write_buffers = rocksdict.WriteBufferManager(write_buffer_mb * MIB, False)


#: Set by :func:`configure` (create_app) from the worker's settings; defaults otherwise.
_budget: Budget | None = None


def configure(cache_mb: int, write_buffer_mb: int) -> None:
    global _budget
    _budget = Budget(cache_mb, write_buffer_mb)


def budget() -> Budget:
    global _budget
    if _budget is None:
        _budget = Budget()
    return _budget


class Options(faust_rocksdb.RocksDBOptions):
    """Faust's options, with the shared cache and memtable budget."""

    def as_options(self) -> Any:
        shared = budget()
        options = rocksdict.Options(raw_mode=True)
        options.create_if_missing(True)
        if self.max_open_files is not None:
            options.set_max_open_files(self.max_open_files)
        # A memtable per partition of at most a quarter of the budget, flushed early.
        options.set_write_buffer_size(max(MIB, shared.write_buffer_mb * MIB // 4))
        options.set_max_write_buffer_number(2)
        options.set_write_buffer_manager(shared.write_buffers)
        factory = rocksdict.BlockBasedOptions()
        factory.set_bloom_filter(self.bloom_filter_size, True)
        factory.set_block_cache(shared.cache)
        factory.set_cache_index_and_filter_blocks(True)
        options.set_block_based_table_factory(factory)
        return options

    def open(self, path: Path, *, read_only: bool = False) -> Any:
        db = rocksdict.Rdict(str(path), options=self.as_options())
        db.set_read_options(rocksdict.ReadOptions())
        return db


def locked(exc: BaseException) -> bool:
    """Whether opening failed because another process holds the database (not damage)."""
    return "lock" in str(exc).lower()


class Store(faust_rocksdb.Store):
    """Faust's RocksDB store with offsets written only with their data, and foreign or damaged
    partitions rebuilt (see the module's docstring)."""

    identity_key = b"__signupflow\0identity__"
    #: How many entries the partition holds, kept in the same writes as they are: ``len()``
    #: (``/metrics``) costs a read per partition, not a scan of every key.
    count_key = b"__signupflow\0count__"
    hidden = (faust_rocksdb.Store.offset_key, identity_key, count_key)

    def __init__(self, url: Any, app: AppT, table: CollectionT, **kwargs: Any) -> None:
        super().__init__(url, app, table, driver="rocksdict", **kwargs)
        self.rocksdb_options = Options(**(self.options or {}))
        #: the cluster id the markers name (None: unknown, not compared)
        self.cluster: str | None = None

    # --- opening, checking, rebuilding ---------------------------------------------------
    def identity(self, partition: int) -> Identity:
        return Identity(self.cluster, self.table.changelog_topic.get_topic_name(), partition)

    def _open_for_partition(self, partition: int) -> Any:
        path = self.partition_path(partition)
        try:
            db = self.rocksdb_options.open(path)
        except Exception as exc:
            if locked(exc):
                raise
            self.move_aside(partition, f"it does not open ({exc})")
            db = self.rocksdb_options.open(path)
        problem = mismatch(db.get(self.identity_key), self._has_entries(db),
                           self.identity(partition))
        if problem is not None:
            db.close()
            self.move_aside(partition, problem)
            db = self.rocksdb_options.open(path)
        if db.get(self.identity_key) is None:
            db[self.identity_key] = self.identity(partition).encode()
        return db

    @staticmethod
    def _has_entries(db: Any) -> bool:
        """Whether the database holds anything (an offset alone counts: it is someone's)."""
        cursor = db.iter()
        cursor.seek_to_first()
        return bool(cursor.valid())

    def _visible_keys(self, db: Any) -> Iterator[bytes]:
        return (k for k in db.keys() if k not in self.hidden)  # noqa: SIM118 - no __iter__

    def _visible_items(self, db: Any) -> Iterator[tuple[bytes, bytes]]:
        return ((k, v) for k, v in db.items() if k not in self.hidden)

    def _count(self, db: Any) -> int:
        """The entries of one partition's database (counted once if it has no count yet)."""
        raw = db.get(self.count_key)
        return int(raw) if raw is not None else sum(1 for _ in self._visible_keys(db))

    def _size(self) -> int:
        return sum(self._count(db) for db in self._dbs_for_actives())

    def move_aside(self, partition: int, reason: str) -> Path:
        """Move this partition's database out of the way (kept for a post-mortem, never read
        again), saying why once; the next open starts it empty."""
        db = self._dbs.pop(partition, None)
        if db is not None:
            db.close()
        path = self.partition_path(partition)
        aside = path.with_name(f"{path.name}{MOVED_SUFFIX}{time.time():.0f}")
        if path.exists():
            shutil.move(str(path), str(aside))
        log.warning("table %s partition %d: the store at %s is not usable (%s): moved to %s "
                    "and rebuilt from the changelog", self.table_name, partition, path, reason,
                    aside.name)
        return aside

    def persisted_offset(self, tp: TP) -> int | None:
        """The last changelog offset the partition's entries include (None: none yet); an
        unreadable one moves the store aside."""
        raw = self._db_for_partition(tp.partition).get(self.offset_key)
        try:
            return None if raw is None else int(raw)
        except ValueError:
            self.move_aside(tp.partition, f"its offset is unreadable ({raw[:40]!r})")
            return None

    def check(self, tp: TP, earliest: int | None, end: int | None) -> bool:
        """Rebuild the partition's store if the changelog cannot continue from its offset;
        returns whether it was rebuilt (its recovery then starts at the beginning)."""
        problem = stale(self.persisted_offset(tp), earliest, end)
        if problem is None:
            return False
        self.move_aside(tp.partition, problem)
        return True

    # --- reading in key order --------------------------------------------------------------
    def items_after(self, after: Any = None) -> Iterator[tuple[Any, Any]]:
        """The entries of this worker's active partitions whose keys come after ``after``
        (None: from the first), in the order of their encoded keys, read lazily: a page costs
        its own rows, not the whole table. (For string keys of ASCII letters, digits and
        dashes, such as uuids, that is their order as strings.)"""
        start = None if after is None else self._encode_key(after)
        def partition(db: Any) -> Iterator[tuple[bytes, bytes]]:
            for key, value in db.items(from_key=start):
                if key not in self.hidden and key != start:
                    yield key, value

        merged = heapq.merge(*(partition(db) for db in self._dbs_for_actives()),
                             key=itemgetter(0))
        for key, value in merged:
            yield self._decode_key(key), self._decode_value(value)

    # --- offsets only with their data ----------------------------------------------------
    def set_persisted_offset(self, tp: TP, offset: int) -> None:
        """Ignored: Faust calls it when the broker acknowledges a changelog record, apart from
        the record's entry. Offsets are written with their entries (:meth:`write`)."""

    def write(self, entries: Sequence[tuple[int, Any, Any, int]]) -> None:
        """Each ``(partition, key, value, changelog offset)`` (value None: delete the key),
        with each partition's highest offset, one atomic write per partition."""
        self._write_batches((p, self._encode_key(k), None if v is None else
                             self._encode_value(v), o) for p, k, v, o in entries)

    def apply_changelog_batch(self, batch: Iterable[EventT[Any]], to_key: Callable[[Any], Any],
                              to_value: Callable[[Any], Any]) -> None:
        """Faust's, with each partition's entries and offset in one atomic write."""
        self._write_batches((e.message.partition, cast(bytes, e.message.key),
                             e.message.value, e.message.offset)
                            for e in batch)

    def _del(self, key: bytes) -> None:
        """Faust's ``del table[key]`` (expiry): the key dropped, the count kept right, the
        offset left as it is."""
        for partition in [p for p, db in self._dbs.items() if db.get(key) is not None]:
            self._write_batches([(partition, key, None, None)])

    def _set(self, key: bytes, value: bytes | None) -> None:
        """Faust's ``table[key] = value`` in a stream (not used here: writes go through
        :meth:`write`), with the count kept right."""
        event = faust_rocksdb.current_event()
        assert event is not None
        self._write_batches([(event.message.partition, key, value, None)])

    def _write_batches(self, records: Iterable[tuple[int, bytes, bytes | None, int | None]]
                       ) -> None:
        """One atomic write per partition: its records, its count of entries and (when the
        records come from the changelog) its highest offset."""
        batches: dict[int, Any] = {}
        offsets: dict[int, int] = {}
        counts: dict[int, int] = {}
        present: dict[tuple[int, bytes], bool] = {}  # after the records before, in this call
        for partition, key, value, offset in records:
            db = self._db_for_partition(partition)
            if partition not in batches:
                batches[partition] = rocksdict.WriteBatch(raw_mode=True)
                counts[partition] = self._count(db)
            was = present.get((partition, key))
            if was is None:
                was = db.key_may_exist(key) and db.get(key) is not None
            present[partition, key] = value is not None
            counts[partition] += (value is not None) - was
            if value is None:
                batches[partition].delete(key)
                self._key_index.pop(key, None)
            else:
                batches[partition].put(key, value)
                self._key_index[key] = partition
            if offset is not None:
                offsets[partition] = max(offset, offsets.get(partition, offset))
        for partition, batch in batches.items():
            batch.put(self.count_key, str(counts[partition]).encode())
            if partition in offsets:
                batch.put(self.offset_key, str(offsets[partition]).encode())
            self._db_for_partition(partition).write(batch)
