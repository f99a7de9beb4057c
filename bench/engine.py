"""Engine benchmark: per-node overhead, fan-out + merge, items/s through Set then If.

    .venv/bin/python bench/engine.py

Prints figures; targets on a 2-core machine: <= 50 us overhead per node on the chain,
>= 200k items/s through Set.
"""

from __future__ import annotations

import asyncio
import gc
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from klikkflow.engine.graph import compile_workflow  # noqa: E402
from klikkflow.engine.runner import Runner  # noqa: E402
from klikkflow.engine.workflow import Workflow  # noqa: E402
from klikkflow.nodes.registry import default_registry  # noqa: E402


def _workflow(nodes: list[dict], edges: list[tuple[str, str, str, str]]) -> Workflow:
    return Workflow.model_validate(
        {
            "name": "bench",
            "nodes": [{"id": str(i), **n} for i, n in enumerate(nodes)],
            "connections": [
                {"source": s, "sourceOutput": so, "target": t, "targetInput": ti}
                for s, so, t, ti in edges
            ],
        }
    )


def chain(n: int) -> Workflow:
    nodes = [{"name": "Start", "type": "manualTrigger"}]
    nodes += [{"name": f"N{i}", "type": "noOp"} for i in range(n)]
    names = [node["name"] for node in nodes]
    return _workflow(
        nodes, [(a, "main", b, "main") for a, b in zip(names, names[1:], strict=False)]
    )


def fan_out(width: int) -> Workflow:
    nodes = [
        {"name": "Start", "type": "manualTrigger"},
        {"name": "Merge", "type": "merge", "typeVersion": 3},
    ]
    nodes += [{"name": f"B{i}", "type": "noOp"} for i in range(width)]
    edges = [("Start", "main", f"B{i}", "main") for i in range(width)]
    edges += [(f"B{i}", "main", "Merge", "input1" if i % 2 else "input2") for i in range(width)]
    return _workflow(nodes, edges)


def set_then_if() -> Workflow:
    assign = [
        {"id": "a", "name": "total", "type": "number", "value": "={{ $json.qty * $json.price }}"},
        {"id": "b", "name": "label", "type": "string", "value": "static"},
    ]
    condition = {
        "options": {
            "caseSensitive": True,
            "leftValue": "",
            "typeValidation": "strict",
            "version": 2,
        },
        "combinator": "and",
        "conditions": [
            {
                "id": "c",
                "leftValue": "={{ $json.total }}",
                "rightValue": 100,
                "operator": {"type": "number", "operation": "gt"},
            }
        ],
    }
    return _workflow(
        [
            {"name": "Start", "type": "manualTrigger"},
            {
                "name": "Set",
                "type": "set",
                "typeVersion": 3.4,
                "parameters": {
                    "mode": "manual",
                    "includeOtherFields": True,
                    "options": {},
                    "assignments": {"assignments": assign},
                },
            },
            {
                "name": "If",
                "type": "if",
                "typeVersion": 2.2,
                "parameters": {"conditions": condition, "options": {}},
            },
        ],
        [("Start", "main", "Set", "main"), ("Set", "main", "If", "main")],
    )


def set_only() -> Workflow:
    workflow = set_then_if()
    return workflow.model_copy(
        update={"nodes": workflow.nodes[:2], "connections": workflow.connections[:1]}
    )


async def timed(workflow: Workflow, items: list[dict], repeat: int) -> float:
    graph = compile_workflow(workflow, default_registry())
    best = float("inf")
    for _ in range(repeat):
        runner = Runner(graph)
        gc.collect()
        started = time.perf_counter()
        state = await runner.run(items)
        best = min(best, time.perf_counter() - started)
        assert state.status.value == "succeeded", state.error
        runner.close()
    return best


async def main() -> None:
    n = 1000
    seconds = await timed(chain(n), [{"json": {"n": 1}}], 5)
    print(
        f"linear chain of {n} No Op nodes: {seconds * 1000:.1f} ms, "
        f"{seconds / (n + 1) * 1e6:.1f} us per node"
    )
    width = 100
    seconds = await timed(fan_out(width), [{"json": {"n": 1}}], 5)
    print(
        f"fan-out {width} wide + merge: {seconds * 1000:.1f} ms, "
        f"{seconds / (width + 2) * 1e6:.1f} us per node"
    )
    count = 100_000
    items = [{"json": {"qty": i % 7, "price": 19.5, "name": f"item {i}"}} for i in range(count)]
    seconds = await timed(set_only(), items, 3)
    print(f"Set on {count} items: {seconds:.2f} s, {count / seconds:,.0f} items/s")
    seconds = await timed(set_then_if(), items, 3)
    print(f"Set then If on {count} items: {seconds:.2f} s, {count / seconds:,.0f} items/s")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak memory (max RSS of this process): {peak:.0f} MB")


if __name__ == "__main__":
    asyncio.run(main())
