"""History pages over executions spread across years: the repository looks back in
growing windows, and every filter and cursor gives exactly the executions a plain
newest-first scan would, page after page."""

from __future__ import annotations

import os
import random
from datetime import UTC, datetime, timedelta

from beanie import PydanticObjectId
from bson import ObjectId

from klikkflow.kit.auth import Viewer
from klikkflow.kit.stores import init_mongo
from subgraphs.executions.models import DOCUMENTS, ExecutionDocument, ExecutionStatus
from subgraphs.executions.repository import ExecutionFilter, repository

STATUSES = [ExecutionStatus.SUCCEEDED, ExecutionStatus.FAILED, ExecutionStatus.CANCELLED]


def _id_at(at: datetime) -> PydanticObjectId:
    return PydanticObjectId(ObjectId(ObjectId.from_datetime(at).binary[:4] + os.urandom(8)))


async def _walk(viewer: Viewer, filter: ExecutionFilter, size: int) -> list[PydanticObjectId]:
    seen: list[PydanticObjectId] = []
    after = None
    while True:
        page = await repository.page(viewer, filter, after, size)
        seen.extend(e.id for e in page if e.id is not None)
        if len(page) < size:
            return seen
        after = str(page[-1].id)


async def test_pages_match_a_plain_scan_for_every_filter(platform):
    mongo = await init_mongo(platform.mongo_uri, platform.settings.mongo_db, DOCUMENTS)
    org, other = PydanticObjectId(), PydanticObjectId()
    try:
        workflows = [PydanticObjectId(), PydanticObjectId()]
        rng = random.Random(5)
        now = datetime.now(UTC)
        # Dense in the last minutes, sparse over the last three years; another
        # organization's executions interleaved.
        ages = [timedelta(seconds=rng.uniform(0, 600)) for _ in range(40)]
        ages += [timedelta(days=rng.uniform(0, 3 * 365)) for _ in range(60)]
        made = []
        for age in ages:
            for owner in (org, other):
                execution = ExecutionDocument(
                    id=_id_at(now - age),
                    organization_id=owner,
                    workflow_id=rng.choice(workflows),
                    status=rng.choice(STATUSES),
                    created_at=now - age,
                )
                made.append(execution)
        await ExecutionDocument.insert_many(made)
        mine = sorted((e for e in made if e.organization_id == org), key=lambda e: e.id)
        mine.reverse()
        viewer = Viewer(user_id="u", organization_id=str(org), role="owner")
        since, until = now - timedelta(days=400), now - timedelta(days=30)
        filters = [
            ExecutionFilter(),
            ExecutionFilter(workflow_id=str(workflows[0])),
            ExecutionFilter(statuses=(ExecutionStatus.FAILED,)),
            ExecutionFilter(statuses=(ExecutionStatus.FAILED, ExecutionStatus.CANCELLED)),
            ExecutionFilter(workflow_id=str(workflows[1]), statuses=(ExecutionStatus.SUCCEEDED,)),
            ExecutionFilter(since=since, until=until),
            ExecutionFilter(since=now - timedelta(minutes=5)),
        ]
        for filter in filters:
            expected = [
                e.id
                for e in mine
                if (filter.workflow_id is None or str(e.workflow_id) == filter.workflow_id)
                and (not filter.statuses or e.status in filter.statuses)
                and (filter.since is None or e.id >= ObjectId.from_datetime(filter.since))
                and (filter.until is None or e.id < ObjectId.from_datetime(filter.until))
            ]
            assert expected, filter
            for size in (1, 7, 100):
                assert await _walk(viewer, filter, size) == expected, (filter, size)
    finally:  # old finished executions would be the next retention sweep's to delete
        await ExecutionDocument.find({"organization_id": {"$in": [org, other]}}).delete()
        await mongo.close()
