"""Every execution query, scoped by the viewer's organization."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import bson
from beanie import PydanticObjectId
from beanie.odm.utils.dump import get_dict
from bson import CodecOptions, ObjectId

from klikkflow.kit.auth import Viewer
from klikkflow.kit.stores import object_id
from subgraphs.executions import writes
from subgraphs.executions.models import ExecutionDocument, ExecutionLogDocument, ExecutionStatus

_AS_READ: CodecOptions[dict[str, Any]] = CodecOptions(
    tz_aware=True, tzinfo=UTC
)  # as our MongoDB clients read
SNAPSHOT_MAX_BYTES = 64 * 1024  # a new execution its job carries (most webhook calls)
WINDOW_START = timedelta(minutes=1)  # history pages look this far back first
WINDOW_LAST = timedelta(days=4 * 365)  # beyond it, one last look at everything older


def id_windows(
    upper: ObjectId | None, floor: ObjectId | None = None
) -> Iterator[dict[str, ObjectId]]:
    """Conditions on `_id` for windows of ids going back in time from `upper` (now if
    None): a minute wide, then eightfold each time; the last one reaches down to `floor`
    (the oldest id wanted, None: all of them). A store that sorts what it fetched (as the
    embedded one does) thus reads about as many executions as a query needs."""
    width = WINDOW_START
    while True:
        top = upper.generation_time if upper is not None else datetime.now(UTC)
        lower: ObjectId | None = ObjectId.from_datetime(top - width)
        if width > WINDOW_LAST or (floor is not None and lower <= floor):
            lower = floor  # the last window: everything left
        ids: dict[str, ObjectId] = {}
        if lower is not None:
            ids["$gte"] = lower
        if upper is not None:
            ids["$lt"] = upper
        yield ids
        if lower is None or lower == floor:
            return
        upper, width = lower, width * 8


@dataclass(frozen=True)
class ExecutionFilter:
    workflow_id: str | None = None
    statuses: tuple[ExecutionStatus, ...] = ()
    since: datetime | None = None  # created at or after
    until: datetime | None = None  # created before


class ExecutionRepository:
    async def by_ids(self, viewer: Viewer, ids: Sequence[str]) -> dict[str, ExecutionDocument]:
        oids = [i for i in (object_id(x) for x in ids) if i is not None]
        org = object_id(viewer.organization_id)
        if not oids or org is None:
            return {}
        found = await ExecutionDocument.find(
            {"_id": {"$in": oids}, "organization_id": org}
        ).to_list()
        return {str(e.id): e for e in found}

    async def page(
        self, viewer: Viewer, filter: ExecutionFilter, after: str | None, limit: int
    ) -> list[ExecutionDocument]:
        """Newest first, keyset-paged by id (ids grow with time); nothing counts a whole
        collection. Each query names an organization, at most a workflow, one status and
        a range of ids, which an index answers exactly (a query per status wanted, all of
        them when the filter names none, merged). The range starts a minute wide below
        the cursor and grows eightfold until the page is full: a store that sorts what it
        fetched (as the embedded one does) thus fetches about as many executions as the
        page needs, not all of them."""
        org = object_id(viewer.organization_id)
        base: dict[str, Any] = {"organization_id": org}
        if filter.workflow_id is not None:
            base["workflow_id"] = object_id(filter.workflow_id)
        shapes = [{**base, "status": s.value} for s in filter.statuses or ExecutionStatus]
        upper: ObjectId | None = None
        if filter.until is not None:
            upper = ObjectId.from_datetime(filter.until)
        if after is not None:
            cursor = object_id(after)
            if cursor is None:
                return []
            upper = cursor if upper is None else min(upper, cursor)
        floor = ObjectId.from_datetime(filter.since) if filter.since is not None else None
        found: list[ExecutionDocument] = []
        for ids in id_windows(upper, floor):
            if len(found) >= limit:
                break
            wanted = limit - len(found)
            queries = [  # at once: the store answers them while the others travel
                ExecutionDocument.find({**shape, "_id": ids} if ids else shape)
                .sort("-_id")
                .limit(wanted)
                .to_list()
                for shape in shapes
            ]
            batch = [doc for docs in await asyncio.gather(*queries) for doc in docs]
            batch.sort(key=lambda e: e.id or ObjectId(), reverse=True)
            found.extend(batch[:wanted])
        return found

    async def copy_log(self, execution: ExecutionDocument, logged: list[dict[str, Any]]) -> None:
        """Start `execution`'s log with these engine events (after its queued event)."""
        if not logged:
            return
        entries = [
            {
                "seq": seq,
                "type": event["type"],
                "status": ExecutionStatus.RUNNING.value,
                "at": datetime.fromisoformat(event["at"]),
                "data": {"engine": event},
            }
            for seq, event in enumerate(logged, start=2)
        ]
        await ExecutionLogDocument.get_pymongo_collection().insert_one(log_page(execution, entries))

    async def delete(self, execution: ExecutionDocument) -> None:
        await ExecutionLogDocument.find({"execution_id": execution.id}).delete()
        await execution.delete()

    async def insert(self, execution: ExecutionDocument) -> None:
        """Save a new execution (grouped with others saved at the same time)."""
        if execution.id is None:
            execution.id = PydanticObjectId()
        await writes.insert_execution(get_dict(execution, to_db=True))

    def snapshot(self, execution: ExecutionDocument) -> bytes | None:
        """A new execution as stored (BSON), for its first job to run from instead of
        reading it back; None when it is large (a job's arguments stay in Redis)."""
        stored = bson.encode(get_dict(execution, to_db=True))
        return stored if len(stored) <= SNAPSHOT_MAX_BYTES else None

    def from_snapshot(self, snapshot: bytes) -> ExecutionDocument:
        return ExecutionDocument.model_validate(bson.decode(snapshot, _AS_READ))

    async def by_id_unscoped(self, execution_id: str) -> ExecutionDocument | None:
        """For the worker, which acts for the system and not for a viewer."""
        oid = object_id(execution_id)
        found = await writes.read_execution(oid) if oid else None
        return ExecutionDocument.model_validate(found) if found else None

    async def log(self, execution_id: ObjectId) -> list[dict[str, Any]]:
        """An execution's whole log, its entries in order."""
        pages = ExecutionLogDocument.get_pymongo_collection().find(
            {"execution_id": execution_id}, {"events": 1}
        )
        return [entry async for page in pages.sort("seq", 1) for entry in page["events"]]

    async def engine_events(self, execution: ExecutionDocument) -> list[dict[str, Any]]:
        """The engine events of an execution's log, in order (the caller may see it)."""
        assert execution.id is not None
        return [e["data"]["engine"] for e in await self.log(execution.id) if "engine" in e["data"]]


def log_page(execution: ExecutionDocument, entries: list[dict[str, Any]]) -> dict[str, Any]:
    """A page of `execution`'s log holding `entries` (dicts of seq, type, status, at, data)."""
    return {
        "execution_id": execution.id,
        "organization_id": execution.organization_id,
        "seq": entries[0]["seq"],
        "last_seq": entries[-1]["seq"],
        "events": entries,
    }


repository = ExecutionRepository()
