"""Executions: records, the event log and its live Redis stream.

Until the engine issue lands, a worker moves an execution queued -> running ->
succeeded without running nodes; the plumbing (job, events, stream, subscription)
is the real one.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime

from arq.connections import ArqRedis
from redis.asyncio import Redis

from klikkflow.kit.auth import Viewer
from klikkflow.kit.permissions import require
from subgraphs.executions.models import (
    TERMINAL,
    ExecutionDocument,
    ExecutionEventDocument,
    ExecutionStatus,
    now,
)
from subgraphs.executions.repository import repository
from subgraphs.workflows.service import workflow as workflow_service

RUN_EXECUTION = "executions.run"  # arq job name; the job id is the execution id
STREAM_MAXLEN = 10_000
FOLLOW_BLOCK_MS = 5_000
MAX_PAGE = 100


def stream_key(execution_id: str) -> str:
    return f"klikkflow:execution:{execution_id}:events"


class WorkflowNotFound(Exception):
    def __init__(self, workflow_id: str) -> None:
        super().__init__(f"workflow {workflow_id} not found")
        self.workflow_id = workflow_id


@dataclass(frozen=True)
class Event:
    """One state change as it travels on the stream; `cursor` is its stream id."""

    cursor: str
    execution_id: str
    seq: int
    type: str
    status: ExecutionStatus
    at: datetime


class ExecutionService:
    async def create(self, viewer: Viewer, workflow_id: str) -> ExecutionDocument:
        require(viewer, "workflow.run")
        workflow = await workflow_service.get(viewer, workflow_id)
        if workflow is None:
            raise WorkflowNotFound(workflow_id)
        execution = ExecutionDocument(
            organization_id=workflow.organization_id,
            workflow_id=workflow.id,
            workflow_version=workflow.version,
        )
        await execution.insert()
        return execution

    async def submit(
        self, viewer: Viewer, workflow_id: str, redis: Redis, queue: ArqRedis
    ) -> ExecutionDocument:
        """Record a queued execution, then publish its first event, then enqueue its job
        (in that order, so a worker never sees a job for an execution not yet saved)."""
        execution = await self.create(viewer, workflow_id)
        await self.record(redis, execution, ExecutionStatus.QUEUED)
        await queue.enqueue_job(RUN_EXECUTION, str(execution.id), _job_id=str(execution.id))
        return execution

    async def get(self, viewer: Viewer, execution_id: str) -> ExecutionDocument | None:
        return (await repository.by_ids(viewer, [execution_id])).get(execution_id)

    async def get_many(self, viewer: Viewer, ids: list[str]) -> list[ExecutionDocument | None]:
        found = await repository.by_ids(viewer, ids)
        return [found.get(i) for i in ids]

    async def recent(
        self, viewer: Viewer, workflow_id: str | None, first: int
    ) -> list[ExecutionDocument]:
        return await repository.recent(viewer, workflow_id, max(1, min(first, MAX_PAGE)))

    async def record(
        self, redis: Redis, execution: ExecutionDocument, status: ExecutionStatus
    ) -> Event:
        """Move an execution to `status`: save it, append the event, then publish it."""
        assert execution.id is not None
        execution.status = status
        if status == ExecutionStatus.RUNNING and execution.started_at is None:
            execution.started_at = now()
        if status in TERMINAL:
            execution.finished_at = now()
        await execution.save()
        event = ExecutionEventDocument(
            execution_id=execution.id,
            organization_id=execution.organization_id,
            seq=await repository.last_seq(execution.id) + 1,
            type=f"execution.{status.value}",
            status=status,
        )
        await event.insert()
        cursor = await redis.xadd(
            stream_key(str(execution.id)),
            {
                "seq": event.seq,
                "type": event.type,
                "status": status.value,
                "at": event.at.isoformat(),
            },
            maxlen=STREAM_MAXLEN,
            approximate=True,
        )
        return Event(cursor, str(execution.id), event.seq, event.type, status, event.at)

    async def run_placeholder(self, redis: Redis, execution_id: str) -> ExecutionStatus | None:
        """The worker's job body until the engine lands. Idempotent: arq may run it twice."""
        execution = await repository.by_id_unscoped(execution_id)
        if execution is None or execution.status in TERMINAL:
            return execution.status if execution else None
        if execution.status != ExecutionStatus.RUNNING:
            await self.record(redis, execution, ExecutionStatus.RUNNING)
        await self.record(redis, execution, ExecutionStatus.SUCCEEDED)
        return execution.status

    async def follow(
        self, redis: Redis, execution_id: str, after: str | None
    ) -> AsyncIterator[Event]:
        """Events of one execution from the stream, replaying those after `after`, until
        a terminal one. The caller has checked the viewer may see the execution."""
        cursor = after or "0-0"
        while True:
            batches = await redis.xread({stream_key(execution_id): cursor}, block=FOLLOW_BLOCK_MS)
            for _, entries in batches or []:
                for entry_id, fields in entries:
                    cursor = entry_id
                    event = _event_from_stream(execution_id, entry_id, fields)
                    yield event
                    if event.status in TERMINAL:
                        return


def _event_from_stream(execution_id: str, entry_id: str, fields: dict[str, str]) -> Event:
    return Event(
        cursor=entry_id,
        execution_id=execution_id,
        seq=int(fields["seq"]),
        type=fields["type"],
        status=ExecutionStatus(fields["status"]),
        at=datetime.fromisoformat(fields["at"]),
    )


execution = ExecutionService()
