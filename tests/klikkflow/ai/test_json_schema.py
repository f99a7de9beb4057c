from typing import Any

import pytest

from klikkflow.ai.json_schema import problems

PERSON = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "minLength": 1, "maxLength": 20},
        "age": {"type": "integer", "minimum": 0, "exclusiveMaximum": 150},
        "email": {"type": ["string", "null"], "pattern": "@"},
        "role": {"enum": ["admin", "member"]},
        "tags": {"type": "array", "items": {"type": "string"}, "maxItems": 2},
        "address": {"$ref": "#/$defs/address"},
    },
    "required": ["name", "age"],
    "additionalProperties": False,
    "$defs": {
        "address": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        }
    },
}


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ({"name": "Ada", "age": 36}, []),
        ({"name": "Ada", "age": 36.0, "email": None, "tags": ["x"]}, []),
        ({"name": "Ada", "age": 36, "address": {"city": "Oslo"}, "role": "admin"}, []),
        ({"age": 36}, ["$.name: is required"]),
        ({"name": "", "age": 36}, ["$.name: must be at least 1 characters"]),
        ({"name": "Ada", "age": "36"}, ["$.age: expected integer, got string"]),
        ({"name": "Ada", "age": True}, ["$.age: expected integer, got boolean"]),
        ({"name": "Ada", "age": 36.5}, ["$.age: expected integer, got number"]),
        ({"name": "Ada", "age": -1}, ["$.age: must be at least 0"]),
        ({"name": "Ada", "age": 150}, ["$.age: must be less than 150"]),
        ({"name": "Ada", "age": 1, "email": "no"}, ["$.email: must match the pattern '@'"]),
        (
            {"name": "Ada", "age": 1, "role": "owner"},
            ["$.role: must be one of ['admin', 'member']"],
        ),
        ({"name": "Ada", "age": 1, "tags": ["a", 2]}, ["$.tags[1]: expected string, got number"]),
        ({"name": "Ada", "age": 1, "tags": ["a", "b", "c"]}, ["$.tags: must have at most 2 items"]),
        ({"name": "Ada", "age": 1, "address": {}}, ["$.address.city: is required"]),
        ({"name": "Ada", "age": 1, "admin": True}, ["$.admin: is not an allowed property"]),
        ([], ["$: expected object, got array"]),
    ],
)
def test_problems_name_the_path_and_the_rule(value: Any, expected: list[str]) -> None:
    assert problems(value, PERSON) == expected


def test_combinators() -> None:
    either = {"anyOf": [{"type": "string"}, {"type": "integer"}]}
    assert problems(3, either) == []
    assert problems(3.5, either) == ["$: matches none of the allowed shapes (anyOf)"]
    exactly_one = {"oneOf": [{"type": "number"}, {"type": "integer"}]}
    assert problems(2.5, exactly_one) == []
    assert problems(2, exactly_one) == [
        "$: must match exactly one allowed shape (oneOf), matches 2"
    ]
    assert problems("x", {"not": {"type": "string"}}) == [
        "$: matches a shape that is not allowed (not)"
    ]
    assert problems({"a": 1}, {"allOf": [{"required": ["a"]}, {"required": ["b"]}]}) == [
        "$.b: is required"
    ]


def test_messages_never_repeat_the_value() -> None:
    secret = "hunter2-secret-value"
    found = problems({"name": secret, "age": secret}, PERSON)
    assert found
    assert not any(secret in p for p in found)


def test_a_ref_outside_the_schema_is_refused() -> None:
    with pytest.raises(ValueError, match="only local"):
        problems(1, {"$ref": "https://example.com/schema.json"})
