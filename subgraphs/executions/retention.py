"""Retention: finished executions (and their logs) older than the age limit, or beyond the
newest N of their workflow, are deleted by the workers' hourly sweep. Unfinished
executions are never touched.

Every query names an organization, a workflow and a status or a window of ids, which an
index answers exactly: the embedded store reads every document an index range holds
(then sorts or limits what it read), so a query on a status alone, or sorted over a
workflow's whole history, would read millions of executions every hour."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from bson import ObjectId

from subgraphs.executions.models import (
    TERMINAL,
    ExecutionDocument,
    ExecutionLogDocument,
    ExecutionStatus,
    now,
)
from subgraphs.executions.repository import id_windows
from subgraphs.workflows.models import WorkflowDocument

BATCH = 1_000
FINISHED = [s.value for s in TERMINAL]
EVERY = [s.value for s in ExecutionStatus]


async def _workflows() -> list[tuple[ObjectId, ObjectId]]:
    """(organization, workflow) of every workflow: workflows are archived, never deleted."""
    found = WorkflowDocument.get_pymongo_collection().find({}, {"organization_id": 1})
    return [(doc["organization_id"], doc["_id"]) async for doc in found]


async def _ids(query: dict[str, Any], statuses: list[str] = FINISHED) -> list[ObjectId]:
    """The ids of the executions matching `query` in `statuses` (finished ones by
    default), a status at a time: every index of executions names one."""
    collection = ExecutionDocument.get_pymongo_collection()
    return [
        doc["_id"]
        for status in statuses
        async for doc in collection.find({**query, "status": status}, {"_id": 1})
    ]


async def _delete(ids: list[ObjectId]) -> int:
    """Delete these executions, a batch at a time, their logs first."""
    executions = ExecutionDocument.get_pymongo_collection()
    logs = ExecutionLogDocument.get_pymongo_collection()
    deleted = 0
    for start in range(0, len(ids), BATCH):
        batch = ids[start : start + BATCH]
        await logs.delete_many({"execution_id": {"$in": batch}})
        deleted += (await executions.delete_many({"_id": {"$in": batch}})).deleted_count
    return deleted


async def _newest_beyond(workflow: dict[str, Any], keep: int) -> ObjectId | None:
    """The newest execution of a workflow beyond its newest `keep`, or None: counted in
    windows of ids back from now (as history pages look), so the store reads about as
    many ids as the workflow keeps, not all of them."""
    seen = 0
    for ids in id_windows(None):
        found = await _ids({**workflow, "_id": ids} if ids else workflow, EVERY)
        if seen + len(found) > keep:
            return sorted(found, reverse=True)[keep - seen]
        seen += len(found)
    return None


async def prune(max_age_days: int, keep_per_workflow: int) -> int:
    """Apply both limits (0 turns one off); how many executions were deleted."""
    deleted = 0
    for organization_id, workflow_id in await _workflows():
        workflow = {"organization_id": organization_id, "workflow_id": workflow_id}
        if max_age_days > 0:
            cutoff = ObjectId.from_datetime(now() - timedelta(days=max_age_days))
            deleted += await _delete(await _ids({**workflow, "_id": {"$lt": cutoff}}))
        if keep_per_workflow > 0:
            beyond = await _newest_beyond(workflow, keep_per_workflow)
            if beyond is not None:
                deleted += await _delete(await _ids({**workflow, "_id": {"$lte": beyond}}))
    return deleted
