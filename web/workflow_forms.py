"""Forms for a node's parameters, generated from its type's JSON Schema.

Each property becomes one input: a select for an enum, a checkbox for a boolean, a number
or text input, and a JSON textarea for objects, arrays and values of several types. The
kind chosen is sent back with the form (``kind.<name>``), so reading it back needs no
schema: strings stay strings, numbers are parsed (an ``={{ ... }}`` expression stays
text), JSON is parsed, an unchecked box is ``false``.

A property the node did not set stays unset unless the form gives it a value other than
its default, so saving an untouched form changes nothing.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

KIND_PREFIX = "kind."
PARAM_PREFIX = "p."

# Error paths from the engine (`definition.nodes['Name'].parameters.url`) and from the
# document schema (`definition.nodes[2].parameters`).
_NODE_PATH = re.compile(
    r"^definition\.nodes\[(?:'(?P<sq>(?:[^'\\]|\\.)*)'|\"(?P<dq>(?:[^\"\\]|\\.)*)\"|(?P<index>\d+))\]"
    r"(?:\.parameters(?:\.(?P<param>[^.\[]+))?)?"
)


@dataclass
class ParamField:
    """One input of a node's form."""

    name: str
    label: str
    kind: str  # enum, boolean, integer, number, string, text, json
    value: Any  # what the input shows
    required: bool = False
    options: tuple[str, ...] = ()
    hint: str = ""
    error: str | None = None

    @property
    def rows(self) -> int:
        """A textarea's height: its text's lines, within reason."""
        return min(max(str(self.value).count("\n") + 1, 2), 14)


def _resolve(schema: Mapping[str, Any], root: Mapping[str, Any]) -> Mapping[str, Any]:
    ref = schema.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/$defs/"):
        target = (root.get("$defs") or {}).get(ref.removeprefix("#/$defs/"))
        if isinstance(target, Mapping):
            return {**target, **{k: v for k, v in schema.items() if k != "$ref"}}
    return schema


def _types(schema: Mapping[str, Any], root: Mapping[str, Any]) -> tuple[set[str], list[Any]]:
    """The JSON types a property allows (null dropped) and its enum values, if any."""
    schema = _resolve(schema, root)
    if "anyOf" in schema:
        types: set[str] = set()
        values: list[Any] = []
        for option in schema["anyOf"]:
            sub_types, sub_values = _types(option, root)
            types |= sub_types
            values += sub_values
        types.discard("null")
        return types, values
    if "const" in schema:
        return {"string"}, [schema["const"]]
    kind = schema.get("type")
    if kind is None:
        return set(), []
    types = set(kind) if isinstance(kind, list) else {str(kind)}
    if "$defs" in schema or "properties" in schema:
        types.add("object")
    return types, list(schema.get("enum") or [])


def _label(name: str, schema: Mapping[str, Any]) -> str:
    title = str(schema.get("title") or "")
    if title and title.replace(" ", "").lower() != name.lower():
        return title
    words = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", " ", name).split()
    return " ".join([words[0].capitalize(), *(w.lower() for w in words[1:])]) if words else name


def _kind(types: set[str], values: list[Any], current: Any) -> str:
    if values and all(isinstance(v, str) for v in values) and types <= {"string"}:
        return "enum" if not isinstance(current, str) or current in values else "string"
    if types == {"boolean"}:
        return "boolean" if current is None or isinstance(current, bool) else "json"
    if types in ({"integer"}, {"number"}, {"integer", "number"}):
        if current is None or isinstance(current, int | float):
            return "integer" if types == {"integer"} else "number"
        return "string"  # an expression in place of a number
    if types == {"string"}:
        return "text" if isinstance(current, str) and "\n" in current else "string"
    if not types and (current is None or isinstance(current, str)):
        return "string"  # untyped: usually text or an expression
    return "json"


def _shown(kind: str, value: Any) -> Any:
    if kind == "json":
        return "" if value is None else json.dumps(value, indent=2, ensure_ascii=False)
    if kind == "boolean":
        return bool(value)
    return "" if value is None else value


def param_fields(
    schema: Mapping[str, Any], parameters: Mapping[str, Any], errors: Mapping[str, str]
) -> list[ParamField]:
    """The inputs of a node's form: each schema property, then any other parameter."""
    properties = schema.get("properties") or {}
    required = set(schema.get("required") or [])
    fields: list[ParamField] = []
    for name, raw in properties.items():
        prop = _resolve(raw, schema)
        types, values = _types(raw, schema)
        current = parameters.get(name, prop.get("default"))
        kind = _kind(types, values, current)
        fields.append(
            ParamField(
                name=name,
                label=_label(name, raw),  # a $ref's title names its model, not the field
                kind=kind,
                value=_shown(kind, current),
                required=name in required,
                options=tuple(str(v) for v in values) if kind == "enum" else (),
                hint=str(prop.get("description") or ""),
                error=errors.get(name),
            )
        )
    for name, value in parameters.items():  # not in the schema: the engine will say why
        if name not in properties:
            kind = "string" if isinstance(value, str) else "json"
            fields.append(ParamField(name, name, kind, _shown(kind, value), error=errors.get(name)))
    return fields


class FormProblem(Exception):
    """Inputs that could not be read, by parameter name."""

    def __init__(self, problems: dict[str, str]) -> None:
        super().__init__(", ".join(f"{k}: {v}" for k, v in problems.items()))
        self.problems = problems


def _number(text: str, kind: str) -> int | float | str:
    try:
        return int(text) if kind == "integer" else _float_or_int(float(text))
    except ValueError:
        if text.startswith("="):
            return text  # an expression, evaluated when the node runs
        raise


def _float_or_int(value: float) -> int | float:
    return int(value) if value.is_integer() and abs(value) < 2**53 else value


def _read(kind: str, text: str | None) -> tuple[bool, Any]:
    """(whether the input has a value, the value) for one submitted input."""
    if kind == "boolean":
        return True, text is not None
    text = text or ""
    if kind in ("string", "text", "enum"):
        return True, text
    if not text.strip():
        return False, None
    if kind in ("integer", "number"):
        try:
            return True, _number(text.strip(), kind)
        except ValueError:
            raise ValueError("is not a number") from None
    try:
        return True, json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"is not valid JSON ({exc.msg}, line {exc.lineno})") from None


def read_parameters(
    form: Mapping[str, str], original: Mapping[str, Any], schema: Mapping[str, Any]
) -> dict[str, Any]:
    """The node's parameters after the form: ``original`` with the inputs applied.

    Raises FormProblem naming each input that could not be read."""
    properties = schema.get("properties") or {}
    parameters = dict(original)
    problems: dict[str, str] = {}
    for key, kind in form.items():
        if not key.startswith(KIND_PREFIX):
            continue
        name = key.removeprefix(KIND_PREFIX)
        try:
            present, value = _read(kind, form.get(PARAM_PREFIX + name))
        except ValueError as exc:
            problems[name] = str(exc)
            continue
        default = (properties.get(name) or {}).get("default")
        if name not in original and (not present or value == default or value == ""):
            continue  # never set and still not: keep the definition as it was
        if value == "" and name in original and original[name] is None:
            continue  # an empty input for a value left unset (null) keeps it so
        if present:
            parameters[name] = value
        else:
            parameters.pop(name, None)
    if problems:
        raise FormProblem(problems)
    return parameters


def node_of_path(path: str, nodes: list[Mapping[str, Any]]) -> tuple[str | None, str | None]:
    """(node name, parameter) a validation error's path points at, as far as it does."""
    found = _NODE_PATH.match(path)
    if not found:
        return None, None
    if found.group("index") is not None:
        index = int(found.group("index"))
        name = str(nodes[index].get("name")) if index < len(nodes) else None
    else:
        quoted = found.group("sq") if found.group("sq") is not None else found.group("dq")
        name = re.sub(r"\\(.)", r"\1", quoted or "")
    return name, found.group("param")
