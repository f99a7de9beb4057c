"""n8n's "filter" parameter (If, Switch, Filter): the conditions model and its evaluation.

A condition compares a left and a right value with an operator of one type (string, number,
boolean, dateTime, array, object). Both values are evaluated per item; with strict type
validation a value of the wrong type fails the node naming the item, as in n8n; with loose
validation it is converted the way n8n converts it (`"5"` -> 5, `"true"` -> true).

The JavaScript-flavoured coercions n8n applies (String(x), Number(x), its boolean parsing)
live here too, because Set's field types follow the same rules.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field, model_validator

from klikkflow.nodes.base import Item, NodeError, Parameters

if TYPE_CHECKING:
    from klikkflow.nodes.base import NodeContext

OperatorType = Literal["string", "number", "boolean", "dateTime", "array", "object", "any"]

_PRESENCE = ("exists", "notExists", "empty", "notEmpty")
OPERATIONS: dict[str, frozenset[str]] = {
    "string": frozenset(
        (
            *_PRESENCE,
            *("equals", "notEquals", "contains", "notContains", "startsWith", "notStartsWith"),
            *("endsWith", "notEndsWith", "regex", "notRegex"),
        )
    ),
    "number": frozenset((*_PRESENCE, "equals", "notEquals", "gt", "lt", "gte", "lte")),
    "dateTime": frozenset(
        (*_PRESENCE, "equals", "notEquals", "after", "before", "afterOrEquals", "beforeOrEquals")
    ),
    "boolean": frozenset((*_PRESENCE, "true", "false", "equals", "notEquals")),
    "array": frozenset(
        (
            *_PRESENCE,
            *("contains", "notContains", "lengthEquals", "lengthNotEquals"),
            *("lengthGt", "lengthLt", "lengthGte", "lengthLte"),
        )
    ),
    "object": frozenset(_PRESENCE),
    "any": frozenset(_PRESENCE),
}
# Operations that read no right value (n8n marks them `singleValue`).
UNARY = frozenset((*_PRESENCE, "true", "false"))


class Operator(Parameters):
    type: OperatorType
    operation: str
    # n8n writes these too: a label id, unary marker, and the right value's type.
    name: str | None = None
    single_value: bool | None = Field(None, alias="singleValue")
    right_type: OperatorType | None = Field(None, alias="rightType")

    @model_validator(mode="after")
    def _known_operation(self) -> Operator:
        if self.operation not in OPERATIONS[self.type]:
            known = ", ".join(sorted(OPERATIONS[self.type]))
            raise ValueError(f"unknown {self.type} operation {self.operation!r} (known: {known})")
        return self

    def right_value_type(self) -> str:
        if self.right_type is not None:
            return self.right_type
        if self.type == "array" and self.operation.startswith("length"):
            return "number"
        if self.type == "array":  # contains / notContains compare one element
            return "any"
        return self.type


class Condition(Parameters):
    id: str = ""
    left_value: Any = Field("", alias="leftValue")
    right_value: Any = Field("", alias="rightValue")
    operator: Operator


class ConditionOptions(Parameters):
    case_sensitive: bool = Field(True, alias="caseSensitive")
    left_value: Any = Field("", alias="leftValue")
    type_validation: Literal["strict", "loose"] = Field("strict", alias="typeValidation")
    version: int = Field(1, ge=1)


class Conditions(Parameters):
    """The JSON n8n stores for a `filter` parameter."""

    options: ConditionOptions = Field(default_factory=ConditionOptions)  # type: ignore[arg-type]
    conditions: list[Condition] = Field(default_factory=list)
    combinator: Literal["and", "or"] = "and"


# ---------------------------------------------------------------- JavaScript-style coercion


def js_typeof(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, datetime):
        return "dateTime"
    return "object"


def _number_text(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    if value.is_integer() and abs(value) < 1e21:
        return str(int(value))
    return repr(value)


def to_js_string(value: Any) -> str:
    """String(value) as n8n does it (objects and arrays become JSON)."""
    if isinstance(value, str):
        return value
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return _number_text(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, dict | list):
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=str)
    return str(value)


_JS_NUMBER = re.compile(r"^[+-]?(\d+\.?\d*([eE][+-]?\d+)?|\.\d+([eE][+-]?\d+)?)$")


def parse_number(value: Any) -> int | float | None:
    """Number(value), or None where JavaScript gives NaN."""
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return None if math.isnan(value) else value
    if isinstance(value, str):
        text = value.strip()
        if text == "":
            return 0
        if _JS_NUMBER.match(text):
            number = float(text)
            return int(number) if number.is_integer() and abs(number) < 2**53 else number
        if re.fullmatch(r"0[xX][0-9a-fA-F]+", text):
            return int(text, 16)
        if text in ("Infinity", "+Infinity", "-Infinity"):
            return float(text.replace("Infinity", "inf"))
        return None
    if isinstance(value, list) and len(value) <= 1:
        return 0 if not value else parse_number(to_js_string(value[0]))
    return None


def parse_boolean(value: Any) -> bool | None:
    """n8n's tryToParseBoolean: booleans, "true"/"false", and 0/1 (as numbers or text)."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        lowered = value.strip().lower()
        if lowered in ("true", "false"):
            return lowered == "true"
        if lowered == "":
            return None
    number = parse_number(value) if isinstance(value, str | int | float) else None
    if number == 0:
        return False
    if number == 1:
        return True
    return None


def js_truthy(value: Any) -> bool:
    if isinstance(value, float) and math.isnan(value):
        return False
    if isinstance(value, dict | list):
        return True  # every object is truthy in JavaScript
    return bool(value)


def parse_json_text(text: str) -> Any:
    """JSON, or the JavaScript-object-ish text n8n also accepts (single quotes, bare keys,
    trailing commas). Raises ValueError when neither parses."""
    try:
        return json.loads(text)
    except ValueError:
        pass
    repaired = text.replace("'", '"')
    repaired = re.sub(r"([{,]\s*)([A-Za-z_$][\w$]*)\s*:", r'\1"\2":', repaired)
    repaired = re.sub(r",\s*([\]}])", r"\1", repaired).rstrip().rstrip(",")
    return json.loads(repaired)


def parse_collection(value: Any, kind: type) -> Any:
    """A list (kind=list) or dict (kind=dict), parsing JSON text; None when it is not one."""
    if isinstance(value, kind):
        return value
    if isinstance(value, str):
        try:
            parsed = parse_json_text(value)
        except ValueError:
            return None
        return parsed if isinstance(parsed, kind) else None
    return None


# ---------------------------------------------------------------- value parsing per type


def _parse(value: Any, kind: str, strict: bool, version: int, zone: str) -> tuple[bool, Any]:
    """(valid, converted) for one side of a condition, following n8n's filter rules."""
    if kind == "any" or value is None:
        return True, value
    if kind == "string":
        if strict and not isinstance(value, str):
            return False, None
        return True, to_js_string(value)
    if kind == "number":
        if strict and (isinstance(value, bool) or not isinstance(value, int | float)):
            return False, None
        number = parse_number(value)
        return (number is not None), number
    if kind == "boolean":
        if strict:
            return isinstance(value, bool), value
        parsed = parse_boolean(value) if version >= 2 else None
        return True, (parsed if parsed is not None else js_truthy(value))
    if kind == "dateTime":
        from klikkflow.nodes.transform import parse_datetime  # the Date & Time topic owns it

        parsed_dt = parse_datetime(value, zone)
        return (parsed_dt is not None), parsed_dt
    if kind == "array":
        if strict and not isinstance(value, list):
            return False, None
        parsed_list = parse_collection(value, list)
        return (parsed_list is not None), parsed_list
    if kind == "object":
        if strict and not isinstance(value, dict):
            return False, None
        parsed_dict = parse_collection(value, dict)
        return (parsed_dict is not None), parsed_dict
    return True, value


def _article(noun: str) -> str:
    return f"{'an' if noun[:1] in 'aeiou' else 'a'} {noun}"


def _type_error(kind: str, value: Any, strict: bool, position: str, where: str) -> tuple[str, str]:
    shown = f"'{to_js_string(value)}'"
    from_type = js_typeof(value).lower()
    if strict:
        message = f"Wrong type: {shown} is {_article(from_type)} but was expecting {_article(kind)}"
        hint = (
            f"Try either enabling 'Convert types where required' or converting the {position} "
            f"field to {_article(kind)}."
        )
    else:
        message = (
            f"Conversion error: the {from_type} {shown} can't be converted to {_article(kind)}"
        )
        hint = "Try changing the type of the comparison."
    return f"{message} {where}", hint


# ---------------------------------------------------------------- operators


def _regex(pattern: str, ignore_case: bool) -> re.Pattern[str]:
    flags = 0
    literal = re.fullmatch(r"/(.*)/([gimsuyd]*)", pattern or "", flags=re.DOTALL)
    if literal:
        pattern, letters = literal.group(1), literal.group(2)
        flags |= re.IGNORECASE if "i" in letters else 0
        flags |= re.MULTILINE if "m" in letters else 0
        flags |= re.DOTALL if "s" in letters else 0
    if ignore_case:
        flags |= re.IGNORECASE
    return re.compile(re.sub(r"\(\?<([A-Za-z_]\w*)>", r"(?P<\1>", pattern or ""), flags)


def _js_equal(left: Any, right: Any) -> bool:
    if isinstance(left, bool) != isinstance(right, bool):
        return False  # True == 1 in Python, never in JavaScript
    return bool(left == right)


def _ordered(left: Any, right: Any, compare: Callable[[Any, Any], bool]) -> bool:
    if left is None or right is None:
        return False
    return compare(left, right)


_NUMBER_COMPARE: dict[str, Callable[[Any, Any], bool]] = {
    "gt": lambda a, b: a > b,
    "lt": lambda a, b: a < b,
    "gte": lambda a, b: a >= b,
    "lte": lambda a, b: a <= b,
    "after": lambda a, b: a > b,
    "before": lambda a, b: a < b,
    "afterOrEquals": lambda a, b: a >= b,
    "beforeOrEquals": lambda a, b: a <= b,
}


def _string_op(operation: str, left: Any, right: Any, ignore_case: bool) -> bool:
    is_regex = operation in ("regex", "notRegex")
    left_text = "" if left is None else left
    right_text = "" if right is None else right
    if ignore_case and not is_regex:
        left_text, right_text = left_text.lower(), right_text.lower()
    match operation:
        case "empty":
            return len(left_text) == 0
        case "notEmpty":
            return len(left_text) != 0
        case "equals":
            return bool(left_text == right_text)
        case "notEquals":
            return bool(left_text != right_text)
        case "contains":
            return right_text in left_text
        case "notContains":
            return right_text not in left_text
        case "startsWith":
            return bool(left_text.startswith(right_text))
        case "notStartsWith":
            return not left_text.startswith(right_text)
        case "endsWith":
            return bool(left_text.endswith(right_text))
        case "notEndsWith":
            return not left_text.endswith(right_text)
        case "regex":
            return _regex(right_text, ignore_case).search(left_text) is not None
        case "notRegex":
            return _regex(right_text, ignore_case).search(left_text) is None
    return False


def _array_contains(array: list[Any], value: Any, ignore_case: bool) -> bool:
    if ignore_case and isinstance(value, str):
        lowered = value.lower()
        return any(isinstance(entry, str) and entry.lower() == lowered for entry in array)
    return any(_js_equal(entry, value) for entry in array)


def _array_op(operation: str, left: Any, right: Any, ignore_case: bool) -> bool:
    array = left if isinstance(left, list) else []
    length = len(array)
    match operation:
        case "contains":
            return _array_contains(array, right, ignore_case)
        case "notContains":
            return not _array_contains(array, right, ignore_case)
        case "empty":
            return length == 0
        case "notEmpty":
            return length != 0
    if right is None:
        return False
    return {
        "lengthEquals": length == right,
        "lengthNotEquals": length != right,
        "lengthGt": length > right,
        "lengthLt": length < right,
        "lengthGte": length >= right,
        "lengthLte": length <= right,
    }.get(operation, False)


def _compare(operator: Operator, left: Any, right: Any, ignore_case: bool) -> bool:
    operation = operator.operation
    exists = left is not None and not (isinstance(left, float) and math.isnan(left))
    if operation == "exists":
        return exists
    if operation == "notExists":
        return not exists
    kind = operator.type
    if kind == "string":
        return _string_op(operation, left, right, ignore_case)
    if kind == "array":
        return _array_op(operation, left, right, ignore_case)
    if kind == "object":
        empty = not left or (isinstance(left, dict) and len(left) == 0)
        return empty if operation == "empty" else not empty
    if operation == "empty":
        return not exists
    if operation == "notEmpty":
        return exists
    if operation == "true":
        return left is True
    if operation == "false":
        return left is not True
    if kind == "dateTime" and (left is None or right is None):
        return False
    if operation == "equals":
        return _js_equal(left, right)
    if operation == "notEquals":
        return not _js_equal(left, right)
    return _ordered(left, right, _NUMBER_COMPARE[operation])


# ---------------------------------------------------------------- evaluation


class FilterSettings:
    """The effective case and type rules: node options (ignoreCase, looseTypeValidation)
    win over what the conditions JSON carries, as n8n derives the latter from the former."""

    __slots__ = ("case_sensitive", "strict", "version")

    def __init__(
        self,
        conditions: Conditions,
        *,
        ignore_case: bool | None = None,
        loose_type_validation: bool | None = None,
    ) -> None:
        options = conditions.options
        self.case_sensitive = options.case_sensitive if ignore_case is None else not ignore_case
        self.strict = (
            options.type_validation == "strict"
            if loose_type_validation is None
            else not loose_type_validation
        )
        self.version = options.version


def evaluate_conditions(
    ctx: NodeContext,
    conditions: Conditions,
    items: Sequence[Item],
    *,
    path: str,
    settings: FilterSettings,
) -> list[bool]:
    """Whether each item passes: one ctx.evaluate per condition side, then plain loops."""
    items = list(items)
    sides: list[tuple[Condition, list[Any], list[Any] | None]] = []
    for index, condition in enumerate(conditions.conditions):
        base = f"{path}.conditions[{index}]"
        left = ctx.evaluate(condition.left_value, items, path=f"{base}.leftValue")
        right = None
        if condition.operator.operation not in UNARY:
            right = ctx.evaluate(condition.right_value, items, path=f"{base}.rightValue")
        sides.append((condition, left, right))
    want_all = conditions.combinator == "and"
    fast = [_fast_compare(condition, settings) for condition, _, _ in sides]
    results = []
    for item_index in range(len(items)):
        passed = want_all
        for index, (condition, left, right) in enumerate(sides):
            right_value = right[item_index] if right is not None else None
            left_value = left[item_index]
            compare = fast[index]
            if (
                compare is not None
                and type(left_value) in _NUMBERS
                and type(right_value) in _NUMBERS
            ):
                outcome = compare(left_value, right_value)
            else:
                outcome = _check(
                    condition, left_value, right_value, index, item_index, ctx, settings
                )
            if outcome != want_all:
                passed = outcome
                break
        results.append(passed)
    return results


_NUMBERS = (int, float)  # exact types: bool, a subclass of int, takes the careful path
_FAST_NUMBER_OPS: dict[str, Callable[[Any, Any], bool]] = {
    "gt": lambda a, b: a > b,
    "lt": lambda a, b: a < b,
    "gte": lambda a, b: a >= b,
    "lte": lambda a, b: a <= b,
    "equals": lambda a, b: a == b,
    "notEquals": lambda a, b: a != b,
}


def _fast_compare(
    condition: Condition, settings: FilterSettings
) -> Callable[[Any, Any], bool] | None:
    """For number comparisons whose two sides are already plain numbers (the common case)
    the careful path's parsing and type checks change nothing: compare directly. NaN
    keeps the careful path (its rules differ)."""
    operator = condition.operator
    if operator.type != "number" or operator.right_value_type() != "number":
        return None
    compare = _FAST_NUMBER_OPS.get(operator.operation)
    if compare is None:
        return None
    return lambda a, b: (
        compare(a, b) if a == a and b == b else _compare(operator, a, b, False)  # noqa: PLR0124
    )


def _check(
    condition: Condition,
    left: Any,
    right: Any,
    index: int,
    item_index: int,
    ctx: NodeContext,
    settings: FilterSettings,
) -> bool:
    operator = condition.operator
    where = f"[condition {index}, item {item_index}]"
    ok_left, parsed_left = _parse(
        left, operator.type, settings.strict, settings.version, ctx.timezone
    )
    ok_right, parsed_right = True, None
    if operator.operation not in UNARY:
        ok_right, parsed_right = _parse(
            right, operator.right_value_type(), settings.strict, settings.version, ctx.timezone
        )
    if not ok_left:
        message, hint = _type_error(operator.type, left, settings.strict, "first", where)
        raise NodeError(message, item_index=item_index, description=hint)
    if not ok_right:
        kind = operator.right_value_type()
        message, hint = _type_error(kind, right, settings.strict, "second", where)
        raise NodeError(message, item_index=item_index, description=hint)
    try:
        return _compare(operator, parsed_left, parsed_right, not settings.case_sensitive)
    except re.error as exc:
        raise NodeError(
            f"Invalid regular expression {right!r}: {exc} {where}", item_index=item_index
        ) from exc
    except TypeError as exc:  # e.g. an aware and a naive date, or mixed loose values
        raise NodeError(
            f"Cannot compare {left!r} with {right!r} {where}", item_index=item_index
        ) from exc
