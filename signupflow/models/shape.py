"""The fields of an event (or of a set of headers) as data: name, type, rule, required.

One reading of a Record's annotations, shared by the decoder (which checks each field with its
rule) and the contracts (which write each field's type and rule as JSON Schema), so the two
cannot drift apart.
"""

from __future__ import annotations

import inspect
import types
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from signupflow.domain.fields import Choice, FieldRule

#: A field without a default that is missing (a default of None is a value).
REQUIRED = inspect.Parameter.empty


@dataclass(frozen=True)
class Field:
    name: str
    #: the Python type without ``Annotated`` (``str``, ``int | None``, ``list[int]``, a Literal)
    type: Any
    #: what the decoder checks and the schema says beyond the type
    rule: FieldRule
    default: Any = REQUIRED

    @property
    def required(self) -> bool:
        return self.default is REQUIRED

    @property
    def nullable(self) -> bool:
        return type(None) in union_args(self.type)


@dataclass(frozen=True)
class Shape:
    """One kind of message: a Record's fields, or the headers of a message."""

    title: str
    description: str
    fields: tuple[Field, ...]

    def field(self, name: str) -> Field:
        return next(f for f in self.fields if f.name == name)


def union_args(tp: Any) -> tuple[Any, ...]:
    if get_origin(tp) in (Union, types.UnionType):
        return get_args(tp)
    return (tp,)


def field_of(name: str, annotation: Any, default: Any = REQUIRED) -> Field:
    """The field ``name: annotation [= default]``; its rule comes from ``Annotated`` or, for a
    ``Literal``, is the choice of its values. A field with neither is refused: every field of
    a contract says what it allows."""
    rules: list[FieldRule] = []
    tp = annotation
    if get_origin(annotation) is Annotated:
        tp, *extras = get_args(annotation)
        rules = [e for e in extras if hasattr(e, "schema") and hasattr(e, "check")]
    literal = next((a for a in union_args(tp) if get_origin(a) is Literal), None)
    if not rules and literal is not None:
        rules = [Choice(tuple(get_args(literal)))]
    if len(rules) != 1:
        raise TypeError(f"field {name!r} needs exactly one rule (Annotated[type, rule] or a "
                        f"Literal), has {len(rules)}")
    return Field(name, tp, rules[0], default)


def shape_of(record: type[Any]) -> Shape:
    """The shape of a ``faust.Record`` class, fields in declaration order."""
    options = record._options
    doc = inspect.getdoc(record) or ""
    return Shape(record.__name__, doc.split("\n\n")[0].replace("\n", " "),
                 tuple(field_of(name, options.fields[name], options.defaults.get(name, REQUIRED))
                       for name in options.fieldpos.values()))


def shape_of_mapping(title: str, description: str, annotations: Mapping[str, Any],
                     optional: Mapping[str, Any] | None = None) -> Shape:
    """A shape from ``{name: annotation}`` (headers, whose names are not identifiers);
    ``optional``: more fields, each with its default."""
    return Shape(title, description, (
        *(field_of(n, a) for n, a in annotations.items()),
        *(field_of(n, a, None) for n, a in (optional or {}).items())))
