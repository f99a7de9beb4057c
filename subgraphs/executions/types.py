from __future__ import annotations

from datetime import datetime
from typing import Annotated

import strawberry

from klikkflow.kit.graphql import ForbiddenError, NotFoundError
from subgraphs.executions.models import ExecutionDocument
from subgraphs.executions.models import ExecutionStatus as ExecutionStatusModel
from subgraphs.executions.service import Event

ExecutionStatus = strawberry.enum(ExecutionStatusModel, description="Where an execution stands.")


@strawberry.federation.type(keys=["id"], description="A workflow, owned by the workflows subgraph.")
class Workflow:
    id: strawberry.ID = strawberry.field(description="The workflow's id.")

    @classmethod
    def resolve_reference(cls, id: strawberry.ID) -> Workflow:
        return cls(id=id)


@strawberry.federation.type(keys=["id"], description="One run of a workflow.")
class Execution:
    id: strawberry.ID = strawberry.field(description="Stable identifier.")
    workflow: Workflow = strawberry.field(description="The workflow that ran.")
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
            status=m.status,
            created_at=m.created_at,
            started_at=m.started_at,
            finished_at=m.finished_at,
        )

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

    @classmethod
    def from_event(cls, e: Event) -> ExecutionEvent:
        return cls(
            cursor=e.cursor,
            execution_id=strawberry.ID(e.execution_id),
            seq=e.seq,
            type=e.type,
            status=e.status,
            at=e.at,
        )


@strawberry.input(description="Run a workflow now.")
class RunWorkflowInput:
    workflow_id: strawberry.ID = strawberry.field(description="The workflow to run.")


@strawberry.type(description="The execution was queued.")
class RunWorkflowSuccess:
    execution: Execution = strawberry.field(description="The queued execution.")


RunWorkflowResult = Annotated[
    RunWorkflowSuccess | NotFoundError | ForbiddenError,
    strawberry.union("RunWorkflowResult", description="Outcome of runWorkflow."),
]
