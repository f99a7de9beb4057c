from __future__ import annotations

from collections.abc import AsyncGenerator, Awaitable
from typing import Any

import strawberry

from klikkflow.kit.asgi import service_health
from klikkflow.kit.errors import InvalidInput, NotAllowed
from klikkflow.kit.graphql import (
    FEDERATION_VERSION,
    ForbiddenError,
    NotFoundError,
    PublicError,
    ServiceHealth,
    mask_errors,
    validation_error,
)
from subgraphs.executions.loaders import execution_loader
from subgraphs.executions.models import ExecutionDocument
from subgraphs.executions.models import ExecutionPriority as ExecutionPriorityModel
from subgraphs.executions.runs import runs
from subgraphs.executions.service import ExecutionNotFound, WorkflowNotFound
from subgraphs.executions.service import execution as execution_service
from subgraphs.executions.types import (
    CancelExecutionResult,
    CancelExecutionSuccess,
    DeleteExecutionResult,
    DeleteExecutionSuccess,
    Execution,
    ExecutionChange,
    ExecutionConnection,
    ExecutionEvent,
    ExecutionFilterInput,
    ExecutionIdInput,
    RetryExecutionResult,
    RunWorkflowInput,
    RunWorkflowResult,
    RunWorkflowSuccess,
    Workflow,
)


@strawberry.type
class Query:
    executions_health: ServiceHealth | None = strawberry.field(
        resolver=service_health, description="Health of the executions subgraph and its stores."
    )

    @strawberry.field(description="An execution of your organization, by id.")
    async def execution(self, info: strawberry.Info, id: strawberry.ID) -> Execution | None:
        found = await execution_loader(info.context).load(str(id))
        return Execution.from_model(found) if found else None

    @strawberry.field(
        description="Your organization's executions, newest first (Relay paging), filtered by "
        "workflow, status and creation time."
    )
    async def executions(
        self,
        info: strawberry.Info,
        first: int = 20,
        after: str | None = None,
        filter: ExecutionFilterInput | None = None,
    ) -> ExecutionConnection:
        viewer = info.context.require_viewer()
        domain = (filter or ExecutionFilterInput()).to_domain()
        found, more = await execution_service.page(viewer, domain, first, after)
        return ExecutionConnection.from_page(found, more)


@strawberry.type
class Mutation:
    @strawberry.mutation(description="Queue a run of a workflow.")
    async def run_workflow(
        self, info: strawberry.Info, input: RunWorkflowInput
    ) -> RunWorkflowResult:
        viewer = info.context.require_viewer()
        state = info.context.state
        try:
            created = await execution_service.submit(
                viewer,
                str(input.workflow_id),
                state.redis,
                state.queue,
                input.items,
                ExecutionPriorityModel(input.priority.value),
            )
        except InvalidInput as exc:
            return validation_error(exc, "input refused")
        except WorkflowNotFound as exc:
            return NotFoundError(message=str(exc), id=input.workflow_id)
        except NotAllowed as exc:
            return ForbiddenError(message=str(exc))
        return RunWorkflowSuccess(execution=Execution.from_model(created))

    @strawberry.mutation(description="Cancel a queued, waiting or running execution.")
    async def cancel_execution(
        self, info: strawberry.Info, input: ExecutionIdInput
    ) -> CancelExecutionResult:
        viewer = info.context.require_viewer()
        try:
            found = await execution_service.cancellable(viewer, str(input.id))
        except ExecutionNotFound as exc:
            return NotFoundError(message=str(exc), id=input.id)
        except InvalidInput as exc:
            return validation_error(exc, "cannot cancel")
        except NotAllowed as exc:
            return ForbiddenError(message=str(exc))
        await runs.cancel(info.context.state.redis, found, viewer.user_id)
        now = await execution_service.get(viewer, str(input.id))
        return CancelExecutionSuccess(execution=Execution.from_model(now or found))

    @strawberry.mutation(description="Delete a finished execution and its log.")
    async def delete_execution(
        self, info: strawberry.Info, input: ExecutionIdInput
    ) -> DeleteExecutionResult:
        viewer = info.context.require_viewer()
        try:
            gone = await execution_service.delete(viewer, str(input.id))
        except ExecutionNotFound as exc:
            return NotFoundError(message=str(exc), id=input.id)
        except InvalidInput as exc:
            return validation_error(exc, "cannot delete")
        except NotAllowed as exc:
            return ForbiddenError(message=str(exc))
        return DeleteExecutionSuccess(id=strawberry.ID(gone))

    @strawberry.mutation(
        description="Run the workflow again with the execution's start items, on its latest "
        "version."
    )
    async def rerun_execution(
        self, info: strawberry.Info, input: ExecutionIdInput
    ) -> RetryExecutionResult:
        state = info.context.state
        call = execution_service.rerun(
            info.context.require_viewer(), str(input.id), state.redis, state.queue
        )
        result: RetryExecutionResult = await _started(call, input.id)
        return result

    @strawberry.mutation(
        description="Go on with a failed execution from its failed node (a new execution on "
        "the same version; finished nodes keep their outputs and do not run again)."
    )
    async def retry_execution(
        self, info: strawberry.Info, input: ExecutionIdInput
    ) -> RetryExecutionResult:
        state = info.context.state
        call = execution_service.retry(
            info.context.require_viewer(), str(input.id), state.redis, state.queue
        )
        result: RetryExecutionResult = await _started(call, input.id)
        return result


async def _started(call: Awaitable[ExecutionDocument], execution_id: strawberry.ID) -> Any:
    try:
        return RunWorkflowSuccess(execution=Execution.from_model(await call))
    except (ExecutionNotFound, WorkflowNotFound) as exc:
        return NotFoundError(message=str(exc), id=execution_id)
    except InvalidInput as exc:
        return validation_error(exc, "cannot start")
    except NotAllowed as exc:
        return ForbiddenError(message=str(exc))


@strawberry.type
class Subscription:
    @strawberry.subscription(
        description="Live events of one execution: replays the log after `after`, then follows "
        "it until the execution finishes. A finished execution's live stream is kept a minute; "
        "later its log replays from the database with cursors `0-<seq>` (after an older "
        "cursor, the whole log: `seq` tells which events were seen)."
    )
    async def execution_events(
        self, info: strawberry.Info, execution_id: strawberry.ID, after: str | None = None
    ) -> AsyncGenerator[ExecutionEvent, None]:
        viewer = info.context.require_viewer()
        execution = await execution_service.get(viewer, str(execution_id))
        if execution is None:
            raise PublicError(f"execution {execution_id} not found")
        redis = info.context.state.redis
        async for event in execution_service.follow(redis, execution, after):
            yield ExecutionEvent.from_event(event)

    @strawberry.subscription(
        description="Status changes of your organization's executions (of one workflow, or "
        "all): from now on, or replayed after the cursor `after`. It does not end."
    )
    async def executions_changed(
        self,
        info: strawberry.Info,
        workflow_id: strawberry.ID | None = None,
        after: str | None = None,
    ) -> AsyncGenerator[ExecutionChange, None]:
        viewer = info.context.require_viewer()
        redis = info.context.state.redis
        wanted = str(workflow_id) if workflow_id else None
        async for change in execution_service.changes(redis, viewer, wanted, after):
            yield ExecutionChange.from_change(change)


schema = strawberry.federation.Schema(
    query=Query,
    mutation=Mutation,
    subscription=Subscription,
    types=[Execution, Workflow],
    federation_version=FEDERATION_VERSION,
    extensions=[mask_errors],
)
