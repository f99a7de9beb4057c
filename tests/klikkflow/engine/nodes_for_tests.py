"""Small node types for engine tests (registered like plugins would be)."""

from __future__ import annotations

import asyncio
from typing import ClassVar

from pydantic import Field

from klikkflow.nodes.base import MAIN, Inputs, NodeContext, NodeError, NodeType, Outputs, Parameters
from klikkflow.nodes.control import CONTROL_NODES
from klikkflow.nodes.registry import NodeRegistry
from klikkflow.nodes.triggers import TRIGGER_NODES


class EchoParams(Parameters):
    tag: str = ""
    delay_ms: int = Field(0, alias="delayMs")


class Echo(NodeType):
    """Passes items on, appending its tag to json.path (so tests see the route taken)."""

    type = "test.echo"
    display_name = "Echo"
    description = "Appends a tag to each item's path."
    category = "core"
    Params = EchoParams

    async def run(self, ctx: NodeContext, params: Parameters, inputs: Inputs) -> Outputs:
        assert isinstance(params, EchoParams)
        if params.delay_ms:
            await asyncio.sleep(params.delay_ms / 1000)
        tag = params.tag or ctx.node.name
        return {
            MAIN: [
                {"json": {**i["json"], "path": [*i["json"].get("path", []), tag]}}
                for i in inputs.get(MAIN, [])
            ]
        }


class Parity(NodeType):
    type = "test.parity"
    display_name = "Parity"
    description = "Routes items by json.n: even or odd."
    category = "flow"
    outputs = ("even", "odd")

    async def run(self, ctx: NodeContext, params: Parameters, inputs: Inputs) -> Outputs:
        items = inputs.get(MAIN, [])
        return {
            "even": [i for i in items if i["json"]["n"] % 2 == 0],
            "odd": [i for i in items if i["json"]["n"] % 2 == 1],
        }


class FlakyParams(Parameters):
    fail_times: int = Field(alias="failTimes")


class Flaky(NodeType):
    """Fails its first `failTimes` calls in each execution."""

    type = "test.flaky"
    display_name = "Flaky"
    description = "Fails a number of times, then echoes."
    category = "core"
    Params = FlakyParams
    calls: ClassVar[dict[str, int]] = {}

    async def run(self, ctx: NodeContext, params: Parameters, inputs: Inputs) -> Outputs:
        assert isinstance(params, FlakyParams)
        key = f"{ctx.execution_id}:{ctx.node.name}"
        Flaky.calls[key] = Flaky.calls.get(key, 0) + 1
        if Flaky.calls[key] <= params.fail_times:
            raise NodeError(f"flaky failure {Flaky.calls[key]}", item_index=0)
        return {MAIN: inputs.get(MAIN, [])}


class Boom(NodeType):
    type = "test.boom"
    display_name = "Boom"
    description = "Raises an unexpected exception."
    category = "core"

    async def run(self, ctx: NodeContext, params: Parameters, inputs: Inputs) -> Outputs:
        raise ZeroDivisionError("division by zero")


class Lingering(NodeType):
    """Goes on for a moment after it is cancelled."""

    type = "test.lingering"
    display_name = "Lingering"
    description = "Sleeps; once cancelled, sleeps a little more."
    category = "core"

    async def run(self, ctx: NodeContext, params: Parameters, inputs: Inputs) -> Outputs:
        try:
            await asyncio.sleep(5)
        except asyncio.CancelledError:
            await asyncio.sleep(0.2)
            raise
        return {MAIN: inputs.get(MAIN, [])}


def registry() -> NodeRegistry:
    reg = NodeRegistry()
    reg.register_all([*TRIGGER_NODES, *CONTROL_NODES, Echo, Parity, Flaky, Boom, Lingering])
    return reg
