"""Property-based tests: what the decoders accept is stored, what they refuse has a reason.

Why: the decoders are the only gate between the topics and the databases. An event they accept
but a database cannot store (NUL in text on PostgreSQL, an instant outside the timestamp range,
a nickname longer than its column) would make the worker fail on a driver error instead of
dead-lettering the event with a reason. So these tests generate ``profile-insert`` and
``partner-created`` events at and beyond every field's edges (lengths 0/1/2/30/31, whitespace,
NUL, combining marks, astral and lone surrogate characters, wrong JSON types, timestamps in the
years 1 and 9999 at offsets up to +-14:00, non-canonical uuids, style lists past the limit,
unknown and missing fields, keys that do not match, bytes that are not JSON), run them through
the real decoders and the real storage functions on SQLite and on PostgreSQL, and check:

* rejected => :class:`InvalidEvent` with a non-empty reason; nothing else is ever raised;
* accepted => the fields obey the documented rules, the storage call refuses nothing and raises
  nothing, the row reads back equal (nickname, styles or style_count, the instant), storing it
  again changes nothing (redelivery), not even its minute's signup count, and reusing the
  uuid with another nickname is refused with a reason ("reused with different content").

Budget: every named edge as an explicit example (the valid baseline event varied one field,
the key or the body at a time: about 200 per test), then a fixed ``EXAMPLES = 150`` generated
examples per test per database, with ``derandomize=True`` (hypothesis' fixed seed) and no example
database, so every run checks the same inputs. At least ``EXAMPLES // 5`` generated examples
must be accepted and as many rejected, so the generator cannot drift into one side only. One
private PostgreSQL server serves the whole module; every example gets a fresh uuid, so examples
share the databases without colliding.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import string
import uuid
from collections import Counter
from collections.abc import Callable, Coroutine, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import orjson
import pytest
from hypothesis import HealthCheck, example, given, note, settings
from hypothesis import strategies as st
from sqlalchemy import Row, select
from sqlalchemy.ext.asyncio import AsyncEngine

from signupflow.db import make_engine
from signupflow.domain.decode import InvalidEvent, decode_partner_created, decode_profile_insert
from signupflow.domain.per_minute import MinuteKey, window_start
from signupflow.domain.reuse import Conflict, instant
from signupflow.domain.styles import MAX_FAVORITE_STYLES, STYLES
from signupflow.domain.summary import merge_summary
from signupflow.migrations import upgrade
from signupflow.models.events import (
    ROLES,
    PartnerCreated,
    PartnerSummary,
    ProfileInsert,
)
from signupflow.storage.batch import load_summaries, save_summaries
from signupflow.storage.errors import Rejected
from signupflow.storage.member import PARTNERS, USERS, save_profiles
from signupflow.storage.member import STYLES as STYLE_ROWS
from tests.integration.postgres import Postgres

T = TypeVar("T")

EXAMPLES = 150
MAX_BYTES = 4096
REUSED = "reused with different content"

PROPERTY_SETTINGS = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


# --- the databases ---------------------------------------------------------------------------


@dataclass
class Database:
    """One kind of database: an engine per service, all driven by one event loop."""

    kind: str
    runner: asyncio.Runner
    member: AsyncEngine
    batch: AsyncEngine

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return self.runner.run(coro)


@pytest.fixture(scope="module")
def postgres() -> Iterator[Postgres]:
    """One private PostgreSQL server for the module, with the member and batch databases."""
    server = Postgres()
    try:
        server.start(["member", "batch"])
        yield server
    finally:
        server.remove()


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def database(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Database]:
    if request.param == "sqlite":
        folder: Path = tmp_path_factory.mktemp("properties")
        urls = {s: f"sqlite+aiosqlite:///{folder / s}.db" for s in ("member", "batch")}
    else:
        server: Postgres = request.getfixturevalue("postgres")
        urls = {s: server.url(s) for s in ("member", "batch")}
    with asyncio.Runner() as runner:
        db = Database(request.param, runner, make_engine(urls["member"]),
                      make_engine(urls["batch"]))
        try:
            runner.run(upgrade(db.member, "member"))
            runner.run(upgrade(db.batch, "batch"))
            yield db
        finally:
            runner.run(db.member.dispose())
            runner.run(db.batch.dispose())


_serial = itertools.count()


def fresh_uuid() -> uuid.UUID:
    """A uuid no earlier example used (deterministic, so a run can be repeated exactly)."""
    return uuid.uuid5(uuid.NAMESPACE_URL, f"signupflow-properties-{next(_serial)}")


# --- generated events ------------------------------------------------------------------------


class _Missing:
    def __repr__(self) -> str:
        return "MISSING"


MISSING: Any = _Missing()  # the field is left out of the JSON object


@dataclass(frozen=True)
class Fresh:
    """The example's fresh uuid, written in one ``form`` (only ``canonical`` is valid)."""

    form: str

    def render(self, uid: uuid.UUID) -> str:
        text = str(uid)
        forms: dict[str, str] = {
            "canonical": text,
            "upper": text.upper(),
            "hex": uid.hex,
            "braces": "{" + text + "}",
            "urn": uid.urn,
            "padded": f" {text} ",
            "truncated": text[:-1],
            "extended": text + "0",
            "nul": text + "\x00",
        }
        return forms[self.form]


def encode(data: Any, encoding: str) -> bytes:
    """JSON bytes in one of several spellings; lone surrogates end up as \\ud800 escapes or as
    invalid (CESU-8) UTF-8, both of which the decoder must refuse."""
    if encoding == "orjson":
        try:
            return orjson.dumps(data)
        except orjson.JSONEncodeError:  # lone surrogates, integers beyond 64 bits
            encoding = "json-ascii"
    if encoding == "json-ascii":
        return json.dumps(data).encode("ascii")
    indent = 2 if encoding == "json-indent" else None
    return json.dumps(data, ensure_ascii=False, indent=indent, sort_keys=indent is not None
                      ).encode("utf-8", "surrogatepass")


@dataclass(frozen=True)
class Case:
    """One generated record: its fields (values, :class:`Fresh` or ``MISSING``), extra fields,
    how the key is written, how the JSON is encoded and how the body is framed."""

    id_field: str
    fields: dict[str, Any]
    extra: dict[str, Any] = field(default_factory=dict)
    key: str = "match"
    encoding: str = "orjson"
    body: str = "json"
    raw: bytes = b""

    def materialise(self, uid: uuid.UUID) -> tuple[bytes | None, bytes | None]:
        data = {name: value.render(uid) if isinstance(value, Fresh) else value
                for name, value in self.fields.items() if value is not MISSING}
        data.update(self.extra)
        return self._key(uid), self._body(data)

    def _key(self, uid: uuid.UUID) -> bytes | None:
        id_value = self.fields[self.id_field]
        id_text = id_value.render(uid) if isinstance(id_value, Fresh) else str(uid)
        keys: dict[str, bytes | None] = {
            "match": id_text.encode("utf-8", "surrogatepass"),
            "none": None,
            "empty": b"",
            "upper": str(uid).upper().encode(),
            "other": str(uuid.uuid5(uid, "other")).encode(),
            "padded": f"{uid} ".encode(),
            "invalid-utf8": b"\xff" + str(uid).encode()[1:],
        }
        return keys[self.key]

    def _body(self, data: dict[str, Any]) -> bytes | None:
        if self.body == "tombstone":
            return None
        if self.body == "raw":
            return self.raw
        if self.body == "oversize":
            data = {**data, "padding": "x" * MAX_BYTES}
        text = encode(data, self.encoding)
        bodies: dict[str, bytes] = {
            "json": text,
            "oversize": text,
            "padded": b" \n\t" + text + b"\r\n ",
            "bom": b"\xef\xbb\xbf" + text,
            "truncated": text[:-1],
            "array": b"[" + text + b"]",
            "empty": b"",
            "blank": b" \n\t ",
            "null": b"null",
        }
        return bodies[self.body]


JSON_SCALARS: st.SearchStrategy[Any] = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=8))
JSON_VALUES: st.SearchStrategy[Any] = st.recursive(
    JSON_SCALARS,
    lambda inner: st.one_of(st.lists(inner, max_size=3),
                            st.dictionaries(st.text(max_size=5), inner, max_size=3)),
    max_leaves=6)
WRONG_TYPE_EDGES: list[Any] = [MISSING, None, True, False, 0, -1, 1.5, 2**64, [], {}, ["ab"],
                                {"a": 1}]
WRONG_TYPES: st.SearchStrategy[Any] = st.one_of(
    st.sampled_from(WRONG_TYPE_EDGES), st.none(), st.booleans(), st.integers(),
    st.floats(allow_nan=False, allow_infinity=False),
    st.lists(st.integers(), min_size=1, max_size=3),
    st.dictionaries(st.text(max_size=3), st.integers(), min_size=1, max_size=2))

# Characters a nickname may hold: every code point except surrogates, NUL, separators and
# controls (so the generated text is not simply stripped away), plus explicit nasty ones.
NAME_CHARS = st.one_of(
    st.characters(codec="utf-8", exclude_categories=("Z", "Cc", "Cs")),
    st.sampled_from(["\u0301", "\u0308", "\U0001f600", "\U0001d518", "\U0010ffff",
                     "\u200b", "\ufeff", "\u202e", "\ufffe", "\u00df", "\u0130", "'", '"', "\\"]))
SPACES = st.text(alphabet=" \t\n\r\u00a0\u2003\u3000\u0085\x1f", max_size=3)


@st.composite
def padded_names(draw: st.DrawFn) -> str:
    return draw(SPACES) + draw(st.text(NAME_CHARS, min_size=2, max_size=30)) + draw(SPACES)


NICKNAME_EDGES: list[Any] = [
    "ab", "x" * 30, "  ab  ", "\tneon fox\n", "a b", "\u3000ab\u3000", "\U0001f600\U0001f600",
    "\U0001d518" * 30, "e\u0301" * 15, "\U0010ffff" * 30, "a\u200bb", "\u00df" * 30,
    "\u0130" * 30, "\u202eab", "\ufeffab", "'; DROP TABLE user_profile; --",
    "", "a", " a ", "e\u0301", "x" * 31, " " + "x" * 31 + " ", "e\u0301" * 16,
    "\U0001f600" * 31, " " * 10, "\u3000" * 5, "\x85\x1f", "ab\x00cd", "\x00ab", "ab\x00",
    "\x00", "x" * 10_000, "\ud800ab", "ab\udfff", "\ud83d\ude00",
]
GOOD_NICKNAMES: st.SearchStrategy[Any] = st.one_of(
    st.text(string.ascii_letters + string.digits + "_-. ", min_size=2, max_size=30),
    st.text(NAME_CHARS, min_size=2, max_size=30),
    padded_names())
BAD_NICKNAMES: st.SearchStrategy[Any] = st.one_of(
    st.sampled_from(NICKNAME_EDGES),
    WRONG_TYPES,
    st.text(NAME_CHARS, max_size=1),
    st.text(NAME_CHARS, min_size=31, max_size=60),
    SPACES,
    st.builds(lambda a, b: a + "\x00" + b, st.text(NAME_CHARS, max_size=15),
              st.text(NAME_CHARS, max_size=15)))

ROLE_EDGES: list[Any] = ["USER", "PARTNER", "user", "partner", "Partner", "ADMIN", "", " USER",
                         "USER ", "USER\x00", "PARTNER\u200b", ["USER"]]
GOOD_ROLES: st.SearchStrategy[Any] = st.sampled_from(ROLES)
BAD_ROLES: st.SearchStrategy[Any] = st.one_of(
    st.sampled_from(ROLE_EDGES), WRONG_TYPES, st.text(max_size=10))

KNOWN = sorted(STYLES)
STYLE_EDGES: list[Any] = [
    [], KNOWN[:1], KNOWN[:MAX_FAVORITE_STYLES], KNOWN[-MAX_FAVORITE_STYLES:],
    KNOWN[:MAX_FAVORITE_STYLES + 1], KNOWN, [1, 1], [1, 2, 1], [1, True], [True], [False], [0],
    [max(KNOWN) + 1], [-1], [2**31], [2**63 - 1], [-(2**63)], [2**64], [1.0], [1.5], ["1"],
    [None], [[1]], [{"id": 1}], list(range(1, 1000)), "1,2", {"1": 1},
]
GOOD_STYLES: st.SearchStrategy[Any] = st.lists(
    st.sampled_from(KNOWN), unique=True, max_size=MAX_FAVORITE_STYLES)
BAD_STYLE_IDS: st.SearchStrategy[Any] = st.one_of(
    st.sampled_from([0, -1, max(KNOWN) + 1, 2**63 - 1, 2**64, True, False, 1.0, "1", None]),
    st.integers(), JSON_SCALARS)
BAD_STYLES: st.SearchStrategy[Any] = st.one_of(
    st.sampled_from(STYLE_EDGES), WRONG_TYPES, st.text(max_size=5),
    st.lists(st.sampled_from(KNOWN), unique=True, min_size=MAX_FAVORITE_STYLES + 1),
    st.lists(st.sampled_from(KNOWN), min_size=2, max_size=MAX_FAVORITE_STYLES
             ).filter(lambda ids: len(set(ids)) < len(ids)),
    st.builds(lambda good, bad, at: [*good[:at], bad, *good[at:]],
              st.lists(st.sampled_from(KNOWN), unique=True, max_size=MAX_FAVORITE_STYLES - 1),
              BAD_STYLE_IDS, st.integers(0, MAX_FAVORITE_STYLES - 1)))

MOMENTS = st.datetimes(min_value=datetime(1, 1, 1),
                       max_value=datetime(9999, 12, 31, 23, 59, 59, 999_999))
OFFSET_MINUTES = st.one_of(st.sampled_from([0, 14 * 60, -14 * 60, 12 * 60, -12 * 60, 330, -570]),
                           st.integers(-14 * 60, 14 * 60))


@st.composite
def timestamps(draw: st.DrawFn) -> str:
    """ISO-8601 text with an offset, in the spellings Python accepts (may still be refused when
    the instant is not representable in UTC, e.g. the year 1 at +14:00)."""
    moment = draw(MOMENTS)
    minutes = draw(OFFSET_MINUTES)
    text = moment.isoformat(
        sep=draw(st.sampled_from("T ")),
        timespec=draw(st.sampled_from(["auto", "minutes", "seconds", "milliseconds",
                                       "microseconds"])))
    if minutes == 0 and draw(st.booleans()):
        return text + "Z"
    sign = "-" if minutes < 0 else "+"
    hours, rest = divmod(abs(minutes), 60)
    colon = draw(st.sampled_from([":", ""]))
    return f"{text}{sign}{hours:02d}{colon}{rest:02d}"


TIMESTAMP_EDGES: list[Any] = [
    "0001-01-01T00:00:00+00:00", "0001-01-01T00:00:00Z", "0001-01-01T00:00:00-14:00",
    "0001-01-01T00:00:00+14:00", "0001-01-01T13:59:59+14:00", "0001-01-01T14:00:00+14:00",
    "0001-01-01T00:00:00+12:00", "0001-01-01T12:00:00+12:00", "0001-01-01T00:00:00-12:00",
    "9999-12-31T23:59:59.999999Z", "9999-12-31T23:59:59.999999+00:00",
    "9999-12-31T23:59:59-12:00", "9999-12-31T11:59:59-12:00", "9999-12-31T12:00:00-12:00",
    "9999-12-31T23:59:59+12:00", "9999-12-31T23:59:59+14:00", "9999-12-31T09:59:59.999999-14:00",
    "9999-12-31T10:00:00-14:00", "2024-06-15T09:30:00.123456789+00:00",
    "2024-06-15T09:30:00.1+05:30", "2024-02-29T00:00:00Z", "2024-06-15 09:30+05:30",
    "2024-W24-6T09:30Z", "20240615T093000Z", "2024-06-15T09:30:00,5Z",
    "2024-06-15T09:30:00+00:00:30", "2024-06-15T09:30:00+23:59:59.999999",
    "2024-02-30T00:00:00+00:00", "2023-02-29T00:00:00Z", "2024-13-01T00:00:00Z",
    "2024-06-15T24:00:00Z", "9999-12-31T24:00:00Z", "2024-06-15T09:60:00Z",
    "2024-06-15T09:30:00+24:00", "2024-06-15T09:30:00", "2024-06-15", "0001-01-01T00:00:00",
    "9999-12-31T23:59:59", "0000-01-01T00:00:00Z", "10000-01-01T00:00:00Z", "", " ", "now",
    "1718443800", "2024-06-15T09:30:00+00:00 ", " 2024-06-15T09:30:00Z",
    "2024-06-15T09:30:00\x00+00:00", "2024-06-15T09:30:00 UTC", "2024-06-15T09:30:00+0",
    1718443800, 1718443800.5, "9999-12-31T23:59:59.999999-00:01",
    "0001-01-01T00:00:00.000001+00:01",
]
GOOD_TIMESTAMPS: st.SearchStrategy[Any] = timestamps()
BAD_TIMESTAMPS: st.SearchStrategy[Any] = st.one_of(
    st.sampled_from(TIMESTAMP_EDGES), WRONG_TYPES, st.text(max_size=30),
    MOMENTS.map(datetime.isoformat))

COUNT_EDGES: list[Any] = [0, 1, 100, -1, 101, True, False, 1.0, 100.0, 0.5, "5", "0", 2**31,
                          2**63 - 1, -(2**63), 2**64, [5]]
GOOD_COUNTS: st.SearchStrategy[Any] = st.integers(0, 100)
BAD_COUNTS: st.SearchStrategy[Any] = st.one_of(
    st.sampled_from(COUNT_EDGES), WRONG_TYPES, st.integers(max_value=-1),
    st.integers(min_value=101))

ID_EDGES: list[Any] = [Fresh(form) for form in (
    "upper", "hex", "braces", "urn", "padded", "truncated", "extended", "nul")]
GOOD_IDS: st.SearchStrategy[Any] = st.just(Fresh("canonical"))
BAD_IDS: st.SearchStrategy[Any] = st.one_of(
    st.sampled_from(ID_EDGES), WRONG_TYPES, st.text(max_size=40),
    st.uuids().map(lambda u: str(u).upper()))

RAW_EDGES: list[bytes] = [
    b"{", b"}", b"{}", b"[]", b"[1,2]", b'"text"', b"42", b"true", b"NaN", b"\xff\xfe{}",
    b'{"a":}', b"[" * 2000 + b"]" * 2000, b"\x00", b'{"uuid": "\\ud800"}',
    b'{"nickname": "\\u0000"}']
RAW_BODIES: st.SearchStrategy[bytes] = st.one_of(st.binary(max_size=64), st.sampled_from(RAW_EDGES))
BAD_KEYS = ("none", "empty", "upper", "other", "padded", "invalid-utf8")
BAD_BODIES = ("padded", "bom", "truncated", "array", "empty", "blank", "null", "tombstone",
              "oversize", "raw")
ENCODINGS = ("orjson", "json-ascii", "json-utf8", "json-indent")
MODES = ("intact", "intact", "field", "field", "fields", "key", "body")


@dataclass(frozen=True)
class FieldSpec:
    """How to draw one field: within its rules, beyond them, and the named edges to try each."""

    good: st.SearchStrategy[Any]
    bad: st.SearchStrategy[Any]
    edges: list[Any]


@dataclass(frozen=True)
class EventSpec:
    id_field: str
    fields: dict[str, FieldSpec]
    baseline: dict[str, Any]  # a valid event, varied one thing at a time by the explicit cases

    def explicit_cases(self) -> list[Case]:
        """The baseline with each field set to each of its edges (and each wrong type), with
        each key and body form, in each encoding: every named edge runs in every run."""
        base = Case(self.id_field, self.baseline)
        found = [base]
        for name, spec in self.fields.items():
            found += [Case(self.id_field, {**self.baseline, name: value})
                      for value in [*spec.edges, *WRONG_TYPE_EDGES]]
        found += [Case(self.id_field, self.baseline, key=key) for key in BAD_KEYS]
        found += [Case(self.id_field, self.baseline, body=body, raw=b"{")
                  for body in BAD_BODIES]
        found += [Case(self.id_field, self.baseline, body="raw", raw=raw) for raw in RAW_EDGES]
        found += [Case(self.id_field, {**self.baseline, "nickname": nickname}, encoding=encoding)
                  for encoding in ENCODINGS for nickname in ("\U0001f600e\u0301", "ab\ud800")]
        found.append(Case(self.id_field, self.baseline, extra={"revision": 2, "": None,
                                                                  "nested": {"a": [1, "\x00"]}}))
        return found


def extra_fields(known: Mapping[str, object]) -> st.SearchStrategy[dict[str, Any]]:
    return st.dictionaries(st.text(max_size=12).filter(lambda name: name not in known),
                           JSON_VALUES, max_size=3)


@st.composite
def cases(draw: st.DrawFn, spec: EventSpec) -> Case:
    """A record whose fields are all within their rules, or one with one field, several
    fields, the key or the body beyond them."""
    mode = draw(st.sampled_from(MODES))
    names = sorted(spec.fields)
    broken: set[str] = set()
    if mode == "field":
        broken = {draw(st.sampled_from(names))}
    elif mode == "fields":
        broken = draw(st.sets(st.sampled_from(names), min_size=2))
    fields = {name: draw(f.bad if name in broken else f.good)
              for name, f in spec.fields.items()}
    body = draw(st.sampled_from(BAD_BODIES if mode == "body" else ("json", "padded")))
    return Case(
        id_field=spec.id_field,
        fields=fields,
        extra=draw(extra_fields(spec.fields)) if draw(st.booleans()) else {},
        key=draw(st.sampled_from(BAD_KEYS)) if mode == "key" else "match",
        encoding=draw(st.sampled_from(ENCODINGS)),
        body=body,
        raw=draw(RAW_BODIES) if body == "raw" else b"",
    )


PROFILE = EventSpec(
    id_field="uuid",
    fields={
        "uuid": FieldSpec(GOOD_IDS, BAD_IDS, ID_EDGES),
        "role": FieldSpec(GOOD_ROLES, BAD_ROLES, ROLE_EDGES),
        "nickname": FieldSpec(GOOD_NICKNAMES, BAD_NICKNAMES, NICKNAME_EDGES),
        "favorite_styles": FieldSpec(GOOD_STYLES, BAD_STYLES, STYLE_EDGES),
        "occurred_at": FieldSpec(GOOD_TIMESTAMPS, BAD_TIMESTAMPS, TIMESTAMP_EDGES),
    },
    baseline={"uuid": Fresh("canonical"), "role": "PARTNER", "nickname": "neon_fox",
              "favorite_styles": [2, 7, 11], "occurred_at": "2024-06-15T09:30:00.123456+02:00"},
)
PARTNER = EventSpec(
    id_field="partner_id",
    fields={
        "partner_id": FieldSpec(GOOD_IDS, BAD_IDS, ID_EDGES),
        "nickname": FieldSpec(GOOD_NICKNAMES, BAD_NICKNAMES, NICKNAME_EDGES),
        "style_count": FieldSpec(GOOD_COUNTS, BAD_COUNTS, COUNT_EDGES),
        "occurred_at": FieldSpec(GOOD_TIMESTAMPS, BAD_TIMESTAMPS, TIMESTAMP_EDGES),
    },
    baseline={"partner_id": Fresh("canonical"), "nickname": "neon_fox", "style_count": 3,
              "occurred_at": "2024-06-15T09:30:00.123456+02:00"},
)


# --- the invariant ---------------------------------------------------------------------------


def decoded(decode: Callable[[bytes | None, bytes | None, int], T], case: Case
            ) -> tuple[T | None, str, dict[str, Any]]:
    """The decoded event, or None when the decoder refused it with a reason (nothing else may
    escape the decoder); with the key and the JSON object it was decoded from."""
    key, value = case.materialise(fresh_uuid())
    note(f"key={key!r}")
    note(f"value={value!r}"[:2000])
    try:
        event = decode(key, value, MAX_BYTES)
    except InvalidEvent as exc:
        assert str(exc).strip(), "a refused event must carry a reason"
        return None, "", {}
    assert key is not None and value is not None
    return event, key.decode(), orjson.loads(value)


def check_common(event: ProfileInsert | PartnerCreated, event_id: str, key: str,
                 data: Mapping[str, Any]) -> None:
    """The documented rules hold for every accepted event, and it says what its JSON said."""
    assert event_id == key == str(uuid.UUID(event_id))
    assert event.nickname == data["nickname"].strip()
    assert 2 <= len(event.nickname) <= 30 and "\x00" not in event.nickname
    assert instant(event.occurred_at).isoformat() == event.occurred_at  # canonical UTC text
    assert instant(event.occurred_at) == instant(data["occurred_at"])


def other_nickname(nickname: str) -> str:
    """A valid nickname of the same length that differs in its last character."""
    return nickname[:-1] + ("y" if nickname[-1] != "y" else "z")


async def stored_profile(engine: AsyncEngine, uid: str) -> dict[str, list[Row[Any]]]:
    async with engine.connect() as conn:
        return {
            table.name: list((await conn.execute(
                select(table).where(table.c.uuid == uid).order_by(*table.primary_key)
            )).all())
            for table in (USERS, PARTNERS, STYLE_ROWS)
        }


async def check_profile(engine: AsyncEngine, case: Case) -> str:
    event, key, data = decoded(decode_profile_insert, case)
    if event is None:
        return "rejected"
    check_common(event, event.uuid, key, data)
    assert event.role in ROLES and event.role == data["role"]
    assert event.favorite_styles == data["favorite_styles"]
    assert len(set(event.favorite_styles)) == len(event.favorite_styles) <= MAX_FAVORITE_STYLES
    assert all(type(s) is int and s in STYLES for s in event.favorite_styles)

    first: dict[MinuteKey, int] = {}
    assert await save_profiles(engine, [event], [3], first) == {}
    assert list(first) == [(event.role, 3, window_start(event.occurred_at))]
    rows = await stored_profile(engine, event.uuid)
    own, other = (PARTNERS, USERS) if event.role == "PARTNER" else (USERS, PARTNERS)
    assert len(rows[own.name]) == 1 and rows[other.name] == []
    row = rows[own.name][0]
    assert row.nickname == event.nickname
    assert instant(row.joined_at) == instant(event.occurred_at)
    assert {r.style_id for r in rows[STYLE_ROWS.name]} == set(event.favorite_styles)

    again: dict[MinuteKey, int] = {}
    assert await save_profiles(engine, [event], [3], again) == {}, "a redelivery is a no-op"
    assert await stored_profile(engine, event.uuid) == rows
    assert again == first, "a redelivery is not counted again"

    reuse = ProfileInsert(uuid=event.uuid, role=event.role,
                          nickname=other_nickname(event.nickname),
                          favorite_styles=event.favorite_styles, occurred_at=event.occurred_at)
    refused = await save_profiles(engine, [reuse])
    assert list(refused) == [0] and REUSED in refused[0], refused
    assert await stored_profile(engine, event.uuid) == rows
    return "accepted"


async def stored_summary(engine: AsyncEngine, partner_id: str) -> dict[str, Any]:
    found = [row.model_dump() for row in await load_summaries(engine)
             if row.partner_id == partner_id]
    assert len(found) == 1, found
    return found[0]


async def check_partner(engine: AsyncEngine, case: Case) -> str:
    event, key, data = decoded(decode_partner_created, case)
    if event is None:
        return "rejected"
    check_common(event, event.partner_id, key, data)
    assert event.style_count == data["style_count"] and type(event.style_count) is int
    assert 0 <= event.style_count <= 100

    now = datetime.now(UTC)
    summary = merge_summary(None, event, now)
    assert summary is not None
    assert await save_summaries(engine, [summary]) == {}
    row = await stored_summary(engine, event.partner_id)
    assert row["nickname"] == event.nickname
    assert row["style_count"] == event.style_count
    assert instant(row["joined_at"]) == instant(event.occurred_at)
    assert instant(row["summarized_at"]) == now

    current = PartnerSummary(  # what was stored, read back
        partner_id=row["partner_id"], nickname=row["nickname"], style_count=row["style_count"],
        joined_at=instant(row["joined_at"]).isoformat(),
        summarized_at=instant(row["summarized_at"]).isoformat())
    assert merge_summary(current, event, now) is None, "a redelivery changes nothing"
    assert await save_summaries(engine, [summary]) == {}
    assert await stored_summary(engine, event.partner_id) == row

    reuse = PartnerCreated(partner_id=event.partner_id, nickname=other_nickname(event.nickname),
                           style_count=event.style_count, occurred_at=event.occurred_at)
    with pytest.raises(Conflict, match=REUSED):
        merge_summary(current, reuse, now)
    return "accepted"


def run_property(database: Database, spec: EventSpec,
                 check: Callable[[AsyncEngine, Case], Coroutine[Any, Any, str]],
                 engine: AsyncEngine) -> None:
    """The explicit edge cases, then ``EXAMPLES`` generated ones; at least a fifth of the
    generated ones must be accepted and a fifth rejected."""
    explicit = spec.explicit_cases()
    explicit_ids = {id(case) for case in explicit}
    outcomes: Counter[tuple[str, str]] = Counter()

    def prop(case: Case) -> None:
        origin = "explicit" if id(case) in explicit_ids else "generated"
        outcomes[origin, database.run(check(engine, case))] += 1

    test = given(case=cases(spec))(prop)
    for case in explicit:
        test = example(case=case)(test)
    PROPERTY_SETTINGS(test)()
    print(f"{database.kind}: {sorted(outcomes.items())}")
    assert outcomes["explicit", "accepted"] + outcomes["explicit", "rejected"] == len(explicit)
    assert outcomes["generated", "accepted"] >= EXAMPLES // 5, outcomes
    assert outcomes["generated", "rejected"] >= EXAMPLES // 5, outcomes


def test_profile_insert_accepted_is_stored_rejected_has_a_reason(database: Database) -> None:
    run_property(database, PROFILE, check_profile, database.member)


def test_partner_created_accepted_is_summarised_rejected_has_a_reason(
    database: Database,
) -> None:
    run_property(database, PARTNER, check_partner, database.batch)


@pytest.mark.parametrize("nickname", ["x" * 31, "nul\x00here"])
def test_what_postgresql_refuses_is_rejected_not_an_unknown_error(
    database: Database, nickname: str
) -> None:
    """Behind the decoders, storage still says *why* it refused: a value the database cannot
    take is :class:`Rejected` (isolated and dead-lettered at once), never a driver error that
    looks like an outage. SQLite takes both values; PostgreSQL refuses them (SQLSTATE 22)."""
    event = ProfileInsert(uuid=str(fresh_uuid()), role="USER", nickname=nickname,
                          favorite_styles=[], occurred_at="2026-01-01T00:00:00+00:00")
    if database.kind == "sqlite":
        assert database.run(save_profiles(database.member, [event])) == {}
        return
    with pytest.raises(Rejected):
        database.run(save_profiles(database.member, [event]))
