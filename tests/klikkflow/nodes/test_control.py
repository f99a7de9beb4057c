"""Merge, Respond to Webhook and Execute Workflow, run through the real engine."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import pytest

from klikkflow.engine.graph import compile_workflow
from klikkflow.engine.runner import Runner
from klikkflow.engine.state import ExecutionStatus
from klikkflow.engine.workflow import Workflow
from klikkflow.nodes.registry import default_registry

LEFT = [{"id": 1, "name": "Ada"}, {"id": 2, "name": "Bob"}, {"id": 3, "name": "Cy"}]
RIGHT = [{"id": 2, "team": "red"}, {"id": 3, "team": "blue"}, {"id": 4, "team": "gold"}]


def merge_workflow(params: dict[str, Any]) -> Workflow:
    def pinned(rows):
        return rows

    return Workflow.model_validate(
        {
            "name": "merge",
            "nodes": [
                {"id": "1", "name": "Start", "type": "manualTrigger"},
                {"id": "2", "name": "People", "type": "noOp"},
                {"id": "3", "name": "Teams", "type": "noOp"},
                {
                    "id": "4",
                    "name": "Merge",
                    "type": "merge",
                    "typeVersion": 3.2,
                    "parameters": params,
                },
            ],
            "connections": [
                {"source": "Start", "target": "People"},
                {"source": "Start", "target": "Teams"},
                {"source": "People", "target": "Merge", "targetInput": "input1"},
                {"source": "Teams", "target": "Merge", "targetInput": "input2"},
            ],
            "pinData": {"People": pinned(LEFT), "Teams": pinned(RIGHT)},
        }
    )


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"mode": "append"}, LEFT + RIGHT),
        (
            {"mode": "combine", "combineBy": "combineByFields", "fieldsToMatchString": "id"},
            [{"id": 2, "name": "Bob", "team": "red"}, {"id": 3, "name": "Cy", "team": "blue"}],
        ),
        (
            {
                "mode": "combine",
                "combineBy": "combineByFields",
                "fieldsToMatchString": "id",
                "joinMode": "enrichInput1",
            },
            [
                {"id": 1, "name": "Ada"},
                {"id": 2, "name": "Bob", "team": "red"},
                {"id": 3, "name": "Cy", "team": "blue"},
            ],
        ),
        (
            {
                "mode": "combine",
                "combineBy": "combineByFields",
                "fieldsToMatchString": "id",
                "joinMode": "keepNonMatches",
            },
            [{"id": 1, "name": "Ada"}, {"id": 4, "team": "gold"}],
        ),
        (
            {"mode": "combine", "combineBy": "combineByPosition"},
            [
                {"id": 2, "name": "Ada", "team": "red"},
                {"id": 3, "name": "Bob", "team": "blue"},
                {"id": 4, "name": "Cy", "team": "gold"},
            ],
        ),
        ({"mode": "chooseBranch", "useDataOfInput": 2}, RIGHT),
    ],
)
async def test_merge_modes(params, expected):
    graph = compile_workflow(merge_workflow(params), default_registry())
    runner = Runner(graph)
    state = await runner.run()
    runner.close()
    assert state.status == ExecutionStatus.SUCCEEDED, state.error
    assert [i["json"] for i in state.runs["Merge"][0].outputs["main"]] == expected


async def test_respond_to_webhook_records_the_response_and_passes_items_on():
    wf = Workflow.model_validate(
        {
            "name": "respond",
            "nodes": [
                {
                    "id": "1",
                    "name": "Hook",
                    "type": "webhook",
                    "typeVersion": 2,
                    "parameters": {
                        "httpMethod": "POST",
                        "path": "/orders/",
                        "responseMode": "responseNode",
                    },
                },
                {
                    "id": "2",
                    "name": "Respond",
                    "type": "respondToWebhook",
                    "typeVersion": 1.1,
                    "parameters": {
                        "respondWith": "json",
                        "responseBody": "={{ { ok: true, order: $json.body.id } }}",
                        "options": {
                            "responseCode": 201,
                            "responseHeaders": {
                                "entries": [{"name": "x-order", "value": "={{ $json.body.id }}"}]
                            },
                        },
                    },
                },
            ],
            "connections": [{"source": "Hook", "target": "Respond"}],
        }
    )
    graph = compile_workflow(wf, default_registry())
    assert graph.nodes["Hook"].params.path == "orders"  # slashes trimmed
    runner = Runner(graph)
    state = await runner.run([{"json": {"body": {"id": 42}}}])
    runner.close()
    response = state.node_state["Respond"]["response"]
    assert response["status"] == 201
    assert response["body"] == {"ok": True, "order": 42}
    assert state.runs["Respond"][0].outputs["main"] == [{"json": {"body": {"id": 42}}}]


@pytest.mark.parametrize("wait", [True, False])
async def test_execute_workflow_waits_for_the_result_or_passes_items_on(wait):
    calls: list[tuple[str, list, bool]] = []

    async def sub(workflow_id, items, wait_for_it):
        calls.append((workflow_id, items, wait_for_it))
        return [{"json": {"done": True, **i["json"]}} for i in items]

    wf = Workflow.model_validate(
        {
            "name": "parent",
            "nodes": [
                {"id": "1", "name": "Start", "type": "manualTrigger"},
                {
                    "id": "2",
                    "name": "Call",
                    "type": "executeWorkflow",
                    "typeVersion": 1.1,
                    "parameters": {
                        "workflowId": {"__rl": True, "value": "wf-7", "mode": "id"},
                        "mode": "each",
                        "options": {"waitForSubWorkflow": wait},
                    },
                },
            ],
            "connections": [{"source": "Start", "target": "Call"}],
        }
    )
    runner = Runner(compile_workflow(wf, default_registry()), sub_workflows=sub)
    state = await runner.run([{"json": {"n": 1}}, {"json": {"n": 2}}])
    runner.close()
    assert [c[0] for c in calls] == ["wf-7", "wf-7"]  # once per item
    assert all(c[2] is wait for c in calls)
    got = [i["json"] for i in state.runs["Call"][0].outputs["main"]]
    assert got == (
        [{"done": True, "n": 1}, {"done": True, "n": 2}] if wait else [{"n": 1}, {"n": 2}]
    )


def test_nodes_list_shows_every_type_and_version():
    result = subprocess.run(
        [sys.executable, "-m", "klikkflow.cli", "nodes", "list", "--json"],
        capture_output=True,
        text=True,
        check=True,
    )
    rows = json.loads(result.stdout)
    listed = {(r["type"], r["version"]) for r in rows}
    assert {
        ("set", 3.4),
        ("if", 2.2),
        ("httpRequest", 4.2),
        ("code", 2),
        ("splitInBatches", 3),
        ("scheduleTrigger", 1.2),
    } <= listed
    assert {r["type"] for r in rows} == {
        "manualTrigger",
        "webhook",
        "scheduleTrigger",
        "executeWorkflowTrigger",
        "errorTrigger",
        "set",
        "if",
        "switch",
        "merge",
        "filter",
        "sort",
        "limit",
        "removeDuplicates",
        "aggregate",
        "summarize",
        "splitOut",
        "splitInBatches",
        "wait",
        "noOp",
        "stopAndError",
        "dateTime",
        "crypto",
        "httpRequest",
        "code",
        "respondToWebhook",
        "executeWorkflow",
        "llmChat",
        "aiAgent",
        "textClassifier",
        "embedText",
        "vectorStoreInsert",
        "vectorStoreSearch",
    }
