"""Checking a JSON value against a JSON Schema: the subset structured LLM output uses.

Supported: ``type`` (one or a list), ``enum``, ``const``, ``properties``, ``required``,
``additionalProperties`` (bool or schema), ``items``, ``minItems``/``maxItems``,
``minLength``/``maxLength``, ``pattern``, ``minimum``/``maximum`` and their exclusive forms,
``anyOf``/``oneOf``/``allOf``/``not`` and local ``$ref`` (``#/$defs/...``). Other keywords,
``format`` among them, are annotations here (as by default in the standard).

No validation library is installed; ``problems`` is the one function to swap for
``jsonschema`` if it becomes a dependency.
"""

from __future__ import annotations

import re
from typing import Any

_TYPES: dict[str, tuple[type, ...]] = {
    "object": (dict,),
    "array": (list,),
    "string": (str,),
    "boolean": (bool,),
    "null": (type(None),),
}


def problems(value: Any, schema: dict[str, Any]) -> list[str]:
    """Every way `value` breaks `schema`, as ``"$.path: what is wrong"``; empty if it fits.
    Messages name paths and rules, never the value itself."""
    found: list[str] = []
    _check(value, schema, schema, "$", found)
    return found


def _check(value: Any, schema: Any, root: dict[str, Any], path: str, found: list[str]) -> None:
    if schema is True or schema == {}:
        return
    if schema is False:
        found.append(f"{path}: no value is allowed here")
        return
    if not isinstance(schema, dict):
        return
    if "$ref" in schema:
        _check(value, _resolve(root, str(schema["$ref"])), root, path, found)
    if "type" in schema and not _is_type(value, schema["type"]):
        found.append(f"{path}: expected {_type_names(schema['type'])}, got {_name_of(value)}")
        return
    if "enum" in schema and value not in schema["enum"]:
        found.append(f"{path}: must be one of {schema['enum']!r}")
    if "const" in schema and value != schema["const"]:
        found.append(f"{path}: must be {schema['const']!r}")
    _combinators(value, schema, root, path, found)
    if isinstance(value, dict):
        _check_object(value, schema, root, path, found)
    elif isinstance(value, list):
        _check_array(value, schema, root, path, found)
    elif isinstance(value, str):
        _check_string(value, schema, path, found)
    elif isinstance(value, int | float) and not isinstance(value, bool):
        _check_number(value, schema, path, found)


def _combinators(
    value: Any, schema: dict[str, Any], root: dict[str, Any], path: str, found: list[str]
) -> None:
    for sub in schema.get("allOf", []):
        _check(value, sub, root, path, found)
    if "anyOf" in schema and not any(_fits(value, s, root) for s in schema["anyOf"]):
        found.append(f"{path}: matches none of the allowed shapes (anyOf)")
    if "oneOf" in schema:
        matching = sum(_fits(value, s, root) for s in schema["oneOf"])
        if matching != 1:
            found.append(
                f"{path}: must match exactly one allowed shape (oneOf), matches {matching}"
            )
    if "not" in schema and _fits(value, schema["not"], root):
        found.append(f"{path}: matches a shape that is not allowed (not)")


def _check_object(
    value: dict[str, Any], schema: dict[str, Any], root: dict[str, Any], path: str, found: list[str]
) -> None:
    properties: dict[str, Any] = schema.get("properties", {})
    for name in schema.get("required", []):
        if name not in value:
            found.append(f"{path}.{name}: is required")
    extra = schema.get("additionalProperties", True)
    for name, item in value.items():
        if name in properties:
            _check(item, properties[name], root, f"{path}.{name}", found)
        elif extra is False:
            found.append(f"{path}.{name}: is not an allowed property")
        else:
            _check(item, extra, root, f"{path}.{name}", found)


def _check_array(
    value: list[Any], schema: dict[str, Any], root: dict[str, Any], path: str, found: list[str]
) -> None:
    if "minItems" in schema and len(value) < schema["minItems"]:
        found.append(f"{path}: must have at least {schema['minItems']} items")
    if "maxItems" in schema and len(value) > schema["maxItems"]:
        found.append(f"{path}: must have at most {schema['maxItems']} items")
    if "items" in schema:
        for index, item in enumerate(value):
            _check(item, schema["items"], root, f"{path}[{index}]", found)


def _check_string(value: str, schema: dict[str, Any], path: str, found: list[str]) -> None:
    if "minLength" in schema and len(value) < schema["minLength"]:
        found.append(f"{path}: must be at least {schema['minLength']} characters")
    if "maxLength" in schema and len(value) > schema["maxLength"]:
        found.append(f"{path}: must be at most {schema['maxLength']} characters")
    if "pattern" in schema and not re.search(schema["pattern"], value):
        found.append(f"{path}: must match the pattern {schema['pattern']!r}")


def _check_number(value: float, schema: dict[str, Any], path: str, found: list[str]) -> None:
    bounds = (
        ("minimum", lambda limit: value >= limit, "at least"),
        ("maximum", lambda limit: value <= limit, "at most"),
        ("exclusiveMinimum", lambda limit: value > limit, "more than"),
        ("exclusiveMaximum", lambda limit: value < limit, "less than"),
    )
    for keyword, holds, words in bounds:
        if keyword in schema and not holds(schema[keyword]):
            found.append(f"{path}: must be {words} {schema[keyword]}")


def _fits(value: Any, schema: Any, root: dict[str, Any]) -> bool:
    found: list[str] = []
    _check(value, schema, root, "$", found)
    return not found


def _resolve(root: dict[str, Any], ref: str) -> Any:
    if not ref.startswith("#"):
        raise ValueError(f"only local $ref is supported, not {ref!r}")
    target: Any = root
    for part in filter(None, ref[1:].split("/")):
        key = part.replace("~1", "/").replace("~0", "~")
        if not isinstance(target, dict) or key not in target:
            raise ValueError(f"$ref {ref!r} points nowhere in the schema")
        target = target[key]
    return target


def _is_type(value: Any, expected: str | list[str]) -> bool:
    names = [expected] if isinstance(expected, str) else list(expected)
    return any(_is_one_type(value, name) for name in names)


def _is_one_type(value: Any, name: str) -> bool:
    if name == "integer":
        return (
            isinstance(value, int)
            and not isinstance(value, bool)
            or (isinstance(value, float) and value.is_integer())
        )
    if name == "number":
        return isinstance(value, int | float) and not isinstance(value, bool)
    return isinstance(value, _TYPES.get(name, ()))


def _type_names(expected: str | list[str]) -> str:
    return expected if isinstance(expected, str) else " or ".join(expected)


def _name_of(value: Any) -> str:
    for name, types in _TYPES.items():
        if isinstance(value, types):
            return name
    return "number"
