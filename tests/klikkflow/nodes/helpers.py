"""Run one node type the way the runner does: validated parameters, a real RunContext with
a real ExpressionEngine, items in on `main`."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from klikkflow.engine.context import RunContext
from klikkflow.engine.expressions import ExpressionEngine
from klikkflow.engine.workflow import NodeSpec
from klikkflow.nodes.base import Item, NodeType, Outputs

FIXED_NOW = datetime(2024, 3, 15, 14, 30, 45, 123000, tzinfo=UTC)


def items(*json: dict[str, Any]) -> list[Item]:
    return [{"json": j} for j in json]


def context(
    cls: type[NodeType],
    parameters: dict[str, Any],
    *,
    version: float | None = None,
    timezone: str = "UTC",
    clock: Callable[[], datetime] = lambda: FIXED_NOW,
) -> RunContext:
    name = cls.display_name
    spec = NodeSpec(
        id="node-1",
        name=name,
        type=cls.type,
        typeVersion=version if version is not None else cls.version,
        parameters=parameters,
    )
    engine = ExpressionEngine(
        execution_id="test-execution",
        workflow={"id": "wf-1", "name": "Test", "nodes": [{"name": name}]},
        timezone=timezone,
    )
    return RunContext(node=spec, expressions=engine, timezone=timezone, clock=clock)


async def run_node(
    cls: type[NodeType],
    parameters: dict[str, Any],
    inputs: list[Item],
    **options: Any,
) -> Outputs:
    """Validate `parameters` as the node's n8n JSON and run the node on `inputs`."""
    params = cls.Params.model_validate(parameters)
    ctx = context(cls, parameters, **options)
    result = await cls().run(ctx, params, {"main": inputs})
    assert isinstance(result, dict)
    return result


def jsons(output: list[Item]) -> list[dict[str, Any]]:
    return [entry["json"] for entry in output]


def paired(output: list[Item]) -> list[Any]:
    return [entry["pairedItem"] for entry in output]
