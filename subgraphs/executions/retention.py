"""Retention: finished executions (and their logs) older than the age limit, or beyond
the newest N of their workflow, are deleted by the workers' hourly sweep. Unfinished
executions are never touched."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from bson import ObjectId

from subgraphs.executions.models import TERMINAL, ExecutionDocument, ExecutionLogDocument, now

BATCH = 1_000
FINISHED = [s.value for s in TERMINAL]


async def _delete(query: dict[str, Any]) -> int:
    """Delete the finished executions matching `query`, a batch at a time, logs first."""
    collection = ExecutionDocument.get_pymongo_collection()
    deleted = 0
    while True:
        ids = [
            doc["_id"]
            async for doc in collection.find(
                {**query, "status": {"$in": FINISHED}}, {"_id": 1}
            ).limit(BATCH)
        ]
        if not ids:
            return deleted
        await ExecutionLogDocument.get_pymongo_collection().delete_many(
            {"execution_id": {"$in": ids}}
        )
        deleted += (await collection.delete_many({"_id": {"$in": ids}})).deleted_count


async def prune(max_age_days: int, keep_per_workflow: int) -> int:
    """Apply both limits (0 turns one off); how many executions were deleted."""
    deleted = 0
    if max_age_days > 0:
        cutoff = ObjectId.from_datetime(now() - timedelta(days=max_age_days))
        deleted += await _delete({"_id": {"$lt": cutoff}})
    if keep_per_workflow > 0:
        collection = ExecutionDocument.get_pymongo_collection()
        for workflow_id in await collection.distinct("workflow_id"):
            newest = collection.find({"workflow_id": workflow_id}, {"_id": 1}).sort("_id", -1)
            beyond = await newest.skip(keep_per_workflow).limit(1).to_list(1)
            if beyond:
                query = {"workflow_id": workflow_id, "_id": {"$lte": beyond[0]["_id"]}}
                deleted += await _delete(query)
    return deleted
