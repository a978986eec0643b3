"""A small JSON Schema checker for the admin API (layer 6, pure).

The same schema dicts are put in the OpenAPI document and used to check
request bodies, so what the document promises is what the server enforces.
Only the subset the API uses is understood: ``type`` (a name or a list of
names), ``enum``, ``minimum``/``maximum``, ``minLength``/``maxLength``,
``pattern``, ``properties``/``required``/``additionalProperties``, ``items``
and ``$ref`` into ``#/components/schemas``. The tests use it to check the
responses against the document too.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

__all__ = ["SchemaError", "check", "ERROR_SCHEMA"]

#: The body of every error response.
ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["code", "message"],
            "properties": {
                "code": {"type": "string", "description": "machine-readable, e.g. invalid_field"},
                "message": {"type": "string", "description": "human-readable explanation"},
                "field": {"type": "string", "description": "the offending field, when one is"},
            },
        }
    },
}


class SchemaError(ValueError):
    """``value`` does not match: ``field`` is the dotted path of the offending part."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}" if field else message)
        self.field = field
        self.message = message


_TYPES: dict[str, Any] = {
    "object": lambda v: isinstance(v, Mapping),
    "array": lambda v: isinstance(v, list | tuple),
    "string": lambda v: isinstance(v, str),
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "number": lambda v: isinstance(v, int | float) and not isinstance(v, bool),
    "boolean": lambda v: isinstance(v, bool),
    "null": lambda v: v is None,
}


def _join(path: str, name: str | int) -> str:
    if isinstance(name, int):
        return f"{path}[{name}]"
    return f"{path}.{name}" if path else name


def check(
    value: Any,
    schema: Mapping[str, Any],
    path: str = "",
    components: Mapping[str, Any] | None = None,
) -> None:
    """Raise :class:`SchemaError` naming the field if ``value`` does not match ``schema``."""
    ref = schema.get("$ref")
    if ref is not None:
        name = ref.rsplit("/", 1)[-1]
        if components is None or name not in components:
            raise KeyError(f"unresolved $ref {ref}")
        check(value, components[name], path, components)
        return
    types = schema.get("type")
    if types is not None:
        names = [types] if isinstance(types, str) else list(types)
        if not any(_TYPES[name](value) for name in names):
            raise SchemaError(path, f"must be {' or '.join(names)}")
    if "enum" in schema and value not in schema["enum"]:
        choices = ", ".join(repr(c) for c in schema["enum"])
        raise SchemaError(path, f"must be one of {choices}")
    if _TYPES["number"](value):
        if "minimum" in schema and value < schema["minimum"]:
            raise SchemaError(path, f"must be at least {schema['minimum']}")
        if "maximum" in schema and value > schema["maximum"]:
            raise SchemaError(path, f"must be at most {schema['maximum']}")
        if "exclusiveMinimum" in schema and value <= schema["exclusiveMinimum"]:
            raise SchemaError(path, f"must be more than {schema['exclusiveMinimum']}")
    if isinstance(value, str):
        if "minLength" in schema and len(value) < schema["minLength"]:
            raise SchemaError(path, f"must be at least {schema['minLength']} characters")
        if "maxLength" in schema and len(value) > schema["maxLength"]:
            raise SchemaError(path, f"must be at most {schema['maxLength']} characters")
        if "pattern" in schema and not re.search(schema["pattern"], value):
            raise SchemaError(path, f"must match {schema['pattern']}")
    if isinstance(value, Mapping):
        properties = schema.get("properties", {})
        for name in schema.get("required", ()):
            if name not in value:
                raise SchemaError(_join(path, name), "is required")
        for name, item in value.items():
            if name in properties:
                check(item, properties[name], _join(path, name), components)
            elif schema.get("additionalProperties") is False:
                raise SchemaError(_join(path, name), "is not a known field")
    if isinstance(value, list | tuple) and "items" in schema:
        for index, item in enumerate(value):
            check(item, schema["items"], _join(path, index), components)
