"""The compatibility gate: today's Records against the committed schemas under ``schemas/``.

For each rule, both directions: a deliberate break of a copy of a Record, and of a copy of a
committed schema, fails with a message naming the topic, the field and the rule; adding an
optional field passes. The real Records keep to the committed schemas, and those are what the
Records generate.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Annotated, Any, Literal

import pytest
from click.testing import CliRunner
from jsonschema import Draft7Validator, FormatChecker

from signupflow.cli import main
from signupflow.contracts.catalogue import (
    CONTRACTS,
    PARTNER_CREATED_CONTRACT,
    PROFILE_INSERT_CONTRACT,
    Contract,
)
from signupflow.contracts.compat import RULES, compare, kinds_of
from signupflow.contracts.files import ContractBroken, export, gate, generated, render, stale
from signupflow.domain.fields import IntRange, Text
from signupflow.models.events import Event, MemberUuid, PartnerCreated, ProfileInsert
from signupflow.models.shape import REQUIRED, shape_of

SCHEMAS = Path(__file__).resolve().parents[2] / "schemas"
Mutation = Callable[[dict[str, Any]], None]


def record_copy(record: type[Event], drop: tuple[str, ...] = (), **changes: Any) -> type[Event]:
    """A copy of ``record`` (same name) without the ``drop`` fields and with ``changes``: a
    name and its annotation, or (annotation, default) for an optional field."""
    options = record._options
    annotations = {n: options.fields[n] for n in options.fieldpos.values() if n not in drop}
    defaults = {n: v for n, v in options.defaults.items() if n not in drop}
    for name, change in changes.items():
        annotation, default = change if isinstance(change, tuple) else (change, REQUIRED)
        annotations.pop(name, None)
        annotations[name] = annotation
        defaults.pop(name, None)
        if default is not REQUIRED:
            defaults[name] = default
    # Faust wants the optional fields last
    annotations = dict(sorted(annotations.items(), key=lambda item: item[0] in defaults))
    body = {"__annotations__": annotations, "__doc__": record.__doc__,
            "__module__": __name__, "__qualname__": f"copy_of_{record.__name__}", **defaults}
    return type(record.__name__, (Event,), body)


def version_1(contract: Contract) -> Contract:
    """A topic's version 1: its first kind alone (the committed v1 file). The gate's rules are
    tested on these single-kind contracts; the several-kind ones are the real CONTRACTS."""
    return replace(contract, version=1, kinds=contract.kinds[:1], discriminator=None)


PROFILE_INSERT_V1 = version_1(PROFILE_INSERT_CONTRACT)
PARTNER_CREATED_V1 = version_1(PARTNER_CREATED_CONTRACT)


def with_record(contract: Contract, record: type[Event]) -> Contract:
    return replace(contract, kinds=(shape_of(record),))


def schema_copy(tmp_path: Path, contract: Contract, mutate: Mutation) -> Path:
    """A copy of the committed schemas with ``contract``'s file changed by ``mutate``."""
    schema = json.loads((SCHEMAS / contract.file).read_text())
    mutate(schema)
    (tmp_path / contract.file).parent.mkdir(parents=True)
    (tmp_path / contract.file).write_text(render(schema))
    return tmp_path


def assert_breaks(problems: list[str], topic: str, field: str, rule: str) -> None:
    wanted = f"{topic}: field {field!r}: {rule}: "
    assert any(p.startswith(wanted) for p in problems), (wanted, problems)


def prop(name: str, **change: Any) -> Mutation:
    def mutate(schema: dict[str, Any]) -> None:
        schema["properties"][name].update(change)
    return mutate


def drop_field(name: str) -> Mutation:
    def mutate(schema: dict[str, Any]) -> None:
        del schema["properties"][name]
        schema["required"].remove(name)
    return mutate


def add_field(name: str, required: bool) -> Mutation:
    def mutate(schema: dict[str, Any]) -> None:
        schema["properties"][name] = {"type": "integer", "minimum": 0}
        if required:
            schema["required"].append(name)
    return mutate


# --- the real Records and the committed schemas ---------------------------------------------

def test_todays_records_keep_to_every_committed_schema() -> None:
    assert gate(SCHEMAS) == []


def test_the_committed_schemas_are_what_the_records_generate() -> None:
    assert stale(SCHEMAS) == [], "run `signupflow schemas export` and commit schemas/"
    kept = {f"{c.topic}/v{v}.json" for c in CONTRACTS for v in range(1, c.version + 1)}
    assert {p.relative_to(SCHEMAS).as_posix() for p in SCHEMAS.rglob("*.json")} == kept, \
        "a schema file no contract keeps to, or an older version's file gone"


@pytest.mark.parametrize("contract", [PROFILE_INSERT_CONTRACT, PARTNER_CREATED_CONTRACT],
                         ids=lambda c: c.topic)
def test_todays_readers_accept_every_event_of_the_topics_version_1(contract: Contract) -> None:
    """The events already on a topic stay readable: today's reader against the v1 writer (the
    backward half of the gate; adding kinds is the forward break that made version 2)."""
    committed = json.loads((SCHEMAS / version_1(contract).file).read_text())
    backward = [b for b in compare(contract.topic, committed, generated(contract))
                if b.direction == "backward"]
    assert backward == []


def test_a_version_without_a_committed_schema_fails(tmp_path: Path) -> None:
    [problem] = gate(tmp_path, [PROFILE_INSERT_V1])
    assert problem.startswith("profile-insert: no committed schema profile-insert/v1.json")


def test_every_rule_has_a_case_below() -> None:
    covered = {case[-1] for case in [*RECORD_BREAKS, *SCHEMA_BREAKS]}
    assert covered | {"kind dropped", "kind added"} == set(RULES.values())


# --- each rule broken through a copy of a Record --------------------------------------------

Nickname20 = Annotated[str, Text(2, 20)]
Nickname40 = Annotated[str, Text(2, 40)]

RECORD_BREAKS: list[tuple[type[Event], dict[str, Any], str, str]] = [
    # (record, record_copy arguments, field, rule)
    (ProfileInsert, {"age": Annotated[int, IntRange(0, 150)]}, "age", "new required field"),
    (PartnerCreated, {"nickname": Annotated[int, IntRange(0, 9)]}, "nickname", "narrowed type"),
    (ProfileInsert, {"role": Literal["USER"]}, "role", "narrowed enum"),
    (ProfileInsert, {"nickname": Nickname20}, "nickname", "narrowed constraint"),
    (ProfileInsert, {"drop": ("nickname",)}, "nickname", "required field dropped"),
    (PartnerCreated, {"style_count": (Annotated[int | None, IntRange(0, 100)], None)},
     "style_count", "required field dropped"),
    (PartnerCreated, {"style_count": Annotated[int | None, IntRange(0, 100)]}, "style_count",
     "widened type"),
    (ProfileInsert, {"role": Literal["USER", "PARTNER", "ADMIN"]}, "role", "widened enum"),
    (ProfileInsert, {"nickname": Nickname40}, "nickname", "widened constraint"),
    (PartnerCreated, {"style_count": Annotated[int, IntRange(0, 1000)]}, "style_count",
     "widened constraint"),
]


@pytest.mark.parametrize(("record", "change", "field", "rule"), RECORD_BREAKS,
                         ids=[f"{r}-{f}" for _, _, f, r in RECORD_BREAKS])
def test_a_broken_record_fails_naming_topic_field_and_rule(
    record: type[Event], change: dict[str, Any], field: str, rule: str
) -> None:
    contract = next(c for c in (PROFILE_INSERT_V1, PARTNER_CREATED_V1)
                    if c.kinds[0].title == record.__name__)
    broken = record_copy(record, **change)
    assert_breaks(gate(SCHEMAS, [with_record(contract, broken)]), contract.topic, field, rule)


def test_a_record_with_an_optional_field_added_passes() -> None:
    grown = record_copy(ProfileInsert, bio=(Annotated[str | None, Text(0, 200)], None))
    contract = with_record(PROFILE_INSERT_V1, grown)
    assert gate(SCHEMAS, [contract]) == []
    assert "bio" in generated(contract)["properties"]


def test_an_optional_field_is_decoded_with_its_default_when_absent() -> None:
    from signupflow.domain.decode import _fields, plan

    grown = shape_of(record_copy(ProfileInsert, bio=(Annotated[str | None, Text(0, 9)], None)))
    event = {"uuid": "5b0c7a52-3f4e-4d1a-9c2b-7e8f9a0b1c2d", "role": "USER",
             "nickname": "neon_fox", "favorite_styles": [1], "occurred_at": "2026-11-26T10:00:00Z"}
    assert _fields(event, plan(grown.fields))["bio"] is None
    assert _fields({**event, "bio": " hi "}, plan(grown.fields))["bio"] == "hi"


# --- each rule broken through a copy of a committed schema ----------------------------------

SCHEMA_BREAKS: list[tuple[Contract, Mutation, str, str]] = [
    # (contract, change to its committed schema, field, rule)
    (PROFILE_INSERT_V1, drop_field("nickname"), "nickname", "new required field"),
    (PARTNER_CREATED_V1, prop("style_count", type=["integer", "null"]), "style_count",
     "narrowed type"),
    (PROFILE_INSERT_V1, prop("role", enum=["USER", "PARTNER", "ADMIN"]), "role",
     "narrowed enum"),
    (PROFILE_INSERT_V1, prop("nickname", maxLength=40), "nickname", "narrowed constraint"),
    (PROFILE_INSERT_V1, prop("uuid", pattern="^.*$"), "uuid", "narrowed constraint"),
    (PROFILE_INSERT_V1, add_field("age", required=True), "age", "required field dropped"),
    (PARTNER_CREATED_V1, prop("style_count", type="string"), "style_count",
     "widened type"),
    (PROFILE_INSERT_V1, prop("role", enum=["USER"]), "role", "widened enum"),
    (PROFILE_INSERT_V1, prop("nickname", maxLength=20), "nickname", "widened constraint"),
    (PARTNER_CREATED_V1, prop("occurred_at", format="date"), "occurred_at",
     "widened constraint"),
]


@pytest.mark.parametrize(("contract", "mutate", "field", "rule"), SCHEMA_BREAKS,
                         ids=[f"{r}-{f}" for _, _, f, r in SCHEMA_BREAKS])
def test_a_broken_schema_fails_naming_topic_field_and_rule(
    tmp_path: Path, contract: Contract, mutate: Mutation, field: str, rule: str
) -> None:
    root = schema_copy(tmp_path, contract, mutate)
    assert_breaks(gate(root, [contract]), contract.topic, field, rule)


def test_a_committed_schema_with_an_optional_field_more_passes(tmp_path: Path) -> None:
    root = schema_copy(tmp_path, PROFILE_INSERT_V1, add_field("age", required=False))
    assert gate(root, [PROFILE_INSERT_V1]) == []


def test_the_dead_letter_headers_are_gated_too(tmp_path: Path) -> None:
    dlq = next(c for c in CONTRACTS if c.topic == "profile-insert.dlq")
    root = schema_copy(tmp_path, dlq, prop("dlq.stage", enum=["member"]))
    assert_breaks(gate(root, [dlq]), "profile-insert.dlq", "dlq.stage", "widened enum")


# --- export keeps a version's file compatible -----------------------------------------------

def test_export_refuses_to_write_a_break_over_its_version(tmp_path: Path) -> None:
    root = schema_copy(tmp_path, PROFILE_INSERT_V1, lambda s: None)
    before = (root / PROFILE_INSERT_V1.file).read_text()
    broken = with_record(PROFILE_INSERT_V1, record_copy(ProfileInsert, drop=("role",)))
    with pytest.raises(ContractBroken) as refused:
        export(root, [broken])
    assert_breaks(refused.value.problems, "profile-insert", "role", "required field dropped")
    assert (root / PROFILE_INSERT_V1.file).read_text() == before
    # the way out: a new version, beside the old one
    assert export(root, [replace(broken, version=2)]) == ["profile-insert/v2.json"]
    assert (root / "profile-insert/v1.json").read_text() == before


def test_export_writes_an_optional_field_into_its_version(tmp_path: Path) -> None:
    root = schema_copy(tmp_path, PROFILE_INSERT_V1, lambda s: None)
    grown = with_record(PROFILE_INSERT_V1, record_copy(
        ProfileInsert, bio=(Annotated[str | None, Text(0, 200)], None)))
    assert export(root, [grown]) == ["profile-insert/v1.json"]
    assert "bio" in json.loads((root / "profile-insert/v1.json").read_text())["properties"]


def test_the_cli_check_fails_on_a_broken_committed_schema(tmp_path: Path) -> None:
    for contract in CONTRACTS:
        schema_copy(tmp_path, contract, lambda s: None)
    assert CliRunner().invoke(main, ["schemas", "export", "--check", "--dir",
                                     str(tmp_path)]).exit_code == 0
    path = tmp_path / PROFILE_INSERT_CONTRACT.file
    schema = json.loads(path.read_text())
    kinds_of(schema)["ProfileInsert"]["properties"]["role"]["enum"] = ["USER"]
    path.write_text(render(schema))
    result = CliRunner().invoke(main, ["schemas", "export", "--check", "--dir", str(tmp_path)])
    assert result.exit_code == 1
    assert "profile-insert: field 'role': widened enum" in result.output


# --- several kinds on one topic (a member's whole life) -------------------------------------

class Joined(Event):
    """A member joined."""

    kind: Literal["joined"]
    uuid: MemberUuid


class Left(Event):
    """A member left."""

    kind: Literal["left"]
    uuid: MemberUuid


class Renamed(Event):
    """A member took another nickname."""

    kind: Literal["renamed"]
    uuid: MemberUuid
    nickname: Annotated[str, Text(2, 30)]


def life(*kinds: type[Event]) -> Contract:
    return replace(PROFILE_INSERT_V1, topic="member-life",
                   kinds=tuple(shape_of(k) for k in kinds), discriminator="kind")


def test_a_topic_of_several_kinds_is_a_tagged_union() -> None:
    schema = generated(life(Joined, Left))
    assert schema["discriminator"] == "kind"
    assert list(kinds_of(schema)) == ["Joined", "Left"]
    validator = Draft7Validator(schema, format_checker=FormatChecker())
    uuid = "5b0c7a52-3f4e-4d1a-9c2b-7e8f9a0b1c2d"
    assert validator.is_valid({"kind": "left", "uuid": uuid})
    assert not validator.is_valid({"kind": "moved", "uuid": uuid})
    assert not validator.is_valid({"kind": "left", "uuid": uuid.upper()})


@pytest.mark.parametrize(("committed", "today", "field", "rule"), [
    ((Joined, Left), (Joined,), "(kind Left)", "kind dropped"),
    ((Joined, Left), (Joined, Left, Renamed), "(kind Renamed)", "kind added"),
    ((Joined, Renamed), (Joined, record_copy(Renamed, nickname=Annotated[str, Text(2, 20)])),
     "nickname", "narrowed constraint"),
])
def test_a_union_is_gated_kind_by_kind(
    tmp_path: Path, committed: tuple[type[Event], ...], today: tuple[type[Event], ...],
    field: str, rule: str,
) -> None:
    assert export(tmp_path, [life(*committed)]) == ["member-life/v1.json"]
    assert gate(tmp_path, [life(*committed)]) == []
    assert_breaks(gate(tmp_path, [life(*today)]), "member-life", field, rule)


def test_a_discriminator_must_fix_one_value_per_kind() -> None:
    with pytest.raises(TypeError, match="discriminator 'kind'"):
        generated(life(Joined, record_copy(Left, kind=Literal["left", "gone"])))


# --- the schemas say what the decoder enforces ----------------------------------------------

UUID = "5b0c7a52-3f4e-4d1a-9c2b-7e8f9a0b1c2d"
PROFILE = {"uuid": UUID, "role": "PARTNER", "nickname": "neon_fox", "favorite_styles": [2, 7],
           "occurred_at": "2026-11-26T10:00:00.123456+00:00"}
#: field -> values around each rule's edges (valid and not)
EDGES: dict[str, list[Any]] = {
    "uuid": [UUID, UUID.upper(), UUID.replace("-", ""), "x", 5, None],
    "role": ["USER", "PARTNER", "ADMIN", "user", 1],
    "nickname": ["ab", "a", "x" * 30, "x" * 31, " ab", "ab ", "a\x00b", "a b", 7, "\u00e9t\u00e9"],
    "favorite_styles": [[], [1, 12], [0], [13], [1, 1], [1, 2, 3, 4, 5], [1, 2, 3, 4, 5, 6],
                        [True], ["1"], "1"],
    "occurred_at": ["2026-11-26T10:00:00Z", "2026-11-26T10:00:00+09:00", "2026-11-26T10:00:00",
                    "2026-11-26", "yesterday", "2026-11-26T10:00:00.5-03:30", 1],
}


@pytest.mark.parametrize("field", sorted(EDGES))
def test_what_the_schema_allows_the_decoder_accepts(field: str) -> None:
    from signupflow.domain.decode import InvalidEvent, decode_profile_insert

    validator = Draft7Validator(generated(PROFILE_INSERT_V1), format_checker=FormatChecker())
    for value in EDGES[field]:
        event = {**PROFILE, field: value}
        allowed = validator.is_valid(event)
        key = str(event["uuid"]).encode()
        try:
            decoded = decode_profile_insert(key, json.dumps(event).encode(), 4096)
        except InvalidEvent:
            assert not allowed, f"{field}={value!r}: the schema allows what the decoder refuses"
        else:  # what the decoder makes of it is what the schema allows
            assert validator.is_valid(decoded.asdict()), f"{field}={value!r}"


def test_the_real_dead_letter_headers_keep_to_their_schema() -> None:
    from signupflow.dlq import MAX_REASON, dead_letter

    dlq = next(c for c in CONTRACTS if c.topic == "partner-created.dlq")
    validator = Draft7Validator(generated(dlq), format_checker=FormatChecker())
    for reason in ("value is empty", "x\x00" * MAX_REASON):
        letter = dead_letter(b"k", b"v", reason, "partner-created", 3, 1234, "batch")
        headers = {k: v.decode() for k, v in letter.headers()}
        assert validator.is_valid(headers), list(validator.iter_errors(headers))
    broken = copy.deepcopy(headers)
    broken["dlq.source.offset"] = "-1"
    assert not validator.is_valid(broken)
