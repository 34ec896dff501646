"""The compatibility gate: today's Records against a committed schema, both ways.

Two teams evolve the topics on their own schedules, and old events stay on the topics, so:

* **backward**: a consumer built from today's Records must read every event the committed
  schema allows: no new required field, no narrowed type, enum or constraint, no kind dropped;
* **forward**: a consumer built from the committed schema must read what today's Records
  write: no required field dropped, no widened type, enum or constraint, no kind added.

Both are one question, "does the reader accept everything the writer may send?", asked with the
roles swapped. Unknown fields are ignored by every consumer, so an optional field may come and
go. Schemas are compared as this package writes them (objects of typed, constrained fields; a
tagged union as ``oneOf``/``anyOf`` of such objects, kinds matched by title).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal

Direction = Literal["backward", "forward"]
Problem = Literal["required", "type", "enum", "constraint", "kind"]

#: The rule a problem breaks, by direction (backward: today's Records read the committed
#: schema's events; forward: the committed schema's consumers read today's Records' events).
RULES: dict[tuple[Direction, Problem], str] = {
    ("backward", "required"): "new required field",
    ("backward", "type"): "narrowed type",
    ("backward", "enum"): "narrowed enum",
    ("backward", "constraint"): "narrowed constraint",
    ("backward", "kind"): "kind dropped",
    ("forward", "required"): "required field dropped",
    ("forward", "type"): "widened type",
    ("forward", "enum"): "widened enum",
    ("forward", "constraint"): "widened constraint",
    ("forward", "kind"): "kind added",
}
CONSEQUENCE: dict[Direction, str] = {
    "backward": "a consumer built from today's Records would refuse events the committed "
                "schema allows (old events stay on the topic)",
    "forward": "a consumer built from the committed schema would refuse events today's "
               "Records write",
}
#: lower and upper bounds: a reader's bound the writer does not keep to refuses some values
LOWER = ("minLength", "minimum", "minItems")
UPPER = ("maxLength", "maximum", "maxItems")
#: keywords a reader keeps only if the writer keeps the very same
EXACT = ("format", "pattern", "uniqueItems")


@dataclass(frozen=True)
class Break:
    topic: str
    #: the field's path (``favorite_styles[]`` for its items), or ``(kind Title)``
    field: str
    direction: Direction
    problem: Problem
    detail: str

    @property
    def rule(self) -> str:
        return RULES[(self.direction, self.problem)]

    def __str__(self) -> str:
        return (f"{self.topic}: field {self.field!r}: {self.rule}: {self.detail}; "
                f"{CONSEQUENCE[self.direction]}")


def compare(topic: str, committed: dict[str, Any], current: dict[str, Any]) -> list[Break]:
    """Every way ``current`` (generated from today's Records) breaks ``committed``."""
    backward = _Check(topic, "backward", reader="today", writer="committed")
    forward = _Check(topic, "forward", reader="committed", writer="today")
    return [*backward.kinds(current, committed), *forward.kinds(committed, current)]


def kinds_of(schema: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The kinds of message a topic's schema allows, by title."""
    branches = schema.get("oneOf") or schema.get("anyOf") or [schema]
    return {b.get("title", ""): b for b in branches}


def _types(schema: dict[str, Any]) -> set[str] | None:
    """The JSON types a schema allows (None: any)."""
    tp = schema.get("type")
    if tp is None:
        return None
    return set(tp) if isinstance(tp, list) else {tp}


def _listed(types: set[str]) -> str:
    return "|".join(sorted(types))


def _values(schema: dict[str, Any]) -> list[Any] | None:
    """The values an ``enum`` or ``const`` allows (None: not limited)."""
    if "const" in schema:
        return [schema["const"]]
    enum = schema.get("enum")
    return list(enum) if enum is not None else None


@dataclass(frozen=True)
class _Check:
    """Does ``reader`` accept everything ``writer`` allows? Each refusal is a :class:`Break`."""

    topic: str
    direction: Direction
    reader: str
    writer: str

    def _break(self, path: str, problem: Problem, read: str, written: str) -> Break:
        """A break at ``path``: what the reader allows and what the writer allows, said as the
        committed schema's and today's Records'."""
        sides = {self.reader: read, self.writer: written}
        detail = f"committed schema: {sides['committed']}; today's Records: {sides['today']}"
        return Break(self.topic, path, self.direction, problem, detail)

    def kinds(self, reader: dict[str, Any], writer: dict[str, Any]) -> Iterator[Break]:
        readable = kinds_of(reader)
        for title, written in kinds_of(writer).items():
            if title not in readable:
                yield self._break(f"(kind {title})", "kind", "no such kind", f"kind {title}")
            else:
                yield from self.object(readable[title], written, "")

    def object(self, reader: dict[str, Any], writer: dict[str, Any],
               prefix: str) -> Iterator[Break]:
        read_props, write_props = reader.get("properties", {}), writer.get("properties", {})
        written_always = set(writer.get("required", []))
        for name in reader.get("required", []):
            if name not in written_always:
                yield self._break(prefix + name, "required", "required",
                                  "optional" if name in write_props else "no such field")
        for name, read in read_props.items():
            if name in write_props:
                yield from self.value(read, write_props[name], prefix + name)

    def value(self, reader: dict[str, Any], writer: dict[str, Any],
              path: str) -> Iterator[Break]:
        yield from self._type(reader, writer, path)
        yield from self._enum(reader, writer, path)
        yield from self._constraints(reader, writer, path)
        if isinstance(reader.get("items"), dict) and isinstance(writer.get("items"), dict):
            yield from self.value(reader["items"], writer["items"], path + "[]")
        if "properties" in reader and "properties" in writer:
            yield from self.object(reader, writer, path + ".")

    def _type(self, reader: dict[str, Any], writer: dict[str, Any],
              path: str) -> Iterator[Break]:
        read, written = _types(reader), _types(writer)
        if read is None:
            return
        if "number" in read:
            read = read | {"integer"}
        if written is None or written - read:
            yield self._break(path, "type", f"type {_listed(read)}",
                              f"type {_listed(written) if written else 'any'}")

    def _enum(self, reader: dict[str, Any], writer: dict[str, Any],
              path: str) -> Iterator[Break]:
        read, written = _values(reader), _values(writer)
        if read is None:
            return
        if written is None or any(v not in read for v in written):
            yield self._break(path, "enum", f"enum {read}",
                              "any value" if written is None else f"enum {written}")

    def _constraints(self, reader: dict[str, Any], writer: dict[str, Any],
                     path: str) -> Iterator[Break]:
        for keyword in (*LOWER, *UPPER, *EXACT):
            bound, kept = reader.get(keyword), writer.get(keyword)
            if bound is None or bound is False:
                continue  # no such limit (uniqueItems: false is none either)
            if kept is None:
                refused = True
            elif keyword in LOWER:
                refused = kept < bound
            elif keyword in UPPER:
                refused = kept > bound
            else:
                refused = kept != bound
            if refused:
                yield self._break(path, "constraint", f"{keyword} {bound!r}",
                                  f"{keyword} {'none' if kept is None else repr(kept)}")
