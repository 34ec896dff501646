"""What every worker counts, served in Prometheus text format at ``GET /metrics``.

Names follow ``signupflow_<noun>_<unit|total>``. Counters and the histogram are updated where
the work happens; gauges that describe a state (lag, backlog, table size) are read from their
source when ``/metrics`` is scraped, by the refreshers each service registers.
"""

from __future__ import annotations

import orjson
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector

#: One registry per process (each worker is one service), so nothing global leaks in.
REGISTRY = CollectorRegistry(auto_describe=True)
#: The standard ``process_*`` metrics (CPU, memory, open files, start time: a worker that keeps
#: restarting shows in ``process_start_time_seconds``).
PROCESS = ProcessCollector(registry=REGISTRY)

#: The kinds of a member's (or partner's) events, and ``unknown`` for one that could not be
#: decoded (its kind is not known: it is dead-lettered).
EVENT_KINDS = ("created", "changed", "deleted", "unknown")
#: What a consuming stage did with an event: stored it (``applied``), ignored it as older than
#: what it stored, a redelivery included (``stale``), recorded and skipped it (a change of a
#: member it never stored: ``skipped``), or sent it to the dead-letter topic.
EVENT_OUTCOMES = ("applied", "stale", "skipped", "dead_lettered")
EVENTS = Counter(
    "signupflow_events_total",
    "Events a consuming stage finished, by kind (created, changed, deleted, unknown: not "
    "decoded) and outcome (applied, stale, skipped, dead_lettered)",
    ["service", "kind", "outcome"], registry=REGISTRY)
DEAD_LETTERS = Counter(
    "signupflow_dead_letters_total",
    "Dead letters acknowledged by the broker, by source topic", ["topic"], registry=REGISTRY)
BATCH_SECONDS = Histogram(
    "signupflow_batch_seconds",
    "Seconds to handle one batch of events: decode, write, dead letters, publish",
    ["service"], registry=REGISTRY,
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30))
CONSUMER_LAG = Gauge(
    "signupflow_consumer_lag",
    "Records not yet committed by the service's consumer group: end offset minus committed "
    "offset", ["topic", "partition"], registry=REGISTRY)
TABLE_ENTRIES = Gauge(
    "signupflow_table_entries", "Entries of a Faust table held by this worker", ["table"],
    registry=REGISTRY)

# --- tables' recovery from their changelogs (signupflow/recovery.py; issue 22) ---------------
TABLE_RECOVERING = Gauge(
    "signupflow_table_recovering",
    "1 while this worker recovers its tables' active partitions from their changelogs (it is "
    "not ready meanwhile), else 0", registry=REGISTRY)
TABLE_RECOVERY_RECORDS_LEFT = Gauge(
    "signupflow_table_recovery_records_left",
    "Changelog records a table partition of this worker has still to read: kind active (a "
    "recovery the worker waits for) or standby (a warm copy catching up)",
    ["table", "partition", "kind"], registry=REGISTRY)
TABLE_RECOVERY_RECORDS = Counter(
    "signupflow_table_recovery_records_total",
    "Changelog records the recoveries of this worker's active table partitions set out to "
    "read (with a store on disk: only those written since its offset)", ["table"],
    registry=REGISTRY)

# auth's own: registered by the auth worker alone (export_auth_metrics), since the others
# would export them too, always 0.
OUTBOX_PENDING = Gauge(
    "signupflow_outbox_pending", "Outbox events stored but not yet published (auth)",
    registry=None)
OUTBOX_OLDEST_PENDING = Gauge(
    "signupflow_outbox_oldest_pending_seconds",
    "Age of the oldest unpublished outbox event, 0 when none waits (auth)", registry=None)
OUTBOX_DELETED = Counter(
    "signupflow_outbox_deleted_total",
    "Published outbox events deleted once older than SIGNUPFLOW_OUTBOX_RETENTION (auth)",
    registry=None)
SIGNUPS = Counter(
    "signupflow_signups_total",
    "POST /signup answers, by outcome: created, invalid (400, 413) or duplicate (409)",
    ["outcome"], registry=None)
#: What auth counts of an account's life after its signup (``signupflow_signups_total``).
ACCOUNT_CHANGE_KINDS = ("changed", "deleted")
ACCOUNT_CHANGES = Counter(
    "signupflow_account_changes_total",
    "Accounts changed (PATCH /accounts/{uuid}, signupflow account update) or deleted (DELETE, "
    "signupflow account delete) and committed with their event, by kind (auth)",
    ["kind"], registry=None)

ACCOUNT_REQUESTS = Counter(
    "signupflow_account_requests_total",
    "PATCH and DELETE /accounts/{uuid} answers, by outcome: changed, deleted, invalid (400, "
    "413), unauthorized (401), conflict (409), shed, rate_limited...", ["outcome"],
    registry=None)


def export_auth_metrics() -> None:
    """Add auth's metrics to this process's ``/metrics`` (the auth worker calls it once)."""
    for metric in (OUTBOX_PENDING, OUTBOX_OLDEST_PENDING, OUTBOX_DELETED, SIGNUPS,
                   ACCOUNT_CHANGES, ACCOUNT_REQUESTS):
        REGISTRY.register(metric)


def _one_of(what: str, value: str, allowed: tuple[str, ...]) -> str:
    """``value``, or ValueError: a label value outside its fixed set is a typo at the call
    (and each new value a new series)."""
    if value not in allowed:
        raise ValueError(f"{what} must be one of {', '.join(allowed)}, got {value!r}")
    return value


def count_events(service: str, kind: str, outcome: str, n: int = 1) -> None:
    """``n`` events of ``kind`` that ``service``'s consuming stage finished with ``outcome``
    (EVENT_KINDS, EVENT_OUTCOMES; ValueError otherwise)."""
    EVENTS.labels(service, _one_of("kind", kind, EVENT_KINDS),
                  _one_of("outcome", outcome, EVENT_OUTCOMES)).inc(n)


def kind_of_value(value: bytes | None) -> str:
    """The kind an event's bytes say they are (for a dead letter, whose decoding failed): its
    ``kind`` field, ``created`` for an object without one (a topic's version 1), ``unknown``
    for anything else."""
    try:
        data = orjson.loads(value or b"")
    except orjson.JSONDecodeError:
        return "unknown"
    if not isinstance(data, dict):
        return "unknown"
    kind = data.get("kind", "created")
    return kind if kind in EVENT_KINDS else "unknown"


def count_account_change(kind: str) -> None:
    """One account changed or deleted by auth (ACCOUNT_CHANGE_KINDS; ValueError otherwise),
    counted once its transaction (with the event's outbox row) committed."""
    ACCOUNT_CHANGES.labels(_one_of("kind", kind, ACCOUNT_CHANGE_KINDS)).inc()
