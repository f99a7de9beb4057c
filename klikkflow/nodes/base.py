"""The one Node protocol every node type implements, and what a node sees when it runs.

A node type is a class: a typed parameter model (pydantic), a version, ports, and
`async def run(ctx, inputs) -> outputs`. Parameters hold raw values, where any string may
be an n8n expression (`{{ ... }}`); a node asks `ctx.evaluate(value, items)` for the
per-item values of a parameter, the way n8n nodes call getNodeParameter(name, itemIndex).
"""

from __future__ import annotations

import builtins
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

from pydantic import BaseModel, ConfigDict

if TYPE_CHECKING:
    import logging

    from klikkflow.engine.workflow import NodeSpec

Item = dict[str, Any]  # {"json": {...}, "binary"?: {...}, "pairedItem"?: {"item": int}}
Inputs = dict[str, list[Item]]  # input port -> items
Outputs = dict[str, list[Item]]  # output port -> items

MAIN = "main"


def item(json: dict[str, Any], paired: int | None = None) -> Item:
    made: Item = {"json": json}
    if paired is not None:
        made["pairedItem"] = {"item": paired}
    return made


class Parameters(BaseModel):
    """Base of every parameter model: unknown keys are refused, names are n8n's camelCase."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class NoParameters(Parameters):
    pass


class NodeError(Exception):
    """A node's own, expected failure; `item_index` names the item it happened on."""

    def __init__(
        self, message: str, *, item_index: int | None = None, description: str = ""
    ) -> None:
        super().__init__(message)
        self.item_index = item_index
        self.description = description


@dataclass(frozen=True)
class Wait:
    """Returned by a node that parks the execution: until a time, until resumed, or both
    (whichever comes first). Nothing sleeps in memory; the runner records it and stops."""

    until: datetime | None = None
    resumable: bool = False
    # What the node outputs when the wait ends (its input items, usually).
    outputs: Outputs = field(default_factory=dict)


class NodeContext(Protocol):
    """What the runner gives a node while it runs."""

    node: NodeSpec
    execution_id: str
    workflow_id: str | None
    workflow_name: str
    run_index: int
    timezone: str
    log: logging.Logger

    def evaluate(self, value: Any, items: list[Item], *, path: str) -> list[Any]:
        """Per-item values of one parameter (nested values resolved); static values repeat."""
        ...

    def now(self) -> datetime: ...

    def state(self) -> dict[str, Any]:
        """This node's own JSON state, kept across its runs in one execution (loops)."""
        ...

    def resumed_with(self) -> Any:
        """The payload this node was resumed with after a Wait, else None."""
        ...

    async def credential(self, credential_type: str) -> dict[str, Any]:
        """Decrypted values of the credential the node references for that type."""
        ...

    async def execute_workflow(
        self, workflow_id: str, items: list[Item], *, wait: bool
    ) -> list[Item] | None:
        """Run another workflow with these items (its Execute Workflow Trigger gets them)."""
        ...


class NodeType(ABC):
    """A node type. Subclasses set the class attributes and implement `run`."""

    type: ClassVar[str]
    version: ClassVar[float] = 1
    display_name: ClassVar[str]
    description: ClassVar[str]
    category: ClassVar[str]  # trigger | flow | data | transform | core | ai
    Params: ClassVar[builtins.type[Parameters]] = NoParameters
    inputs: ClassVar[tuple[str, ...]] = (MAIN,)
    outputs: ClassVar[tuple[str, ...]] = (MAIN,)
    credential_types: ClassVar[tuple[str, ...]] = ()
    is_trigger: ClassVar[bool] = False
    # Loop nodes may sit on a cycle; every other cycle is refused before a run.
    may_loop: ClassVar[bool] = False
    # Multi-input nodes wait until every input is settled (no more data can arrive).
    waits_for_all_inputs: ClassVar[bool] = False
    # A pure node only computes its outputs from its inputs and parameters: running it
    # again has no effect outside the execution, so its result need not be written to
    # the log before the next node starts (a crash may recompute it). Nodes with effects
    # (requests, code, sub-workflows, responses) are checkpointed as soon as they finish
    # and never run twice once finished.
    pure: ClassVar[bool] = False

    @classmethod
    def versions(cls) -> tuple[float, ...]:
        """Every typeVersion this class runs (n8n workflows carry e.g. Set 3.4)."""
        return cls.accepted_versions or (cls.version,)

    accepted_versions: ClassVar[tuple[float, ...]] = ()

    def output_ports(self, params: Parameters) -> tuple[str, ...]:
        """The output ports for these parameters (Switch has one per rule)."""
        return self.outputs

    @abstractmethod
    async def run(self, ctx: NodeContext, params: Parameters, inputs: Inputs) -> Outputs | Wait:
        """Turn input items into output items per port."""
