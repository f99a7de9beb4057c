"""The engine end to end, in process: planner + state machine + runner, with real nodes."""

from __future__ import annotations

import asyncio
import itertools

import pytest

from klikkflow.engine.graph import InvalidWorkflow, compile_workflow
from klikkflow.engine.runner import EnginePool, Runner
from klikkflow.engine.state import ExecutionStatus, NodeStatus, State
from klikkflow.engine.workflow import Workflow
from klikkflow.nodes.registry import default_registry
from tests.klikkflow.engine.nodes_for_tests import registry

_ids = itertools.count()


def workflow(nodes: list[dict], edges: list[tuple], **extra) -> Workflow:
    """Nodes as dicts (id filled in); edges as (source, target) or (source, port, target,
    input) tuples."""
    connections = []
    for edge in edges:
        if len(edge) == 2:
            connections.append({"source": edge[0], "target": edge[1]})
        else:
            connections.append(
                {
                    "source": edge[0],
                    "sourceOutput": edge[1],
                    "target": edge[2],
                    "targetInput": edge[3],
                }
            )
    return Workflow.model_validate(
        {
            "name": "test",
            "nodes": [{"id": str(next(_ids)), **n} for n in nodes],
            "connections": connections,
            **extra,
        }
    )


def start() -> dict:
    return {"name": "Start", "type": "manualTrigger"}


def echo(name: str, **params) -> dict:
    return {"name": name, "type": "test.echo", "parameters": params}


async def run(wf: Workflow, items=None, **kwargs) -> tuple[Runner, State, list]:
    events: list = []

    async def sink(event):
        events.append(event)

    runner = Runner(compile_workflow(wf, registry()), on_event=sink, **kwargs)
    state = await runner.run(items)
    return runner, state, events


def outputs(state: State, node: str, port: str = "main") -> list[dict]:
    return [i["json"] for i in state.runs[node][-1].outputs[port]]


async def test_a_linear_chain_runs_in_order_and_replays_to_the_same_state():
    wf = workflow([start(), echo("A"), echo("B")], [("Start", "A"), ("A", "B")])
    runner, state, events = await run(wf, [{"json": {"n": 1}}, {"json": {"n": 2}}])
    assert state.status == ExecutionStatus.SUCCEEDED
    assert outputs(state, "B") == [{"n": 1, "path": ["A", "B"]}, {"n": 2, "path": ["A", "B"]}]
    replayed = Runner(compile_workflow(wf, registry())).replay(events)
    assert replayed.model_dump() == state.model_dump()


async def test_parallel_branches_overlap_and_a_merge_waits_for_both():
    wf = workflow(
        [
            start(),
            echo("Slow", delayMs=150),
            echo("Fast", delayMs=50),
            {"name": "Merge", "type": "merge", "typeVersion": 3},
        ],
        [
            ("Start", "Slow"),
            ("Start", "Fast"),
            ("Slow", "main", "Merge", "input1"),
            ("Fast", "main", "Merge", "input2"),
        ],
    )
    _, state, events = await run(wf, [{"json": {"n": 1}}])
    kinds = [(e.type, getattr(e, "node", None)) for e in events]
    # Both branches started before either finished: they ran concurrently.
    assert kinds.index(("node.started", "Fast")) < kinds.index(("node.succeeded", "Slow"))
    assert kinds.index(("node.started", "Slow")) < kinds.index(("node.succeeded", "Fast"))
    assert len(state.runs["Merge"]) == 1
    assert [o["path"] for o in outputs(state, "Merge")] == [["Slow"], ["Fast"]]


async def test_routing_sends_items_down_the_matching_port_only():
    wf = workflow(
        [
            start(),
            {"name": "Parity", "type": "test.parity"},
            echo("Even"),
            echo("Odd"),
            {"name": "Merge", "type": "merge", "typeVersion": 3},
        ],
        [
            ("Start", "Parity"),
            ("Parity", "even", "Even", "main"),
            ("Parity", "odd", "Odd", "main"),
            ("Even", "main", "Merge", "input1"),
            ("Odd", "main", "Merge", "input2"),
        ],
    )
    _, state, _ = await run(wf, [{"json": {"n": 2}}, {"json": {"n": 4}}])
    assert "Odd" not in state.runs  # no items, no run
    assert [o["n"] for o in outputs(state, "Merge")] == [2, 4]  # merge still ran, once


async def test_loop_over_items_runs_its_body_per_batch_then_emits_done():
    wf = workflow(
        [
            start(),
            {
                "name": "Loop",
                "type": "splitInBatches",
                "typeVersion": 3,
                "parameters": {"batchSize": 2},
            },
            echo("Body"),
            echo("After"),
        ],
        [
            ("Start", "Loop"),
            ("Loop", "loop", "Body", "main"),
            ("Body", "Loop"),
            ("Loop", "done", "After", "main"),
        ],
    )
    _, state, _ = await run(wf, [{"json": {"n": n}} for n in range(5)])
    assert state.status == ExecutionStatus.SUCCEEDED
    assert len(state.runs["Body"]) == 3  # batches of 2, 2, 1
    assert [o["n"] for o in outputs(state, "After")] == [0, 1, 2, 3, 4]
    assert all(o["path"] == ["Body", "After"] for o in outputs(state, "After"))


async def test_a_loop_whose_body_drops_every_item_still_finishes():
    wf = workflow(
        [
            start(),
            {"name": "Loop", "type": "splitInBatches", "typeVersion": 3},
            {"name": "Parity", "type": "test.parity"},
            echo("After"),
        ],
        [
            ("Start", "Loop"),
            ("Loop", "loop", "Parity", "main"),
            ("Parity", "even", "Loop", "main"),
            ("Loop", "done", "After", "main"),
        ],
    )
    _, state, _ = await run(wf, [{"json": {"n": 1}}, {"json": {"n": 2}}, {"json": {"n": 3}}])
    assert state.status == ExecutionStatus.SUCCEEDED
    assert [o["n"] for o in outputs(state, "After")] == [2]


async def test_retries_back_off_and_then_succeed():
    wf = workflow(
        [
            start(),
            {
                "name": "Flaky",
                "type": "test.flaky",
                "parameters": {"failTimes": 2},
                "retry": {"maxTries": 3, "waitMs": 20, "backoff": 2},
            },
        ],
        [("Start", "Flaky")],
    )
    _, state, events = await run(wf, execution_id="retry-ok")
    assert state.status == ExecutionStatus.SUCCEEDED
    run_ = state.runs["Flaky"][-1]
    assert (run_.status, run_.tries) == (NodeStatus.SUCCEEDED, 3)
    failures = [e for e in events if e.type == "node.failed"]
    waits = [(f.retry_at - f.at).total_seconds() * 1000 for f in failures]
    assert [round(w) for w in waits] == [20, 40]


async def test_a_node_out_of_tries_fails_the_execution_with_its_input_kept():
    wf = workflow(
        [
            start(),
            {
                "name": "Flaky",
                "type": "test.flaky",
                "parameters": {"failTimes": 5},
                "retry": {"maxTries": 2, "waitMs": 1},
            },
            echo("Never"),
        ],
        [("Start", "Flaky"), ("Flaky", "Never")],
    )
    _, state, _ = await run(wf, [{"json": {"order": 7}}], execution_id="retry-fail")
    assert state.status == ExecutionStatus.FAILED
    assert state.error.node == "Flaky"
    assert state.error.message == "flaky failure 2"
    assert state.runs["Flaky"][-1].inputs["main"] == [{"json": {"order": 7}}]
    assert "Never" not in state.runs


@pytest.mark.parametrize(
    ("on_error", "port", "next_node"),
    [("continue", "main", "Next"), ("errorOutput", "error", "Handler")],
)
async def test_continue_on_fail_and_error_output(on_error, port, next_node):
    wf = workflow(
        [
            start(),
            {"name": "Boom", "type": "test.boom", "onError": on_error},
            echo("Next"),
            echo("Handler"),
        ],
        [("Start", "Boom"), ("Boom", "main", "Next", "main"), ("Boom", "error", "Handler", "main")],
    )
    _, state, _ = await run(wf, [{"json": {"n": 1}}])
    assert state.status == ExecutionStatus.SUCCEEDED
    assert outputs(state, next_node) == [
        {"n": 1, "error": "ZeroDivisionError: division by zero", "path": [next_node]}
    ]
    other = {"Next", "Handler"} - {next_node}
    assert not other & set(state.runs)


async def test_wait_parks_the_execution_and_a_replayed_runner_resumes_it():
    wf = workflow(
        [
            start(),
            {
                "name": "Wait",
                "type": "wait",
                "typeVersion": 1.1,
                "parameters": {"resume": "webhook"},
            },
            echo("After"),
        ],
        [("Start", "Wait"), ("Wait", "After")],
    )
    _, state, events = await run(wf, [{"json": {"n": 1}}])
    assert state.status == ExecutionStatus.WAITING
    assert state.parked.node == "Wait"
    assert "After" not in state.runs
    # Another process (a worker) rebuilds the execution from its events and resumes it.
    later = Runner(compile_workflow(wf, registry()))
    later.replay(events)
    resumed = await later.resume({"approved": True})
    assert resumed.status == ExecutionStatus.SUCCEEDED
    assert outputs(resumed, "After") == [{"approved": True, "path": ["After"]}]


async def test_a_timed_wait_parks_until_its_time():
    wf = workflow(
        [
            start(),
            {
                "name": "Wait",
                "type": "wait",
                "typeVersion": 1.1,
                "parameters": {"amount": 2, "unit": "hours"},
            },
        ],
        [("Start", "Wait")],
    )
    _, state, events = await run(wf)
    assert state.status == ExecutionStatus.WAITING
    waiting = next(e for e in events if e.type == "node.waiting")
    assert round((waiting.until - waiting.at).total_seconds()) == 7200


async def test_the_execution_timeout_fails_a_run_that_takes_too_long():
    wf = workflow(
        [start(), echo("Slow", delayMs=5000)], [("Start", "Slow")], settings={"timeoutSeconds": 1}
    )
    _, state, _ = await run(wf)
    assert state.status == ExecutionStatus.FAILED
    assert state.error.type == "Timeout"
    assert state.runs["Slow"][-1].status == NodeStatus.CANCELLED


async def test_cancel_stops_a_running_execution():
    wf = workflow([start(), echo("Slow", delayMs=5000)], [("Start", "Slow")])
    runner = Runner(compile_workflow(wf, registry()))
    task = asyncio.create_task(runner.run())
    while "Slow" not in runner.state.running:
        await asyncio.sleep(0.01)
    await runner.cancel()
    state = await task
    assert state.status == ExecutionStatus.CANCELLED


async def test_disabled_nodes_pass_through_and_pinned_data_replaces_a_run():
    wf = workflow(
        [start(), {**echo("Off"), "disabled": True}, echo("Pinned"), echo("End")],
        [("Start", "Off"), ("Off", "Pinned"), ("Pinned", "End")],
        pinData={"Pinned": [{"fixed": True}]},
    )
    _, state, _ = await run(wf, [{"json": {"n": 1}}])
    assert outputs(state, "Off") == [{"n": 1}]
    assert outputs(state, "End") == [{"fixed": True, "path": ["End"]}]


def test_a_broken_workflow_is_refused_with_every_problem_listed():
    wf = workflow(
        [
            start(),
            {"name": "X", "type": "nope"},
            {"name": "Wait", "type": "wait", "typeVersion": 1.1, "parameters": {"unit": "years"}},
            echo("A"),
            echo("B"),
        ],
        [("Start", "Ghost"), ("A", "B"), ("B", "A"), ("Start", "sideways", "A", "main")],
    )
    with pytest.raises(InvalidWorkflow) as refused:
        compile_workflow(wf, registry())
    paths = {p.path for p in refused.value.problems}
    assert "nodes['X'].type" in paths
    assert "nodes['Wait'].parameters.unit" in paths
    assert "connections[0].target" in paths
    assert "connections[3].sourceOutput" in paths


def test_a_cycle_without_a_loop_node_is_refused():
    wf = workflow([start(), echo("A"), echo("B")], [("Start", "A"), ("A", "B"), ("B", "A")])
    with pytest.raises(InvalidWorkflow, match="cycle without a loop node: A -> B -> A"):
        compile_workflow(wf, registry())


async def test_recovery_after_a_crash_reruns_only_the_unfinished_node():
    wf = workflow(
        [start(), echo("A"), echo("B"), echo("C")], [("Start", "A"), ("A", "B"), ("B", "C")]
    )
    _, finished, events = await run(wf, [{"json": {"n": 1}}])
    # The worker died while B was running: its log ends at B's start.
    cut = next(i + 1 for i, e in enumerate(events) if e.type == "node.started" and e.node == "B")
    recovered_events: list = []

    async def sink(event):
        recovered_events.append(event)

    later = Runner(compile_workflow(wf, registry()), on_event=sink)
    later.replay(events[:cut])
    state = await later.recover()
    assert state.status == ExecutionStatus.SUCCEEDED
    assert outputs(state, "C") == outputs(finished, "C")
    assert [e.type for e in recovered_events][:2] == ["node.interrupted", "node.started"]
    started = [e.node for e in recovered_events if e.type == "node.started"]
    assert started == ["B", "C"]  # A finished before the crash: it does not run again
    assert len(state.runs["A"]) == 1
    assert state.runs["B"][-1].tries == 2
    # The whole log, crash and recovery included, replays to the same state.
    again = Runner(compile_workflow(wf, registry())).replay(events[:cut] + recovered_events)
    assert again.model_dump() == state.model_dump()


async def test_a_node_output_over_the_limit_fails_the_node_clearly():
    wf = workflow([start(), echo("Big")], [("Start", "Big")])
    items = [{"json": {"text": "x" * 100}} for _ in range(20)]
    _, state, _ = await run(wf, items, max_output_bytes=1_000)
    assert state.status == ExecutionStatus.FAILED
    assert state.error is not None
    assert state.error.node == "Start"  # the trigger already hands on 20 x 100 bytes
    assert "over the limit of 1,000 bytes per node run" in state.error.message
    _, small, _ = await run(wf, items[:2], max_output_bytes=1_000)
    assert small.status == ExecutionStatus.SUCCEEDED


async def test_the_default_timeout_bounds_a_workflow_that_sets_none():
    wf = workflow([start(), echo("Slow", delayMs=5000)], [("Start", "Slow")])
    _, state, _ = await run(wf, default_timeout=1)
    assert state.status == ExecutionStatus.FAILED
    assert state.error is not None
    assert "1 s" in state.error.message or "1s" in state.error.message, state.error.message
    own = workflow(
        [start(), echo("Quick", delayMs=1500)], [("Start", "Quick")], settings={"timeoutSeconds": 5}
    )
    _, longer, _ = await run(own, default_timeout=1)  # the workflow's own limit wins
    assert longer.status == ExecutionStatus.SUCCEEDED


def _stamping(value: str) -> Workflow:
    """Start -> Stamp (Edit Fields: `stamp` = value, from the expression)."""
    stamp = {
        "name": "Stamp",
        "type": "set",
        "typeVersion": 3.4,
        "parameters": {
            "mode": "manual",
            "includeOtherFields": True,
            "assignments": {"assignments": [{"name": "stamp", "type": "string", "value": value}]},
        },
    }
    return workflow([start(), stamp], [("Start", "Stamp")])


async def _run_pooled(graph, pool: EnginePool, execution_id: str) -> tuple[Runner, State]:
    runner = Runner(graph, execution_id=execution_id, engines=pool)
    state = await runner.run([{"json": {"n": 1}}])
    runner.close()
    return runner, state


async def test_runs_of_a_version_reuse_its_expression_engine_with_their_own_values():
    pool = EnginePool(limit=4)
    graph = compile_workflow(_stamping("={{ $execution.id }}"), default_registry())
    first, state = await _run_pooled(graph, pool, "ex-1")
    assert outputs(state, "Stamp") == [{"n": 1, "stamp": "ex-1"}]
    second, state = await _run_pooled(graph, pool, "ex-2")
    assert second.expressions is first.expressions
    assert outputs(state, "Stamp") == [{"n": 1, "stamp": "ex-2"}]
    second.close()  # a second close gives nothing back twice
    assert pool.take(graph) is first.expressions
    assert pool.take(graph) is None
    other = compile_workflow(_stamping("={{ $execution.id }}"), default_registry())
    third, _ = await _run_pooled(other, pool, "ex-3")  # another version: an engine of its own
    assert third.expressions is not first.expressions


async def test_an_engine_left_changed_is_dropped_and_the_pool_keeps_its_limit():
    pool = EnginePool(limit=2)
    leak = _stamping("={{ globalThis.seen = $execution.id }}")
    leaky = compile_workflow(leak, default_registry())
    first, _ = await _run_pooled(leaky, pool, "ex-1")
    second, _ = await _run_pooled(leaky, pool, "ex-2")
    assert second.expressions is not first.expressions
    assert pool.take(leaky) is None
    graphs = [compile_workflow(_stamping("={{ 1 }}"), default_registry()) for _ in range(3)]
    runners = [(await _run_pooled(g, pool, f"ex-{k}"))[0] for k, g in enumerate(graphs)]
    assert pool.take(graphs[0]) is None  # the least recently used went first
    assert [pool.take(g) for g in graphs[1:]] == [r.expressions for r in runners[1:]]


async def test_an_engine_a_cancelled_node_may_still_use_is_not_given_back():
    wf = workflow([start(), {"name": "Slow", "type": "test.lingering"}], [("Start", "Slow")])
    graph = compile_workflow(wf, registry())
    pool = EnginePool(limit=4)
    runner = Runner(graph, engines=pool, default_timeout=1)  # the run ends, Slow lingers
    assert (await runner.run()).status == ExecutionStatus.FAILED
    runner.close()
    assert pool.take(graph) is None
    stamp = compile_workflow(_stamping("={{ 1 }}"), default_registry())
    done, _ = await _run_pooled(stamp, pool, "ex-2")
    assert pool.take(stamp) is done.expressions  # (an ordinary run does give back)
