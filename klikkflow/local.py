"""`klikkflow run` and `klikkflow nodes list`: the engine in this process, no servers."""

from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Any, TextIO

from klikkflow.engine import n8n
from klikkflow.engine.context import SubWorkflowRunner
from klikkflow.engine.graph import InvalidWorkflow, compile_workflow
from klikkflow.engine.runner import NoStartNode, Runner
from klikkflow.engine.state import Event, State, last_output
from klikkflow.engine.workflow import Workflow
from klikkflow.nodes.base import NodeError
from klikkflow.nodes.http import SsrfPolicy
from klikkflow.nodes.registry import NodeRegistry, RegistryError, default_registry


def load_workflow(path: Path, registry: NodeRegistry) -> Workflow:
    document = json.loads(path.read_text())
    if n8n.is_n8n(document):
        return n8n.from_n8n(document, registry)
    return Workflow.model_validate(document)


def load_items(path: Path | None) -> list[dict[str, Any]]:
    if path is None:
        return []
    data = json.loads(path.read_text())
    rows = data if isinstance(data, list) else [data]
    return [
        row if set(row) <= {"json", "binary", "pairedItem"} and "json" in row else {"json": row}
        for row in rows
    ]


class _Printer:
    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.started: dict[str, float] = {}

    async def __call__(self, event: Event) -> None:
        node = getattr(event, "node", None)
        if event.type == "node.started" and node:
            self.started[node] = time.perf_counter()
            return
        took = ""
        if node in self.started:
            took = f" {1000 * (time.perf_counter() - self.started.pop(node)):.1f} ms"
        if event.type == "node.succeeded":
            count = sum(len(items) for items in event.outputs.values())
            print(f"✓ {node}{took}: {count} item(s)", file=self.out)
            for port, items in event.outputs.items():
                for entry in items[:20]:
                    print(
                        f"    {port}: {json.dumps(entry.get('json'), default=str)}", file=self.out
                    )
        elif event.type == "node.failed":
            retry = f", retrying at {event.retry_at:%H:%M:%S}" if event.retry_at else ""
            print(f"✗ {node}{took}: {event.error.message}{retry}", file=self.out)
        elif event.type == "node.waiting":
            print(f"… {node}: waiting until {event.until or 'resumed'}", file=self.out)
        elif event.type == "execution.finished":
            print(f"execution {event.status.value}", file=self.out)


def _summary(state: State) -> dict[str, Any]:
    return {
        "status": state.status.value,
        "error": state.error.model_dump() if state.error else None,
        "nodes": {
            name: [
                {
                    "status": run.status.value,
                    "tries": run.tries,
                    "ms": round((run.finished_at - run.started_at).total_seconds() * 1000, 3)
                    if run.finished_at
                    else None,
                    "outputs": run.outputs,
                    "error": run.error.model_dump() if run.error else None,
                }
                for run in runs
            ]
            for name, runs in state.runs.items()
        },
    }


MAX_SUB_WORKFLOW_DEPTH = 10


def find_workflow_file(directory: Path, workflow_id: str) -> Path:
    """A sub-workflow, run from files: `<id>.json` beside the parent, or any JSON file
    there whose top-level "id" is the id."""
    direct = directory / f"{workflow_id}.json"
    if direct.exists():
        return direct
    for candidate in sorted(directory.glob("*.json")):
        try:
            if json.loads(candidate.read_text()).get("id") == workflow_id:
                return candidate
        except (ValueError, AttributeError):
            continue
    raise NodeError(f"no workflow with id {workflow_id!r} in {directory}")


def sub_workflow_runner(
    directory: Path, registry: NodeRegistry, extras: dict[str, Any], depth: int = 0
) -> SubWorkflowRunner:
    async def run_sub(workflow_id: str, items: list[dict[str, Any]], wait: bool) -> Any:
        if depth >= MAX_SUB_WORKFLOW_DEPTH:
            raise NodeError(f"sub-workflows nest deeper than {MAX_SUB_WORKFLOW_DEPTH} levels")
        graph = compile_workflow(
            load_workflow(find_workflow_file(directory, workflow_id), registry), registry
        )
        triggers = [
            n for n in graph.trigger_nodes() if graph.nodes[n].spec.type == "executeWorkflowTrigger"
        ]
        runner = Runner(
            graph,
            node_extras=extras,
            sub_workflows=sub_workflow_runner(directory, registry, extras, depth + 1),
        )
        try:
            state = await runner.run(items, start=triggers[0] if triggers else None)
        finally:
            runner.close()
        if state.status.value == "failed":
            reason = state.error.message if state.error else "unknown error"
            raise NodeError(f"sub-workflow {workflow_id} failed: {reason}")
        return last_output(state) if wait else None

    return run_sub


async def run_file(
    path: Path,
    items_path: Path | None,
    as_json: bool,
    start: str | None,
    allow_private_network: bool = False,
) -> int:
    registry = default_registry()
    try:
        workflow = load_workflow(path, registry)
        graph = compile_workflow(workflow, registry)
    except InvalidWorkflow as exc:
        print(f"{path}: the workflow is invalid:", file=sys.stderr)
        for problem in exc.problems:
            print(f"  {problem}", file=sys.stderr)
        return 2
    except (ValueError, n8n.UnsupportedNodes) as exc:
        print(f"{path}: {exc}", file=sys.stderr)
        return 2
    printer = _Printer(sys.stdout)
    extras: dict[str, Any] = {"ssrf_policy": SsrfPolicy(allow_private=allow_private_network)}
    runner = Runner(
        graph,
        on_event=_quiet if as_json else printer,
        node_extras=extras,
        sub_workflows=sub_workflow_runner(path.parent, registry, extras),
    )
    try:
        state = await runner.run(load_items(items_path), start=start)
    except NoStartNode as exc:
        print(f"{path}: {exc} (use --start)", file=sys.stderr)
        return 2
    finally:
        runner.close()
    if as_json:
        print(json.dumps(_summary(state), default=str, indent=2))
    return 0 if state.status.value in ("succeeded", "waiting") else 1


async def _quiet(event: Event) -> None:
    return None


def run(
    path: Path,
    items_path: Path | None,
    as_json: bool,
    start: str | None,
    allow_private_network: bool = False,
) -> int:
    return asyncio.run(run_file(path, items_path, as_json, start, allow_private_network))


def list_nodes(as_json: bool) -> int:
    try:
        registry = default_registry()
    except RegistryError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    rows: list[dict[str, Any]] = [
        {
            "type": t,
            "version": v,
            "name": cls.display_name,
            "category": cls.category,
            "description": cls.description,
            "module": cls.__module__,
        }
        for t, v, cls in registry.all()
    ]
    if as_json:
        print(json.dumps(rows, indent=2))
        return 0
    width = max(len(str(r["type"])) for r in rows)
    for r in rows:
        version = f"v{r['version']:g}"
        print(f"{str(r['type']).ljust(width)}  {version:<5} {r['category']:<9} {r['name']}")
    return 0
