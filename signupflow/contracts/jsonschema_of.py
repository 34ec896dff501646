"""JSON Schema (draft-07) of a shape: each field's Python type, refined by its rule.

Draft-07 because AsyncAPI 3.0 embeds draft-07 schemas as they are. No ``additionalProperties``:
consumers tolerate unknown fields, so a producer may add an optional field before its consumers
know it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal, get_args, get_origin

from signupflow.domain.fields import Choice
from signupflow.models.shape import Field, Shape, union_args

DIALECT = "http://json-schema.org/draft-07/schema#"
_SCALARS: dict[Any, str] = {str: "string", int: "integer", float: "number", bool: "boolean"}


def type_schema(tp: Any, where: str) -> dict[str, Any]:
    """The JSON Schema of a Python type (no rule yet); ``where`` names the field in errors."""
    args = union_args(tp)
    if len(args) > 1:
        present = [a for a in args if a is not type(None)]
        if len(present) != 1 or len(args) != 2:
            raise TypeError(f"{where}: only ``X | None`` unions have a JSON Schema, not {tp!r}")
        schema = type_schema(present[0], where)
        return {**schema, "type": [schema["type"], "null"]}
    if get_origin(tp) is Literal:
        kinds = {_SCALARS.get(type(v)) for v in get_args(tp)}
        if len(kinds) != 1 or None in kinds:
            raise TypeError(f"{where}: a Literal of one JSON type only, not {tp!r}")
        return {"type": kinds.pop()}
    if get_origin(tp) is list:
        return {"type": "array", "items": type_schema(get_args(tp)[0], where + "[]")}
    if tp in _SCALARS:
        return {"type": _SCALARS[tp]}
    raise TypeError(f"{where}: no JSON Schema for the type {tp!r}")


def field_schema(field: Field, where: str) -> dict[str, Any]:
    """The field's type with its rule's keywords (a rule must fit the type it refines)."""
    schema = type_schema(field.type, where)
    types = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
    if field.rule.json_type not in types:
        raise TypeError(f"{where}: its rule {field.rule!r} constrains {field.rule.json_type} "
                        f"values, but the field is {schema['type']}")
    for keyword, value in field.rule.schema().items():
        schema[keyword] = {**schema[keyword], **value} if keyword == "items" else value
    if field.nullable and "enum" in schema:
        schema["enum"] = [*schema["enum"], None]
    return schema


def shape_schema(shape: Shape) -> dict[str, Any]:
    """An object with the shape's fields; those without a default are required."""
    return {
        "title": shape.title,
        "description": shape.description,
        "type": "object",
        "properties": {f.name: field_schema(f, f"{shape.title}.{f.name}") for f in shape.fields},
        "required": [f.name for f in shape.fields if f.required],
    }


def kinds_schema(kinds: Sequence[Shape], discriminator: str | None = None,
                 title: str = "") -> dict[str, Any]:
    """One kind's schema; several kinds (a tagged union on one topic) as ``oneOf``, told apart
    by the ``discriminator`` field each kind fixes to its own value (``anyOf`` without one).
    One kind may default it: the topic's first kind, whose older events do not carry it."""
    schemas = [shape_schema(k) for k in kinds]
    if len(schemas) == 1:
        return schemas[0]
    if discriminator is None:
        return {"title": title, "anyOf": schemas}
    optional = 0
    for kind in kinds:
        field = next((f for f in kind.fields if f.name == discriminator), None)
        if field is None or not isinstance(field.rule, Choice) or len(field.rule.choices) != 1 \
                or not (field.required or field.default == field.rule.choices[0]):
            raise TypeError(f"{kind.title}: the discriminator {discriminator!r} must be a "
                            "Literal of one value, required or defaulting to it")
        optional += not field.required
    if optional > 1:  # an event without it would be of two kinds
        raise TypeError(f"{title}: only one kind may leave {discriminator!r} out (the topic's "
                        "first kind, whose events were written before there were others)")
    return {"title": title, "oneOf": schemas, "discriminator": discriminator}
