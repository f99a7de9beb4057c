"""The NodeContext the runner hands a node: expressions, state, credentials, sub-workflows."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from klikkflow.engine.expressions import ExpressionEngine
    from klikkflow.engine.workflow import NodeSpec
    from klikkflow.nodes.base import Item

CredentialLoader = Callable[[str, str], Awaitable[dict[str, Any]]]  # (type, credential id)
SubWorkflowRunner = Callable[[str, list["Item"], bool], Awaitable["list[Item] | None"]]

log = logging.getLogger("klikkflow.nodes")


class MissingCredential(Exception):
    pass


async def _no_credentials(credential_type: str, credential_id: str) -> dict[str, Any]:
    raise MissingCredential(f"no credential store is configured (needed: {credential_type})")


async def _no_sub_workflows(workflow_id: str, items: list[Item], wait: bool) -> list[Item] | None:
    raise RuntimeError("sub-workflows need a workflow store (run through the platform)")


@dataclass
class RunContext:
    node: NodeSpec
    expressions: ExpressionEngine
    execution_id: str = "local"
    workflow_id: str | None = None
    workflow_name: str = ""
    run_index: int = 0
    timezone: str = "UTC"
    node_state: dict[str, Any] = field(default_factory=dict)
    resume_payload: Any = None
    clock: Callable[[], datetime] = lambda: datetime.now(UTC)
    credentials_loader: CredentialLoader = _no_credentials
    sub_workflows: SubWorkflowRunner = _no_sub_workflows
    log: logging.Logger = log
    # Per-execution settings for particular nodes, read as attributes
    # (e.g. `ssrf_policy` for HTTP Request, `sandbox_limits` for Code).
    extras: dict[str, Any] = field(default_factory=dict)

    def __getattr__(self, name: str) -> Any:
        try:
            return self.__dict__["extras"][name]
        except KeyError:
            raise AttributeError(name) from None

    def evaluate(self, value: Any, items: list[Item], *, path: str) -> list[Any]:
        return self.expressions.evaluate(
            value, items, node_name=self.node.name, parameter_path=path, run_index=self.run_index
        )

    def now(self) -> datetime:
        return self.clock()

    def state(self) -> dict[str, Any]:
        return self.node_state

    def resumed_with(self) -> Any:
        return self.resume_payload

    async def credential(self, credential_type: str) -> dict[str, Any]:
        ref = self.node.credentials.get(credential_type)
        if ref is None:
            raise MissingCredential(
                f'node "{self.node.name}" has no credential of type {credential_type}'
            )
        return await self.credentials_loader(credential_type, ref.id)

    async def execute_workflow(
        self, workflow_id: str, items: list[Item], *, wait: bool
    ) -> list[Item] | None:
        return await self.sub_workflows(workflow_id, items, wait)
