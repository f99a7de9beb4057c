"""Every workflow in examples/ runs, in process and through `klikkflow run`.

HTTP examples talk to a small local API server (a stand-in for a SaaS we cannot reach);
the engine runs for real, expressions, sandboxed code and sub-workflows included."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest

from klikkflow.engine.graph import compile_workflow
from klikkflow.engine.runner import Runner
from klikkflow.engine.state import ExecutionStatus, State
from klikkflow.local import load_items, load_workflow, sub_workflow_runner
from klikkflow.nodes.http import SsrfPolicy
from klikkflow.nodes.registry import default_registry

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
PRODUCTS = [
    {"sku": "A1", "category": "tools", "price": 12.5, "stock": 3},
    {"sku": "A2", "category": "tools", "price": 7.5, "stock": 0},
    {"sku": "B1", "category": "garden", "price": 30.0, "stock": 1},
    {"sku": "B2", "category": "garden", "price": 45.0, "stock": 9},
    {"sku": "C1", "category": "tools", "price": 20.0, "stock": 2},
]


class _Api(BaseHTTPRequestHandler):
    charges: list[dict[str, Any]] = []
    failures_left: dict[str, int] = {}

    def log_message(self, *args: Any) -> None:
        return None

    def _reply(self, status: int, body: Any) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        url = urlparse(self.path)
        query = parse_qs(url.query)
        page, per_page = int(query.get("page", ["1"])[0]), int(query["per_page"][0])
        self._reply(200, PRODUCTS[(page - 1) * per_page : page * per_page])

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["content-length"])))
        order = str(body["order"])
        left = _Api.failures_left.get(order, 0)
        if left:
            _Api.failures_left[order] = left - 1
            self._reply(503, {"error": "try again"})
            return
        _Api.charges.append(body)
        self._reply(201, {"id": f"ch_{order}", "amount": body["amount"]})


@pytest.fixture(scope="module")
def api() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Api)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


async def run_example(name: str, items: list[dict[str, Any]] | None = None) -> State:
    registry = default_registry()
    path = EXAMPLES / name
    if items is None:
        inputs = path.with_suffix(".input.json")
        items = load_items(inputs if inputs.exists() else None)
    # Only the local stand-in API is allowed; every other private address stays refused.
    extras = {"ssrf_policy": SsrfPolicy(allowed_hosts=frozenset({"127.0.0.1"}))}
    runner = Runner(
        compile_workflow(load_workflow(path, registry), registry),
        node_extras=extras,
        sub_workflows=sub_workflow_runner(EXAMPLES, registry, extras),
    )
    try:
        return await runner.run(items)
    finally:
        runner.close()


def out(state: State, node: str, port: str = "main") -> list[dict[str, Any]]:
    return [i["json"] for i in state.runs[node][-1].outputs[port]]


async def test_enrich_and_route_leads():
    state = await run_example("enrich-and-route-leads.json")
    assert state.status == ExecutionStatus.SUCCEEDED
    [hot] = out(state, "Sales")
    assert (hot["domain"], hot["score"], hot["owner"]) == (
        "bigcorp.example",
        70,
        "sales@acme.example",
    )
    assert len(hot["emailHash"]) == 64
    assert [w["email"] for w in out(state, "Nurture")] == ["bob@midsize.example"]
    assert out(state, "Archive") == [{"email": "cy@tiny.example", "reason": "score 5 is below 25"}]


async def test_paginate_and_aggregate(api: str):
    state = await run_example("paginate-and-aggregate.json", [{"json": {"apiBase": api}}])
    assert state.status == ExecutionStatus.SUCCEEDED, state.error
    assert len(out(state, "Fetch products")) == len(PRODUCTS)  # 3 pages + 1 empty
    assert out(state, "Most valuable first") == [
        {"category": "garden", "count_sku": 2, "sum_price": 75.0, "max_price": 45.0},
        {"category": "tools", "count_sku": 2, "sum_price": 32.5, "max_price": 20.0},
    ]


async def test_retry_flaky_call_succeeds_after_retries_or_routes_the_failure(api: str):
    _Api.failures_left.update({"1001": 2, "1002": 10})
    ok = await run_example(
        "retry-flaky-call.json", [{"json": {"apiBase": api, "order": 1001, "amount": 40}}]
    )
    assert ok.status == ExecutionStatus.SUCCEEDED
    assert out(ok, "Receipt") == [{"charged": True, "chargeId": "ch_1001"}]
    assert ok.runs["Charge"][-1].tries == 3
    failed = await run_example(
        "retry-flaky-call.json", [{"json": {"apiBase": api, "order": 1002, "amount": 5}}]
    )
    assert failed.status == ExecutionStatus.SUCCEEDED
    [review] = out(failed, "Needs a human")
    assert review["queue"] == "payments-review"
    assert "503" in review["error"]
    assert "Receipt" not in failed.runs


async def test_loop_in_batches():
    state = await run_example("loop-in-batches.json")
    assert state.status == ExecutionStatus.SUCCEEDED, state.error
    assert len(state.runs["Score batch"]) == 3
    rows = out(state, "Collect")[0]["rows"]
    assert [r["id"] for r in rows] == [1, 2, 3, 4, 5, 6, 7]
    assert [r["batchSize"] for r in rows] == [3, 3, 3, 3, 3, 3, 1]
    assert [r["label"] for r in rows] == [
        "minor",
        "minor",
        "major",
        "minor",
        "minor",
        "major",
        "major",
    ]


async def test_sub_workflow_fan_out():
    state = await run_example("sub-workflow-fan-out.json")
    assert state.status == ExecutionStatus.SUCCEEDED, state.error
    assert out(state, "By name") == [
        {"email": "ada@example.com", "name": "Ada Lovelace"},
        {"email": "grace@example.com", "name": "Grace Hopper"},
    ]


def test_n8n_bench_workflow_runs_unchanged_through_the_cli(tmp_path: Path):
    body = {
        "id": 1,
        "name": "widget",
        "qty": 3,
        "price": 19.5,
        "priority": "high",
        "tags": ["a", "b"],
    }
    (tmp_path / "in.json").write_text(json.dumps({"body": body}))
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "klikkflow.cli",
            "run",
            str(EXAMPLES / "n8n" / "bench-a.json"),
            "--input",
            str(tmp_path / "in.json"),
            "--json",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["status"] == "succeeded"
    [respond] = summary["nodes"]["Respond"]
    assert respond["outputs"]["main"] == [
        {
            "json": {"branch": "high", "id": 1, "name": "WIDGET", "total": 58.5, "tag_count": 2},
            "pairedItem": {"item": 0},
        }
    ]
    assert "Normal" not in summary["nodes"]


def test_an_invalid_workflow_file_lists_its_problems(tmp_path: Path):
    broken = json.loads((EXAMPLES / "loop-in-batches.json").read_text())
    broken["nodes"][2]["type"] = "doesNotExist"
    broken["connections"].append({"source": "Collect", "target": "Nowhere"})
    path = tmp_path / "broken.json"
    path.write_text(json.dumps(broken))
    result = subprocess.run(
        [sys.executable, "-m", "klikkflow.cli", "run", str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 2
    assert "nodes['Score batch'].type: unknown node type 'doesNotExist'" in result.stderr
    assert "connections[5].target: no node named 'Nowhere'" in result.stderr


async def test_orders_report():
    state = await run_example("orders-report.json")
    assert state.status == ExecutionStatus.SUCCEEDED, state.error
    # Replays dropped, refunds filtered (case-insensitively "paid"), times in Oslo.
    assert out(state, "Report") == [
        {
            "topOrders": ["o3", "o5", "o1"],
            "paidLocal": ["2026-11-24 09:15", "2026-11-24 17:45", "2026-11-24 23:30"],
        }
    ]
