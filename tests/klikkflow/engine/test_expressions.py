"""n8n expression semantics in the QuickJS sandbox."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from importlib import resources
from typing import Any

import pytest
import quickjs

from klikkflow.engine.expressions import (
    _EXTENSION_NAMES,
    ExpressionEngine,
    ExpressionError,
    contains_expression,
    is_expression,
)

WORKFLOW = {
    "id": "wf-1",
    "name": "Orders",
    "active": True,
    "nodes": [{"name": "Fetch"}, {"name": "Later"}],
}
ITEMS = [
    {"json": {"body": {"name": "ann", "qty": 2, "price": 3.5, "tags": ["a", "b"]}}},
    {
        "json": {"counter": 4, "body": {"name": "bob", "qty": 1, "price": 10, "tags": []}},
        "binary": {"file": {"mimeType": "text/plain"}},
    },
]


@pytest.fixture
def engine() -> Iterator[ExpressionEngine]:
    e = ExpressionEngine(
        execution_id="ex-1",
        workflow=WORKFLOW,
        variables={"region": "eu"},
        mode="trigger",
        time_limit=0.3,
    )
    yield e
    e.close()


def ev(engine: ExpressionEngine, value: Any, items: list[dict[str, Any]] = ITEMS) -> list[Any]:
    return engine.evaluate(value, items, node_name="Enrich", parameter_path="value")


def test_detection() -> None:
    assert is_expression("={{ 1 }}")
    assert not is_expression("plain")
    assert not is_expression(3)
    assert contains_expression({"a": [1, {"b": "x {{ $json.a }}"}]})
    assert not contains_expression({"a": [1, {"b": "x"}]})


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        # n8n's bench expressions
        ("={{ $json.body.name.toUpperCase() }}", ["ANN", "BOB"]),
        ("{{ $json.body.qty * $json.body.price }}", [7, 10]),
        ("{{ $json.body.tags.length }}", [2, 0]),
        ("{{ ($json.counter ?? 0) + 1 }}", [1, 5]),
        # a lone segment keeps its JS type
        ("  {{ $json.body.tags }} ", [["a", "b"], []]),
        ("{{ $json.body.qty > 1 }}", [True, False]),
        ("{{ {a: {b: $itemIndex}} }}", [{"a": {"b": 0}}, {"a": {"b": 1}}]),
        ("{{ $json.missing }}", [None, None]),
        ("{{ null }}", [None, None]),
        # mixed text renders objects as JSON and null/undefined as nothing
        (
            "n={{ $json.body.name }} t={{ $json.body.tags }} x={{ $json.nope }}{{ null }}.",
            ['n=ann t=["a","b"] x=.', "n=bob t=[] x=."],
        ),
        ("{{ 1 }}{{ 2 }}", ["12", "12"]),
        # no braces: the n8n marker "=" is dropped, the rest is plain text
        ("=plain", ["plain", "plain"]),
        ("plain", ["plain", "plain"]),
        (42, [42, 42]),
    ],
)
def test_values(engine: ExpressionEngine, value: Any, expected: list[Any]) -> None:
    assert ev(engine, value) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("{{ $input.item.json.body.name }}", ["ann", "bob"]),
        ("{{ $input.all().length }}", [2, 2]),
        (
            "{{ $input.first().json.body.name }}/{{ $input.last().json.body.name }}",
            ["ann/bob", "ann/bob"],
        ),
        ("{{ $binary?.file?.mimeType ?? 'none' }}", ["none", "text/plain"]),
        ("{{ $input.item.binary?.file.mimeType }}", [None, "text/plain"]),
        ("{{ $itemIndex }}", [0, 1]),
        ("{{ $runIndex }}", [0, 0]),
        ("{{ $vars.region }}", ["eu", "eu"]),
        ("{{ $execution.id }} {{ $execution.mode }}", ["ex-1 trigger", "ex-1 trigger"]),
        (
            "{{ $workflow.id }} {{ $workflow.name }} {{ $workflow.active }}",
            ["wf-1 Orders true"] * 2,
        ),
        ("{{ `${$vars.region}/${$runIndex}` }}", ["eu/0", "eu/0"]),
    ],
)
def test_names(engine: ExpressionEngine, value: str, expected: list[Any]) -> None:
    assert ev(engine, value) == expected


def test_run_index(engine: ExpressionEngine) -> None:
    assert engine.evaluate(
        "{{ $runIndex }}", ITEMS, node_name="N", parameter_path="p", run_index=3
    ) == [3, 3]


def test_nested_parameter_tree(engine: ExpressionEngine) -> None:
    value = {
        "keep": 5,
        "list": ["{{ $json.body.qty }}", "x", {"deep": "={{ $json.body.name }}!"}],
        "s": "text",
    }
    assert ev(engine, value) == [
        {"keep": 5, "list": [2, "x", {"deep": "ann!"}], "s": "text"},
        {"keep": 5, "list": [1, "x", {"deep": "bob!"}], "s": "text"},
    ]


def test_no_items_evaluates_once_with_an_empty_item(engine: ExpressionEngine) -> None:
    assert ev(engine, "{{ Object.keys($json).length }}-{{ $itemIndex }}", []) == ["0-0"]
    assert ev(engine, "plain", []) == ["plain"]


def test_evaluate_one(engine: ExpressionEngine) -> None:
    one = engine.evaluate_one(
        "{{ $json.body.name }} of {{ $input.all().length }}",
        ITEMS,
        1,
        node_name="N",
        parameter_path="p",
    )
    assert one == "bob of 2"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("{{ $node['Fetch'].json.id }}", [10, 20]),
        ('{{ $node["Fetch"].json.id }}', [10, 20]),
        ("{{ $node.Fetch.json.id }}", [10, 20]),
        ("{{ $('Fetch').item.json.id }}", [10, 20]),
        ("{{ $('Fetch').first().json.id }}", [10, 10]),
        ("{{ $('Fetch').last().json.id }}", [30, 30]),
        ("{{ $('Fetch').all().map(i => i.json.id) }}", [[10, 20, 30]] * 2),
        ("{{ $('Fe' + 'tch').item.json.id }}", [10, 20]),  # computed name
    ],
)
def test_node_lookups(engine: ExpressionEngine, value: str, expected: list[Any]) -> None:
    engine.set_node_output(
        "Fetch", [{"json": {"id": 10}}, {"json": {"id": 20}}, {"json": {"id": 30}}]
    )
    assert ev(engine, value) == expected


def test_paired_item_falls_back_to_the_first(engine: ExpressionEngine) -> None:
    engine.set_node_output("Fetch", [{"json": {"id": 10}}])
    assert ev(engine, "{{ $node['Fetch'].json.id }}") == [10, 10]


def test_node_output_is_replaced_by_a_later_run(engine: ExpressionEngine) -> None:
    engine.set_node_output("Fetch", [{"json": {"id": 1}}])
    assert ev(engine, "{{ $('Fetch').first().json.id }}") == [1, 1]
    engine.set_node_output("Fetch", [{"json": {"id": 2}}], run_index=1)
    assert ev(engine, "{{ $('Fetch').first().json.id }}") == [2, 2]


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("{{ $('Nope').item.json }}", 'no node named "Nope" in this workflow'),
        ("{{ $node['Later'].json }}", 'node "Later" has not run yet'),
    ],
)
def test_missing_node_is_a_clear_error(engine: ExpressionEngine, value: str, message: str) -> None:
    with pytest.raises(ExpressionError, match=message):
        ev(engine, value)


def test_runtime_error_names_node_parameter_item_and_position(engine: ExpressionEngine) -> None:
    items = [{"json": {"name": "a"}}] * 3 + [{"json": {}}]
    value = {"assignments": {"assignments": [{"value": "={{ 1 }} {{ $json.name.toUpperCase() }}"}]}}
    with pytest.raises(ExpressionError) as caught:
        engine.evaluate(value, items, node_name="Enrich", parameter_path="")
    err = caught.value
    assert (err.node_name, err.parameter_path, err.item_index, err.position) == (
        "Enrich",
        "assignments.assignments[0].value",
        3,
        9,
    )
    assert err.expression == "={{ 1 }} {{ $json.name.toUpperCase() }}"
    assert str(err).startswith(
        'node "Enrich", parameter "assignments.assignments[0].value", item 3, at 9: TypeError: '
    )
    assert "toUpperCase" in str(err)


def test_thrown_values_are_reported(engine: ExpressionEngine) -> None:
    with pytest.raises(ExpressionError, match="Uncaught boom"):
        ev(engine, "{{ (() => { throw 'boom' })() }}")


def test_syntax_error_is_reported_at_compile_time(engine: ExpressionEngine) -> None:
    with pytest.raises(ExpressionError) as caught:
        ev(engine, "ok {{ 1 }} then {{ 1 + }}")
    err = caught.value
    assert (err.parameter_path, err.item_index, err.position) == ("value", None, 16)
    assert "SyntaxError" in err.message


def test_globals_do_not_leak_between_engines(engine: ExpressionEngine) -> None:
    assert ev(engine, "{{ globalThis.leak = 42 }}") == [42, 42]
    assert ev(engine, "{{ typeof leak }}") == ["number", "number"]
    other = ExpressionEngine(execution_id="ex-2", workflow=WORKFLOW)
    assert ev(other, "{{ typeof leak }}") == ["undefined", "undefined"]


def test_a_reused_engine_serves_the_next_execution_with_nothing_of_the_last(
    engine: ExpressionEngine,
) -> None:
    engine.set_node_output("Fetch", [{"json": {"id": 10}}])
    assert ev(engine, "{{ $node['Fetch'].json.id }} {{ $execution.id }} {{ $vars.region }}") == [
        "10 ex-1 eu",
        "10 ex-1 eu",
    ]
    assert engine.reusable()
    engine.restart(execution_id="ex-2", variables={"region": "us"}, mode="webhook")
    assert ev(engine, "{{ $execution.id }} {{ $execution.mode }} {{ $vars.region }}") == [
        "ex-2 webhook us",
        "ex-2 webhook us",
    ]
    with pytest.raises(ExpressionError, match='node "Fetch" has not run yet'):
        ev(engine, "{{ $node['Fetch'].json.id }}")
    engine.set_node_output("Fetch", [{"json": {"id": 20}}])
    assert ev(engine, "{{ $node['Fetch'].json.id }}") == [20, 20]


@pytest.mark.parametrize(
    "value",
    [
        "{{ globalThis.leak = 42 }}",
        "{{ leak = 42 }}",  # an undeclared name: a global in sloppy code
        "{{ delete globalThis.JSON }}",
        "{{ globalThis.Math = {} }}",
        "{{ Array.prototype.leak = () => 42 }}",
        "{{ Object.defineProperty(String.prototype, Symbol.for('x'), {value: 1}) && 1 }}",
        "{{ DateTime.now() && 1 }}",  # Luxon keeps settings in closures
        "{{ Math = NaN }}",
        "{{ (Object.setPrototypeOf(Array.prototype, {leak: 1}), 1) }}",
        "{{ (Object.preventExtensions(globalThis), 1) }}",
        # a promise's job still pending: it would run (or hold its data) in the next one
        "{{ ((async () => { await 0; return $json.n })(), 1) }}",
    ],
)
def test_an_engine_whose_expressions_changed_shared_things_is_not_reused(
    engine: ExpressionEngine, value: str
) -> None:
    ev(engine, value, ITEMS[:1])
    assert not engine.reusable()


@pytest.mark.parametrize(
    ("change", "check"),
    [
        ("Object.prototype.leak = 42", "({}).leak"),
        ("EvalError.leak = Float64Array.leak = 1", "EvalError.leak ?? Float64Array.leak"),
        ("Object.getPrototypeOf(function* () {}).leak = 1", "(function* () {}).leak"),
        ("Object.getPrototypeOf(new Map().keys()).leak = 1", "new Map().keys().leak"),
        ("[].sum() && (Array.prototype.leak = 1)", "[].leak"),  # closed once helpers load
    ],
)
def test_built_ins_take_no_new_properties(
    engine: ExpressionEngine, change: str, check: str
) -> None:
    ev(engine, f"{{{{ {change} }}}}", ITEMS[:1])
    assert ev(engine, f"{{{{ {check} }}}}", ITEMS[:1]) == [None]
    with pytest.raises(ExpressionError, match="TypeError"):
        ev(engine, "{{ Object.defineProperty(Math, 'leak', {value: 1}) }}", ITEMS[:1])
    with pytest.raises(ExpressionError, match="TypeError"):
        ev(engine, "{{ Object.setPrototypeOf(Math, {}) }}", ITEMS[:1])
    assert engine.reusable()


def test_checking_an_engine_runs_no_code_an_expression_left(engine: ExpressionEngine) -> None:
    # A getter handing back the real Math would fool a check that reads the global.
    same = "{ get: ((m) => () => m)(Math) }"
    ev(engine, f"{{{{ (Object.defineProperty(globalThis, 'Math', {same}), Math.max(1, 2)) }}}}")
    assert not engine.reusable()  # (read as a property descriptor: the getter never runs)


def test_the_runtime_keeps_its_own_outputs_whatever_expressions_replace(
    engine: ExpressionEngine,
) -> None:
    engine.set_node_output("Fetch", [{"json": {"card": "4111-A"}}])
    replace = "Map.prototype.clear = Map.prototype.get = Map.prototype.delete = () => {}"
    assert ev(
        engine, f"{{{{ $('Fetch').item.json.card }}}} {{{{ ({replace}, 1) }}}}", ITEMS[:1]
    ) == ["4111-A 1"]
    engine.restart(execution_id="ex-2")
    with pytest.raises(ExpressionError, match='node "Fetch" has not run yet'):
        ev(engine, "{{ $('Fetch').item.json.card }}", ITEMS[:1])


def test_changes_made_before_the_helpers_load_still_count(engine: ExpressionEngine) -> None:
    assert ev(engine, "{{ [1, 2].sum() }}", ITEMS[:1]) == [3]  # loading them is no change
    assert engine.reusable()
    fresh = ExpressionEngine(execution_id="ex-2", workflow=WORKFLOW)
    ev(fresh, "{{ globalThis.leak = 1 }}", ITEMS[:1])
    assert ev(fresh, "{{ 'abc'.isEmpty() }}", ITEMS[:1]) == [False]
    assert not fresh.reusable()


def test_loading_the_helpers_runs_no_pending_promise_job(engine: ExpressionEngine) -> None:
    later = "{{ ((async () => { await 0; globalThis.ran = 1 })(), 1) }}"
    assert ev(engine, later, ITEMS[:1]) == [1]
    assert ev(engine, "{{ [1, 2].sum() }} {{ typeof ran }}", ITEMS[:1]) == ["3 undefined"]
    assert not engine.reusable()  # (the job is still pending)


def test_the_runtime_is_out_of_expressions_reach(engine: ExpressionEngine) -> None:
    assert ev(engine, "{{ typeof __kfApi }} {{ Object.isFrozen(__kf) }}", ITEMS[:1]) == [
        "undefined true"
    ]
    with pytest.raises(ExpressionError, match="TypeError"):
        ev(engine, "{{ (() => { 'use strict'; __kf.str = () => 'x'; })() }}", ITEMS[:1])
    assert engine.reusable()


@pytest.mark.parametrize(
    "name", ["std", "os", "require", "process", "fetch", "XMLHttpRequest", "print"]
)
def test_no_io_is_reachable(engine: ExpressionEngine, name: str) -> None:
    assert ev(engine, f"{{{{ typeof {name} }}}}") == ["undefined", "undefined"]


def test_infinite_loop_hits_the_time_limit_and_engine_recovers(engine: ExpressionEngine) -> None:
    start = time.perf_counter()
    with pytest.raises(ExpressionError, match="time limit") as caught:
        ev(engine, "{{ (() => { while (true) {} })() }}")
    assert time.perf_counter() - start < 1.0
    assert caught.value.item_index == 0
    assert ev(engine, "{{ $json.body.qty }}") == [2, 1]


@pytest.mark.parametrize(
    "bomb",
    [
        "{{ 'x'.repeat(2 ** 29) }}",
        "{{ (() => { const a = []; while (true) a.push(new Array(1000).fill(1)); })() }}",
        "{{ (function f() { return f() })() }}",
    ],
)
def test_memory_and_stack_bombs_fail_and_engine_recovers(
    engine: ExpressionEngine, bomb: str
) -> None:
    engine.set_node_output("Fetch", [{"json": {"id": 7}}])
    assert ev(engine, "{{ $('Fetch').first().json.id }}") == [7, 7]
    with pytest.raises(ExpressionError, match="out of memory|stack size"):
        ev(engine, bomb)
    assert ev(engine, "{{ $('Fetch').first().json.id }} {{ typeof __leak }}") == ["7 undefined"] * 2


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("{{ ''.isEmpty() }} {{ 'a'.isEmpty() }}", "true false"),
        ("{{ 'hello big world'.toTitleCase() }}", "Hello Big World"),
        ("{{ 'helloWorld Foo-bar'.toSnakeCase() }}", "hello_world_foo_bar"),
        ("{{ 'https://www.Example.com:8080/x?y'.extractDomain() }}", "www.example.com"),
        ("{{ 'ann@mail.example.org'.extractDomain() }}", "mail.example.org"),
        ("{{ 'ann@example.org'.isEmail() }} {{ 'nope'.isEmail() }}", "true false"),
        ("{{ ' 12.5 '.toNumber() + 1 }}", 13.5),
        (
            "{{ (3.14159).round(2) }} {{ (2.5).round() }} {{ (2.7).floor() }} {{ (2.1).ceil() }}",
            "3.14 3 2 3",
        ),
        ("{{ (1234567.891).format() }} {{ (-1000).format() }}", "1,234,567.891 -1,000"),
        ("{{ [3, 1, 2].first() }} {{ [3, 1, 2].last() }}", "3 2"),
        ("{{ [1, 1, {a: 1}, {a: 1}, 'x'].unique() }}", [1, {"a": 1}, "x"]),
        ("{{ [1, 2, 'x', 3].sum() }} {{ [1, 2, 3, 4].average() }}", "6 2.5"),
        ("{{ [4, 1, 9].min() }} {{ [4, 1, 9].max() }} {{ [].isEmpty() }}", "1 9 true"),
        ("{{ [1, 2, 3, 4, 5].chunk(2) }}", [[1, 2], [3, 4], [5]]),
        ("{{ [0, null, '', undefined, 'a', false].compact() }}", [0, "a", False]),
        ("{{ Object.keys([1, 2]).join() }} {{ JSON.stringify({a: [1]}) }}", '0,1 {"a":[1]}'),
    ],
)
def test_helper_library(engine: ExpressionEngine, value: str, expected: Any) -> None:
    assert ev(engine, value, ITEMS[:1]) == [expected]


# Spelled at run time, so asking does not load the helpers.
HAS_HELPERS = "{{ Object.getOwnPropertyNames(String.prototype).includes('is' + 'Empty') }}"


def test_helpers_are_loaded_only_once_an_expression_names_one(engine: ExpressionEngine) -> None:
    assert ev(engine, "{{ Math.max(1, 2) }} {{ Math.round(2.4) }}", ITEMS[:1]) == ["2 2"]
    assert ev(engine, HAS_HELPERS, ITEMS[:1]) == [False]
    assert ev(engine, "{{ 'abc'['isEmpty']() }}", ITEMS[:1]) == [False]
    assert ev(engine, HAS_HELPERS, ITEMS[:1]) == [True]
    fresh = ExpressionEngine(execution_id="ex-2", workflow=WORKFLOW)
    assert ev(fresh, HAS_HELPERS, ITEMS[:1]) == [False]


def test_helpers_are_loaded_again_after_the_context_is_rebuilt(engine: ExpressionEngine) -> None:
    assert ev(engine, "{{ [1, 2].sum() }}", ITEMS[:1]) == [3]
    with pytest.raises(ExpressionError, match="time limit"):
        ev(engine, "{{ (() => { while (true) {} })() }}", ITEMS[:1])
    assert ev(engine, "{{ [1, 2].sum() }}", ITEMS[:1]) == [3]


def test_extension_names_are_the_methods_extensions_js_defines() -> None:
    context = quickjs.Context()
    names = (
        "JSON.stringify([String, Number, Array, Object]"
        ".flatMap(c => Object.getOwnPropertyNames(c.prototype)))"
    )
    before = set(json.loads(context.eval(names)))
    js = resources.files("klikkflow.engine").joinpath("js", "extensions.js")
    context.eval(js.read_text(encoding="utf-8"))
    assert set(json.loads(context.eval(names))) - before == set(_EXTENSION_NAMES)


def test_to_number_rejects_text(engine: ExpressionEngine) -> None:
    with pytest.raises(ExpressionError, match='cannot convert "abc" to a number'):
        ev(engine, "{{ 'abc'.toNumber() }}")


def test_now_and_today_are_luxon_datetimes(engine: ExpressionEngine) -> None:
    now, today, text = ev(
        engine, ["{{ $now }}", "{{ $today.toISO() }}", "at {{ $now }}"], ITEMS[:1]
    )[0]
    assert now.endswith("Z")
    assert today.endswith("T00:00:00.000Z")
    assert now[:10] == today[:10]
    assert text.startswith("at " + now[:10])


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (
            "{{ DateTime.fromISO('2024-03-31T12:00:00Z').setZone('Europe/Berlin').toISO() }}",
            "2024-03-31T14:00:00.000+02:00",
        ),
        (
            "{{ DateTime.fromISO('2024-01-15T10:00:00Z').setZone('America/New_York')"
            ".toFormat('yyyy-MM-dd HH:mm cccc LLLL') }}",
            "2024-01-15 05:00 Monday January",
        ),
        (
            "{{ DateTime.fromISO('2024-01-15T10:00:00Z').plus({days: 20}).toISODate() }}",
            "2024-02-04",
        ),
        ("{{ DateTime.fromISO('2024-01-15T10:00:00Z').setZone('Mars/Olympus').isValid }}", False),
        (
            "{{ DateTime.fromISO('2024-01-15T10:00:00Z').toLocaleString(DateTime.DATETIME_MED) }}",
            "1/15/2024, 10:00:00 AM",
        ),
    ],
)
def test_luxon(engine: ExpressionEngine, value: str, expected: Any) -> None:
    assert ev(engine, value, ITEMS[:1]) == [expected]


def test_timezone_setting_applies_to_now() -> None:
    engine = ExpressionEngine(execution_id="ex-3", workflow=WORKFLOW, timezone="Asia/Kolkata")
    assert ev(engine, "{{ $now.zoneName }} {{ $today.toISO() }}", ITEMS[:1])[0].startswith(
        "Asia/Kolkata "
    )
    assert ev(engine, "{{ $today.toISO() }}", ITEMS[:1])[0].endswith("T00:00:00.000+05:30")


def test_luxon_is_loaded_only_when_named(engine: ExpressionEngine) -> None:
    assert ev(engine, "{{ typeof luxon }}", ITEMS[:1]) == ["undefined"]
    ev(engine, "{{ $now }}", ITEMS[:1])
    assert ev(engine, "{{ typeof luxon }}", ITEMS[:1]) == ["object"]


def test_closed_engine_refuses_expressions(engine: ExpressionEngine) -> None:
    engine.close()
    assert ev(engine, "plain", ITEMS[:1]) == ["plain"]
    with pytest.raises(RuntimeError, match="closed"):
        ev(engine, "{{ 1 }}")


def test_a_leading_equals_marks_an_expression_even_without_braces(engine: ExpressionEngine) -> None:
    # n8n stores "=high" for an expression field holding plain text: it means "high".
    value = {"rightValue": "=high", "plain": "no marker", "list": ["=a", "b"]}
    resolved = engine.evaluate(value, [{"json": {}}], node_name="If", parameter_path="conditions")
    assert resolved == [{"rightValue": "high", "plain": "no marker", "list": ["a", "b"]}]
    assert engine.evaluate_one("=x", [{"json": {}}], 0, node_name="If", parameter_path="p") == "x"
