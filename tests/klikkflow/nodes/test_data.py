"""Edit Fields (Set), Sort, Limit, Remove Duplicates, Aggregate, Summarize and Split Out."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from klikkflow.engine.expressions import ExpressionError
from klikkflow.nodes.base import NodeError
from klikkflow.nodes.data import (
    Aggregate,
    EditFields,
    Limit,
    RemoveDuplicates,
    Sort,
    SplitOut,
    Summarize,
)
from tests.klikkflow.nodes.helpers import items, jsons, paired, run_node

ORDERS = items(
    {"id": 1, "customer": {"name": "Ada", "country": "NO"}, "total": 120.5, "status": "paid"},
    {"id": 2, "customer": {"name": "Bo", "country": "SE"}, "total": 80, "status": "open"},
    {"id": 3, "customer": {"name": "Cy", "country": "NO"}, "total": 42, "status": "paid"},
)


def assignment(name: str, value: Any, kind: str = "string") -> dict[str, Any]:
    return {"id": f"a-{name}", "name": name, "value": value, "type": kind}


def set_params(*assignments: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"assignments": {"assignments": list(assignments)}, "options": {}, **extra}


# ---------------------------------------------------------------- Set


async def test_set_writes_typed_fields_and_nested_paths() -> None:
    params = set_params(
        assignment("orderId", "={{ $json.id }}", "number"),
        assignment("shipping.country", "={{ $json.customer.country }}"),
        assignment("flags.vip", "true", "boolean"),
        assignment("lines", '[{"sku": "A1"}]', "array"),
    )
    out = await run_node(EditFields, params, ORDERS[:1], version=3.4)
    assert out["main"] == [
        {
            "json": {
                "orderId": 1,
                "shipping": {"country": "NO"},
                "flags": {"vip": True},
                "lines": [{"sku": "A1"}],
            },
            "pairedItem": {"item": 0},
        }
    ]


async def test_set_include_other_fields_never_mutates_the_input() -> None:
    source = items({"id": 7, "customer": {"name": "Ada", "tier": "gold"}})
    params = set_params(assignment("customer.tier", "platinum"), includeOtherFields=True)
    out = await run_node(EditFields, params, source)
    assert jsons(out["main"]) == [{"id": 7, "customer": {"name": "Ada", "tier": "platinum"}}]
    assert source[0]["json"] == {"id": 7, "customer": {"name": "Ada", "tier": "gold"}}


async def test_set_dot_notation_off_keeps_dotted_names() -> None:
    params = set_params(assignment("a.b", "x"))
    params["options"] = {"dotNotation": False}
    out = await run_node(EditFields, params, ORDERS[:1])
    assert jsons(out["main"]) == [{"a.b": "x"}]


@pytest.mark.parametrize(
    ("include", "fields", "expected"),
    [
        ("selected", {"includeFields": "id, customer.name"}, {"id": 1, "name": "Ada", "note": "n"}),
        ("except", {"excludeFields": "customer, total"}, {"id": 1, "status": "paid", "note": "n"}),
    ],
)
async def test_set_include_selected_and_except(
    include: str, fields: dict[str, str], expected: dict[str, Any]
) -> None:
    params = set_params(assignment("note", "n"), includeOtherFields=True, include=include, **fields)
    out = await run_node(EditFields, params, ORDERS[:1])
    assert jsons(out["main"]) == [expected]


async def test_set_conversion_error_names_the_item_unless_ignored() -> None:
    params = set_params(assignment("amount", "={{ $json.status }}", "number"))
    with pytest.raises(NodeError, match=r"'amount' expects a number but we got 'paid' \[item 0\]"):
        await run_node(EditFields, params, ORDERS)
    params["options"] = {"ignoreConversionErrors": True}
    out = await run_node(EditFields, params, ORDERS[:1])
    assert jsons(out["main"]) == [{"amount": "paid"}]


async def test_set_evaluates_its_expressions_together_yet_reports_each_by_its_path() -> None:
    """The values with expressions go to the engine in one evaluation; a literal between
    them (n8n's "=" marker too) stays literal, and a failing one names its own path."""
    params = set_params(
        assignment("id", "={{ $json.id }}", "number"),
        assignment("kind", "=order"),
        assignment("who", "={{ $json.customer.name.toUpperCase() }}"),
        assignment("label", "={{ $json.id }}-{{ $json.status }}"),
    )
    out = await run_node(EditFields, params, ORDERS[:2])
    assert jsons(out["main"]) == [
        {"id": 1, "kind": "order", "who": "ADA", "label": "1-paid"},
        {"id": 2, "kind": "order", "who": "BO", "label": "2-open"},
    ]
    params = set_params(
        assignment("id", "={{ $json.id }}", "number"),
        assignment("bad", "={{ $json.nothing.deeper }}"),
    )
    failing = r'parameter "assignments\.assignments\[1\]\.value", item 0'
    with pytest.raises(ExpressionError, match=failing):
        await run_node(EditFields, params, ORDERS[:1])


async def test_set_static_values_repeat_without_sharing_containers() -> None:
    params = set_params(assignment("count", "3", "number"), assignment("tags", "[]", "array"))
    out = await run_node(EditFields, params, ORDERS)
    assert jsons(out["main"]) == [{"count": 3, "tags": []}] * 3
    assert out["main"][0]["json"]["tags"] is not out["main"][1]["json"]["tags"]


async def test_set_raw_mode_builds_items_from_json_output() -> None:
    params = {
        "mode": "raw",
        "jsonOutput": '={\n  "ref": "ORD-{{ $json.id }}",\n  "amount": {{ $json.total }}\n}',
        "includeOtherFields": True,
        "include": "selected",
        "includeFields": "status",
        "options": {},
    }
    out = await run_node(EditFields, params, ORDERS[:2])
    assert jsons(out["main"]) == [
        {"status": "paid", "ref": "ORD-1", "amount": 120.5},
        {"status": "open", "ref": "ORD-2", "amount": 80},
    ]


async def test_set_raw_mode_rejects_text_that_is_not_an_object() -> None:
    params = {"mode": "raw", "jsonOutput": "[1, 2]", "options": {}}
    with pytest.raises(NodeError, match="does not contain a valid JSON object"):
        await run_node(EditFields, params, ORDERS[:1])


async def test_set_binary_follows_version_rules() -> None:
    source = [{"json": {"a": 1}, "binary": {"file": {"data": "aGk=", "mimeType": "text/plain"}}}]
    params = set_params(assignment("b", "2"), includeOtherFields=True)
    kept = await run_node(EditFields, params, source, version=3.4)
    assert kept["main"][0]["binary"] == source[0]["binary"]
    params["options"] = {"stripBinary": True}
    stripped = await run_node(EditFields, params, source, version=3.4)
    assert "binary" not in stripped["main"][0]
    params["options"] = {}
    old = await run_node(EditFields, params, source, version=3.3)
    assert "binary" not in old["main"][0]


def test_set_refuses_unknown_keys_but_accepts_n8n_defaults() -> None:
    EditFields.Params.model_validate(
        {
            "mode": "manual",
            "duplicateItem": False,
            "assignments": {"assignments": []},
            "includeOtherFields": False,
            "include": "all",
            "options": {"dotNotation": True, "ignoreConversionErrors": False, "stripBinary": True},
        }
    )
    with pytest.raises(ValidationError):
        EditFields.Params.model_validate({"fields": {"values": []}})


# ---------------------------------------------------------------- Sort, Limit


async def test_sort_by_several_fields_with_missing_values_last() -> None:
    data = items(
        {"name": "b", "rank": 2},
        {"name": "a"},
        {"name": "c", "rank": 1},
        {"name": "d", "rank": 2},
    )
    params = {
        "sortFieldsUi": {
            "sortField": [
                {"fieldName": "rank", "order": "descending"},
                {"fieldName": "name"},
            ]
        },
        "options": {},
    }
    out = await run_node(Sort, params, data)
    assert [j["name"] for j in jsons(out["main"])] == ["b", "d", "c", "a"]
    assert paired(out["main"]) == [{"item": 0}, {"item": 3}, {"item": 2}, {"item": 1}]


async def test_sort_random_keeps_every_item() -> None:
    out = await run_node(Sort, {"type": "random"}, ORDERS)
    assert sorted(j["id"] for j in jsons(out["main"])) == [1, 2, 3]


def test_sort_code_type_is_refused() -> None:
    with pytest.raises(ValidationError):
        Sort.Params.model_validate({"type": "code", "code": "return a.json.x - b.json.x"})


@pytest.mark.parametrize(
    ("keep", "ids", "pairs"), [("firstItems", [1, 2], [0, 1]), ("lastItems", [2, 3], [1, 2])]
)
async def test_limit(keep: str, ids: list[int], pairs: list[int]) -> None:
    out = await run_node(Limit, {"maxItems": 2, "keep": keep}, ORDERS)
    assert [j["id"] for j in jsons(out["main"])] == ids
    assert paired(out["main"]) == [{"item": i} for i in pairs]


# ---------------------------------------------------------------- Remove Duplicates

LEADS = items(
    {"email": "ada@x.io", "source": "web", "meta": {"a": 1, "b": 2}},
    {"email": "ada@x.io", "source": "ads", "meta": {"b": 2, "a": 1}},
    {"email": "bo@x.io", "source": "web", "meta": {"a": 1, "b": 2}},
    {"email": "ada@x.io", "source": "web", "meta": {"a": 1, "b": 2}},
)


@pytest.mark.parametrize(
    ("params", "kept"),
    [
        ({"compare": "allFields"}, [0, 1, 2]),
        ({"compare": "allFieldsExcept", "fieldsToExclude": "source"}, [0, 2]),
        ({"compare": "selectedFields", "fieldsToCompare": "source, meta.a"}, [0, 1]),
    ],
)
async def test_remove_duplicates(params: dict[str, Any], kept: list[int]) -> None:
    out = await run_node(RemoveDuplicates, {**params, "options": {}}, LEADS, version=2)
    assert paired(out["main"]) == [{"item": i} for i in kept]


async def test_remove_duplicates_can_drop_other_fields() -> None:
    params = {
        "compare": "selectedFields",
        "fieldsToCompare": "email",
        "options": {"removeOtherFields": True},
    }
    out = await run_node(RemoveDuplicates, params, LEADS, version=1.1)
    assert jsons(out["main"]) == [{"email": "ada@x.io"}, {"email": "bo@x.io"}]


# ---------------------------------------------------------------- Aggregate


async def test_aggregate_individual_fields_with_rename_and_merge() -> None:
    data = items({"sku": "A", "tags": ["x", None]}, {"sku": None, "tags": ["y"]}, {"sku": "C"})
    params = {
        "fieldsToAggregate": {
            "fieldToAggregate": [
                {"fieldToAggregate": "sku", "renameField": True, "outputFieldName": "skus"},
                {"fieldToAggregate": "tags"},
            ]
        },
        "options": {"mergeLists": True},
    }
    out = await run_node(Aggregate, params, data)
    assert out["main"] == [
        {
            "json": {"skus": ["A", "C"], "tags": ["x", "y"]},
            "pairedItem": [{"item": 0}, {"item": 1}, {"item": 2}],
        }
    ]


async def test_aggregate_all_item_data_with_group_by() -> None:
    params = {
        "aggregate": "aggregateAllItemData",
        "destinationFieldName": "orders",
        "include": "specifiedFields",
        "fieldsToInclude": "id, total",
        "options": {"groupByFields": "status"},
    }
    out = await run_node(Aggregate, params, ORDERS)
    assert jsons(out["main"]) == [
        {"status": "paid", "orders": [{"id": 1, "total": 120.5}, {"id": 3, "total": 42}]},
        {"status": "open", "orders": [{"id": 2, "total": 80}]},
    ]
    assert paired(out["main"])[0] == [{"item": 0}, {"item": 2}]


async def test_aggregate_refuses_duplicate_output_names() -> None:
    params = {
        "fieldsToAggregate": {
            "fieldToAggregate": [{"fieldToAggregate": "a"}, {"fieldToAggregate": "a"}]
        }
    }
    with pytest.raises(NodeError, match="used more than once"):
        await run_node(Aggregate, params, ORDERS)


# ---------------------------------------------------------------- Summarize


async def test_summarize_split_by_country() -> None:
    params = {
        "fieldsToSummarize": {
            "values": [
                {"aggregation": "sum", "field": "total"},
                {"aggregation": "count", "field": "id"},
                {"aggregation": "concatenate", "field": "customer.name", "separateBy": ", "},
                {"aggregation": "max", "field": "total"},
            ]
        },
        "fieldsToSplitBy": "customer.country",
        "options": {},
    }
    out = await run_node(Summarize, params, ORDERS)
    assert jsons(out["main"]) == [
        {
            "customer_country": "NO",
            "sum_total": 162.5,
            "count_id": 2,
            "concatenated_customer_name": "Ada, Cy",
            "max_total": 120.5,
        },
        {
            "customer_country": "SE",
            "sum_total": 80,
            "count_id": 1,
            "concatenated_customer_name": "Bo",
            "max_total": 80,
        },
    ]
    assert paired(out["main"])[0] == [{"item": 0}, {"item": 2}]


async def test_summarize_without_split_and_single_item_format() -> None:
    values = [
        {"aggregation": "average", "field": "total"},
        {"aggregation": "countUnique", "field": "status"},
        {"aggregation": "append", "field": "id"},
    ]
    out = await run_node(Summarize, {"fieldsToSummarize": {"values": values}}, ORDERS)
    assert jsons(out["main"]) == [
        {"average_total": 242.5 / 3, "unique_count_status": 2, "appended_id": [1, 2, 3]}
    ]
    single = await run_node(
        Summarize,
        {
            "fieldsToSummarize": {"values": values[:1]},
            "fieldsToSplitBy": "status",
            "options": {"outputFormat": "singleItem"},
        },
        ORDERS,
    )
    assert jsons(single["main"]) == [
        {"paid": {"average_total": 81.25}, "open": {"average_total": 80}}
    ]


async def test_summarize_missing_field_fails_in_version_1_only() -> None:
    params = {"fieldsToSummarize": {"values": [{"aggregation": "sum", "field": "nope"}]}}
    with pytest.raises(NodeError, match="The field 'nope' does not exist in any items"):
        await run_node(Summarize, params, ORDERS, version=1)
    out = await run_node(Summarize, params, ORDERS, version=1.1)
    assert jsons(out["main"]) == [{"sum_nope": 0}]


# ---------------------------------------------------------------- Split Out

CARTS = items(
    {"cart": 1, "user": "ada", "lines": [{"sku": "A", "qty": 2}, {"sku": "B", "qty": 1}]},
    {"cart": 2, "user": "bo", "lines": []},
    {"cart": 3, "user": "cy", "lines": "gift-card"},
)


async def test_split_out_merges_object_entries() -> None:
    out = await run_node(SplitOut, {"fieldToSplitOut": "lines", "options": {}}, CARTS)
    assert jsons(out["main"]) == [
        {"sku": "A", "qty": 2},
        {"sku": "B", "qty": 1},
        {"lines": "gift-card"},
    ]
    assert paired(out["main"]) == [{"item": 0}, {"item": 0}, {"item": 2}]


async def test_split_out_with_other_fields_and_destination() -> None:
    params = {
        "fieldToSplitOut": "lines",
        "include": "allOtherFields",
        "options": {"destinationFieldName": "line"},
    }
    out = await run_node(SplitOut, params, CARTS[:1])
    assert jsons(out["main"]) == [
        {"cart": 1, "user": "ada", "line": {"sku": "A", "qty": 2}},
        {"cart": 1, "user": "ada", "line": {"sku": "B", "qty": 1}},
    ]
    selected = await run_node(
        SplitOut,
        {"fieldToSplitOut": "lines", "include": "selectedOtherFields", "fieldsToInclude": "user"},
        CARTS[:1],
    )
    assert jsons(selected["main"])[0] == {"user": "ada", "lines": {"sku": "A", "qty": 2}}


async def test_split_out_zips_several_fields() -> None:
    data = items({"names": ["a", "b"], "ages": [30, 40]})
    out = await run_node(SplitOut, {"fieldToSplitOut": "names, ages"}, data)
    assert jsons(out["main"]) == [{"names": "a", "ages": 30}, {"names": "b", "ages": 40}]
