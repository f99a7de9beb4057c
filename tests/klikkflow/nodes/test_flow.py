"""If, Switch, Filter, No Op and Stop And Error with n8n's own parameter JSON."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from klikkflow.nodes.base import NodeError
from klikkflow.nodes.flow import Filter, If, NoOp, StopAndError, Switch
from tests.klikkflow.nodes.helpers import items, jsons, paired, run_node

TICKETS = items(
    {"id": 1, "body": {"priority": "high", "subject": "Server down"}, "score": 92},
    {"id": 2, "body": {"priority": "low", "subject": "Typo on pricing page"}, "score": 15},
    {"id": 3, "body": {"priority": "High", "subject": "Refund request"}, "score": "71"},
)


def condition(
    left: Any, operation: str, right: Any = "", kind: str = "string", **extra: Any
) -> dict[str, Any]:
    operator = {"type": kind, "operation": operation, **extra}
    return {"id": f"c-{operation}", "leftValue": left, "rightValue": right, "operator": operator}


def conditions(*entries: dict[str, Any], combinator: str = "and", **options: Any) -> dict[str, Any]:
    return {
        "options": {
            "caseSensitive": True,
            "leftValue": "",
            "typeValidation": "strict",
            "version": 2,
            **options,
        },
        "conditions": list(entries),
        "combinator": combinator,
    }


async def test_if_routes_on_an_expression_with_n8n_2_2_json() -> None:
    params = {
        "conditions": conditions(
            condition("={{ $json.body.priority }}", "equals", "high", name="filter.operator.equals")
        ),
        "options": {},
    }
    out = await run_node(If, params, TICKETS)
    assert [j["id"] for j in jsons(out["true"])] == [1]
    assert [j["id"] for j in jsons(out["false"])] == [2, 3]
    assert paired(out["false"]) == [{"item": 1}, {"item": 2}]


async def test_if_ignore_case_option_overrides_case_sensitive_conditions() -> None:
    params = {
        "conditions": conditions(condition("={{ $json.body.priority }}", "equals", "HIGH")),
        "options": {"ignoreCase": True},
    }
    out = await run_node(If, params, TICKETS)
    assert [j["id"] for j in jsons(out["true"])] == [1, 3]


async def test_if_strict_types_name_the_item_that_does_not_fit() -> None:
    params = {"conditions": conditions(condition("={{ $json.score }}", "gt", 50, kind="number"))}
    with pytest.raises(NodeError) as caught:
        await run_node(If, params, TICKETS)
    assert caught.value.item_index == 2
    assert "Wrong type: '71' is a string but was expecting a number [condition 0, item 2]" in str(
        caught.value
    )


async def test_if_loose_type_validation_converts_numbers_in_text() -> None:
    params = {
        "conditions": conditions(condition("={{ $json.score }}", "gt", 50, kind="number")),
        "looseTypeValidation": True,
        "options": {},
    }
    out = await run_node(If, params, TICKETS, version=2.2)
    assert [j["id"] for j in jsons(out["true"])] == [1, 3]


async def test_loose_conversion_failure_is_a_conversion_error() -> None:
    params = {
        "conditions": conditions(condition("={{ $json.body.subject }}", "gt", 5, kind="number")),
        "options": {"looseTypeValidation": True},
    }
    with pytest.raises(
        NodeError, match="Conversion error: the string 'Server down' can't be converted to a number"
    ):
        await run_node(If, params, TICKETS, version=2)


async def test_or_combinator_and_unary_operations() -> None:
    params = {
        "conditions": conditions(
            condition("={{ $json.assignee }}", "exists", singleValue=True),
            condition("={{ $json.body.subject }}", "regex", "/refund/i"),
            combinator="or",
        )
    }
    data = items(
        {"assignee": "kim", "body": {"subject": "Hello"}},
        {"body": {"subject": "Need a REFUND"}},
        {"body": {"subject": "Other"}},
    )
    out = await run_node(If, params, data)
    assert paired(out["true"]) == [{"item": 0}, {"item": 1}]


@pytest.mark.parametrize(
    ("cond", "expected"),
    [
        (
            condition("={{ $json.tags }}", "contains", "vip", kind="array", rightType="any"),
            [True, False],
        ),
        (
            condition("={{ $json.tags }}", "lengthGte", 2, kind="array", rightType="number"),
            [True, False],
        ),
        (condition("={{ $json.tags }}", "empty", kind="array", singleValue=True), [False, True]),
        (condition("={{ $json.active }}", "true", kind="boolean", singleValue=True), [True, False]),
        (
            condition("={{ $json.meta }}", "notEmpty", kind="object", singleValue=True),
            [True, False],
        ),
        (condition("={{ $json.email }}", "endsWith", "@acme.io"), [True, False]),
        (condition("={{ $json.email }}", "notStartsWith", "ops"), [True, True]),
        (
            condition("={{ $json.seen }}", "after", "2024-01-01T00:00:00Z", kind="dateTime"),
            [True, False],
        ),
    ],
)
async def test_operators_by_type(cond: dict[str, Any], expected: list[bool]) -> None:
    data = items(
        {
            "tags": ["vip", "eu"],
            "active": True,
            "meta": {"a": 1},
            "email": "kim@acme.io",
            "seen": "2024-02-03T10:00:00Z",
        },
        {
            "tags": [],
            "active": False,
            "meta": {},
            "email": "lee@example.com",
            "seen": "2023-12-31T23:59:59Z",
        },
    )
    out = await run_node(If, {"conditions": conditions(cond)}, data)
    assert [p in paired(out["true"]) for p in ({"item": 0}, {"item": 1})] == expected


def test_unknown_operation_is_refused_when_parameters_validate() -> None:
    with pytest.raises(ValidationError, match="unknown number operation 'contains'"):
        If.Params.model_validate(
            {"conditions": conditions(condition(1, "contains", 2, kind="number"))}
        )


def test_unknown_parameter_keys_are_refused() -> None:
    with pytest.raises(ValidationError):
        If.Params.model_validate({"conditions": conditions(), "options": {}, "colour": "red"})


async def test_filter_keeps_matching_items() -> None:
    params = {
        "conditions": conditions(condition("={{ $json.score }}", "gte", 50, kind="number")),
        "looseTypeValidation": True,
        "options": {},
    }
    out = await run_node(Filter, params, TICKETS)
    assert list(out) == ["main"]
    assert paired(out["main"]) == [{"item": 0}, {"item": 2}]


def switch_rule(priority: str, key: str = "") -> dict[str, Any]:
    rule: dict[str, Any] = {
        "conditions": conditions(condition("={{ $json.body.priority }}", "equals", priority))
    }
    if key:
        rule |= {"renameOutput": True, "outputKey": key}
    return rule


async def test_switch_rules_route_to_named_outputs_with_an_extra_fallback() -> None:
    params = {
        "rules": {"values": [switch_rule("high", "Urgent"), switch_rule("low")]},
        "options": {"fallbackOutput": "extra", "renameFallbackOutput": "Other"},
    }
    node = Switch()
    assert node.output_ports(Switch.Params.model_validate(params)) == ("Urgent", "1", "Other")
    out = await run_node(Switch, params, TICKETS, version=3.2)
    assert {port: [j["id"] for j in jsons(found)] for port, found in out.items()} == {
        "Urgent": [1],
        "1": [2],
        "Other": [3],
    }


async def test_switch_sends_to_all_matching_outputs_and_numeric_fallback() -> None:
    params = {
        "rules": {"values": [switch_rule("high"), switch_rule("high"), switch_rule("low")]},
        "options": {"allMatchingOutputs": True, "fallbackOutput": 2},
    }
    out = await run_node(Switch, params, TICKETS)
    assert paired(out["0"]) == [{"item": 0}]
    assert paired(out["1"]) == [{"item": 0}]
    assert paired(out["2"]) == [{"item": 1}, {"item": 2}]


async def test_switch_expression_mode_routes_by_index() -> None:
    params = {"mode": "expression", "numberOutputs": 3, "output": "={{ $json.id - 1 }}"}
    assert Switch().output_ports(Switch.Params.model_validate(params)) == ("0", "1", "2")
    out = await run_node(Switch, params, TICKETS)
    assert [len(out[p]) for p in ("0", "1", "2")] == [1, 1, 1]


async def test_switch_expression_out_of_range_fails_naming_the_item() -> None:
    params = {"mode": "expression", "numberOutputs": 2, "output": "={{ $json.id }}"}
    with pytest.raises(NodeError, match="The output 2 is not allowed") as caught:
        await run_node(Switch, params, TICKETS)
    assert caught.value.item_index == 1


async def test_no_op_passes_items_through() -> None:
    data = [{"json": {"a": 1}, "binary": {"file": {"data": "aGk="}}}]
    out = await run_node(NoOp, {}, data)
    assert out["main"] == [
        {"json": {"a": 1}, "binary": {"file": {"data": "aGk="}}, "pairedItem": {"item": 0}}
    ]


async def test_stop_and_error_raises_the_evaluated_message() -> None:
    params = {"errorMessage": "=Order {{ $json.id }} has no customer"}
    with pytest.raises(NodeError, match="^Order 1 has no customer$"):
        await run_node(StopAndError, params, TICKETS)


async def test_stop_and_error_with_an_error_object() -> None:
    params = {
        "errorType": "errorObject",
        "errorObject": '{"message": "Quota exceeded", "description": "Try again tomorrow"}',
    }
    with pytest.raises(NodeError, match="Quota exceeded") as caught:
        await run_node(StopAndError, params, TICKETS)
    assert caught.value.description == "Try again tomorrow"
