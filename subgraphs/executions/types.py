from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

import strawberry
from strawberry.scalars import JSON

from klikkflow.kit.graphql import ForbiddenError, NotFoundError, PageInfo, ValidationError
from subgraphs.executions.models import ExecutionDocument
from subgraphs.executions.models import ExecutionPriority as ExecutionPriorityModel
from subgraphs.executions.models import ExecutionStatus as ExecutionStatusModel
from subgraphs.executions.repository import ExecutionFilter
from subgraphs.executions.service import Change, Event, NodeRunRecord

ExecutionStatus = strawberry.enum(ExecutionStatusModel, description="Where an execution stands.")
ExecutionPriority = strawberry.enum(
    ExecutionPriorityModel,
    description="HIGH runs before the normal executions queued in the last ten minutes.",
)


@strawberry.federation.type(keys=["id"], description="A workflow, owned by the workflows subgraph.")
class Workflow:
    id: strawberry.ID = strawberry.field(description="The workflow's id.")

    @classmethod
    def resolve_reference(cls, id: strawberry.ID) -> Workflow:
        return cls(id=id)


@strawberry.type(description="Why an execution or a node failed.")
class ExecutionError:
    message: str = strawberry.field(description="What went wrong.")
    node: str | None = strawberry.field(description="The node it happened in, if any.")
    type: str = strawberry.field(description="NodeError, ExpressionError, WorkflowError, ...")

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ExecutionError:
        return cls(message=d.get("message", ""), node=d.get("node"), type=d.get("type", ""))


DEFAULT_ITEMS = 100  # items shown per port unless asked for more


@strawberry.type(description="One run of one node.")
class NodeRun:
    node: str = strawberry.field(description="The node's name.")
    run_index: int = strawberry.field(description="0 for its first run (loops run nodes again).")
    status: str = strawberry.field(
        description="running, waiting, retrying, succeeded, failed or cancelled."
    )
    tries: int = strawberry.field(description="Tries so far (retries and crash recovery).")
    started_at: datetime = strawberry.field(description="When its first try started.")
    finished_at: datetime | None = strawberry.field(description="When it ended.")
    error: ExecutionError | None = strawberry.field(description="Its error, if it failed.")
    record: strawberry.Private[NodeRunRecord]

    @strawberry.field(
        description="Input items per port: at most `maxItems` of each (see `itemCounts`)."
    )
    def inputs(self, max_items: int = DEFAULT_ITEMS) -> JSON | None:
        return _shown(self.record.inputs, max_items)

    @strawberry.field(
        description="Output items per port: at most `maxItems` of each (see `itemCounts`)."
    )
    def outputs(self, max_items: int = DEFAULT_ITEMS) -> JSON | None:
        return _shown(self.record.outputs, max_items)

    @strawberry.field(
        description="How many items each port really had, inputs and outputs: compare with "
        "what `inputs` and `outputs` show to see that they were cut."
    )
    def item_counts(self) -> JSON:
        return {
            "inputs": {port: len(items) for port, items in (self.record.inputs or {}).items()},
            "outputs": {port: len(items) for port, items in (self.record.outputs or {}).items()},
        }

    @strawberry.field(description="Whether `inputs` or `outputs` leave items out.")
    def truncated(self, max_items: int = DEFAULT_ITEMS) -> bool:
        ports = [*(self.record.inputs or {}).values(), *(self.record.outputs or {}).values()]
        return any(len(items) > max_items for items in ports)

    @classmethod
    def from_record(cls, r: NodeRunRecord) -> NodeRun:
        return cls(
            node=r.node,
            run_index=r.run_index,
            status=r.status,
            tries=r.tries,
            started_at=r.started_at,
            finished_at=r.finished_at,
            error=ExecutionError.from_dict(r.error) if r.error else None,
            record=r,
        )


def _shown(ports: dict[str, Any] | None, max_items: int) -> dict[str, Any] | None:
    if ports is None:
        return None
    keep = max(0, max_items)
    return {port: items[:keep] for port, items in ports.items()}


@strawberry.federation.type(keys=["id"], description="One run of a workflow.")
class Execution:
    id: strawberry.ID = strawberry.field(description="Stable identifier.")
    workflow: Workflow = strawberry.field(description="The workflow that ran.")
    mode: str = strawberry.field(
        description="manual, webhook, webhook-test, schedule, sub-workflow, retry or error."
    )
    parent_id: strawberry.ID | None = strawberry.field(
        description="For a sub-workflow's execution: the execution whose Execute Workflow node "
        "ran it."
    )
    error: ExecutionError | None = strawberry.field(description="Why it failed, if it did.")
    model: strawberry.Private[ExecutionDocument]
    workflow_version: int | None = strawberry.field(
        description="The workflow version it ran (manual runs: the latest saved; triggers: "
        "the published one)."
    )
    status: ExecutionStatus = strawberry.field(description="Current status.")
    created_at: datetime = strawberry.field(description="When it was queued.")
    started_at: datetime | None = strawberry.field(description="When a worker started it.")
    finished_at: datetime | None = strawberry.field(description="When it reached a final status.")

    @classmethod
    def from_model(cls, m: ExecutionDocument) -> Execution:
        return cls(
            id=strawberry.ID(str(m.id)),
            workflow=Workflow(id=strawberry.ID(str(m.workflow_id))),
            workflow_version=m.workflow_version,
            parent_id=strawberry.ID(str(m.parent_id)) if m.parent_id else None,
            mode=m.mode,
            error=ExecutionError.from_dict(m.error) if m.error else None,
            model=m,
            status=m.status,
            created_at=m.created_at,
            started_at=m.started_at,
            finished_at=m.finished_at,
        )

    @strawberry.field(
        description="While a Wait node waits to be resumed by a call: the path on the executions "
        "service to call (any method; the request becomes the Wait node's output)."
    )
    def resume_path(self, info: strawberry.Info) -> str | None:
        from subgraphs.executions.service import resume_path

        if self.model.status != ExecutionStatusModel.WAITING:
            return None
        return resume_path(info.context.settings.secret_key, str(self.model.id))

    @strawberry.field(description="Every node run, in the order they started, with data.")
    async def nodes(self) -> list[NodeRun]:
        from subgraphs.executions.service import execution as execution_service

        return [NodeRun.from_record(r) for r in await execution_service.node_runs(self.model)]

    @classmethod
    async def resolve_reference(cls, info: strawberry.Info, id: strawberry.ID) -> Execution | None:
        from subgraphs.executions.loaders import execution_loader

        found = await execution_loader(info.context).load(str(id))
        return cls.from_model(found) if found else None


@strawberry.type(description="A state change of an execution.")
class ExecutionEvent:
    cursor: str = strawberry.field(description="Pass as `after` to resume after this event.")
    execution_id: strawberry.ID = strawberry.field(description="The execution it belongs to.")
    seq: int = strawberry.field(description="Position in the execution's event log, from 1.")
    type: str = strawberry.field(description="What happened, e.g. execution.running.")
    status: ExecutionStatus = strawberry.field(description="The execution's status after it.")
    at: datetime = strawberry.field(description="When it happened.")
    node: str | None = strawberry.field(description="The node it is about, for node events.")

    @classmethod
    def from_event(cls, e: Event) -> ExecutionEvent:
        return cls(
            cursor=e.cursor,
            execution_id=strawberry.ID(e.execution_id),
            seq=e.seq,
            type=e.type,
            status=e.status,
            at=e.at,
            node=e.node,
        )


@strawberry.input(description="Run a workflow now.")
class RunWorkflowInput:
    workflow_id: strawberry.ID = strawberry.field(description="The workflow to run.")
    items: list[JSON] | None = strawberry.field(
        default=None,
        description="Items for its start node: `{json: {...}}` or plain objects (at most 1,000).",
    )
    priority: ExecutionPriority = strawberry.field(  # type: ignore[valid-type]
        default=ExecutionPriorityModel.NORMAL, description="Its place in the queue."
    )


@strawberry.type(description="The execution was queued.")
class RunWorkflowSuccess:
    execution: Execution = strawberry.field(description="The queued execution.")


RunWorkflowResult = Annotated[
    RunWorkflowSuccess | ValidationError | NotFoundError | ForbiddenError,
    strawberry.union("RunWorkflowResult", description="Outcome of runWorkflow."),
]


@strawberry.input(description="An execution by id.")
class ExecutionIdInput:
    id: strawberry.ID = strawberry.field(description="The execution.")


@strawberry.type(description="The execution is cancelled, or is being stopped by its worker.")
class CancelExecutionSuccess:
    execution: Execution = strawberry.field(
        description="The execution: CANCELLED, or still RUNNING for a moment while its "
        "worker stops it."
    )


CancelExecutionResult = Annotated[
    CancelExecutionSuccess | ValidationError | NotFoundError | ForbiddenError,
    strawberry.union("CancelExecutionResult", description="Outcome of cancelExecution."),
]


@strawberry.type(description="An execution and its cursor.")
class ExecutionEdge:
    cursor: str = strawberry.field(description="Pass as `after` to continue after it.")
    node: Execution = strawberry.field(description="The execution.")


@strawberry.type(description="A page of executions, newest first.")
class ExecutionConnection:
    edges: list[ExecutionEdge] = strawberry.field(description="The executions of this page.")
    page_info: PageInfo = strawberry.field(description="Where this page ends.")

    @classmethod
    def from_page(cls, found: list[ExecutionDocument], more: bool) -> ExecutionConnection:
        edges = [ExecutionEdge(cursor=str(e.id), node=Execution.from_model(e)) for e in found]
        end = edges[-1].cursor if edges else None
        return cls(edges=edges, page_info=PageInfo(has_next_page=more, end_cursor=end))


@strawberry.input(description="Which executions to list.")
class ExecutionFilterInput:
    workflow_id: strawberry.ID | None = strawberry.field(
        default=None, description="Only this workflow's executions."
    )
    statuses: list[ExecutionStatus] = strawberry.field(  # type: ignore[valid-type]
        default_factory=list, description="Only executions in one of these statuses."
    )
    since: datetime | None = strawberry.field(
        default=None, description="Only executions created at or after this time."
    )
    until: datetime | None = strawberry.field(
        default=None, description="Only executions created before this time."
    )

    def to_domain(self) -> ExecutionFilter:
        return ExecutionFilter(
            workflow_id=str(self.workflow_id) if self.workflow_id else None,
            statuses=tuple(ExecutionStatusModel(s.value) for s in self.statuses),
            since=self.since,
            until=self.until,
        )


@strawberry.type(description="The execution and its log were deleted.")
class DeleteExecutionSuccess:
    id: strawberry.ID = strawberry.field(description="The deleted execution's id.")


DeleteExecutionResult = Annotated[
    DeleteExecutionSuccess | ValidationError | NotFoundError | ForbiddenError,
    strawberry.union("DeleteExecutionResult", description="Outcome of deleteExecution."),
]
RetryExecutionResult = Annotated[
    RunWorkflowSuccess | ValidationError | NotFoundError | ForbiddenError,
    strawberry.union(
        "RetryExecutionResult", description="Outcome of rerunExecution and retryExecution."
    ),
]


@strawberry.type(description="An execution changed status.")
class ExecutionChange:
    cursor: str = strawberry.field(description="Pass as `after` to resume after this change.")
    execution_id: strawberry.ID = strawberry.field(description="The execution.")
    workflow_id: strawberry.ID = strawberry.field(description="Its workflow.")
    status: ExecutionStatus = strawberry.field(description="Its status now.")
    at: datetime = strawberry.field(description="When it changed.")

    @classmethod
    def from_change(cls, c: Change) -> ExecutionChange:
        return cls(
            cursor=c.cursor,
            execution_id=strawberry.ID(c.execution_id),
            workflow_id=strawberry.ID(c.workflow_id),
            status=c.status,
            at=c.at,
        )
