"""The executions' indexes: start-up replaces those an earlier version made, and the
finish-time index holds finished executions only, yet serves the analytics' reads."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from beanie import PydanticObjectId

from klikkflow.kit.stores import init_mongo
from subgraphs.ai.analytics import Position, finished_page
from subgraphs.executions.models import DOCUMENTS, ExecutionDocument, ExecutionStatus

OLD = "finished_at_1__id_1"  # the finish-time index before it was partial


async def test_start_up_retires_the_old_finish_index_for_the_partial_one(platform):
    mongo = await init_mongo(platform.mongo_uri, platform.settings.mongo_db, DOCUMENTS)
    collection = ExecutionDocument.get_pymongo_collection()
    org = PydanticObjectId()
    try:
        await collection.create_index([("finished_at", 1), ("_id", 1)], name=OLD)
        await mongo.close()
        mongo = await init_mongo(platform.mongo_uri, platform.settings.mongo_db, DOCUMENTS)
        collection = ExecutionDocument.get_pymongo_collection()
        indexes = {i["name"]: i async for i in await collection.list_indexes()}
        assert OLD not in indexes
        assert set(indexes["finished"]["partialFilterExpression"]) == {"finished_at"}

        at = datetime.now(UTC) - timedelta(days=3650)  # before anything else in there
        ended = ExecutionDocument(
            organization_id=org,
            workflow_id=PydanticObjectId(),
            status=ExecutionStatus.SUCCEEDED,
            started_at=at,
            finished_at=at,
        )
        running = ExecutionDocument(
            organization_id=org, workflow_id=PydanticObjectId(), status=ExecutionStatus.RUNNING
        )
        for execution in (ended, running):
            await execution.insert()
        page = await finished_page(Position(at - timedelta(seconds=1)), at + timedelta(seconds=1))
        assert [d["_id"] for d in page] == [ended.id]
        query = {"finished_at": {"$gte": at, "$lt": at + timedelta(seconds=1)}}
        plan = await collection.find(query).sort([("finished_at", 1), ("_id", 1)]).explain()
        assert "'indexName': 'finished'" in str(plan["queryPlanner"]["winningPlan"])
    finally:
        await ExecutionDocument.find({"organization_id": org}).delete()
        await mongo.close()
