"""The executions' indexes: start-up replaces those an earlier version made, the
finish-time index holds finished executions only, yet serves the analytics' reads, and
every query of a history page, and of the recovery sweep, is answered by an index."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from beanie import PydanticObjectId

from klikkflow.kit.auth import Viewer
from klikkflow.kit.stores import init_mongo
from subgraphs.ai.analytics import Position, finished_page
from subgraphs.executions.models import DOCUMENTS, ExecutionDocument, ExecutionStatus
from subgraphs.executions.repository import ExecutionFilter, ExecutionRepository

OLD = {  # what earlier versions made
    "finished_at_1__id_1": [("finished_at", 1), ("_id", 1)],  # before it was partial
    "organization_id_1__id_-1": [("organization_id", 1), ("_id", -1)],  # pages without
    "organization_id_1_workflow_id_1__id_-1": [  # a status had their own
        ("organization_id", 1),
        ("workflow_id", 1),
        ("_id", -1),
    ],
    # before the status led the first index, the recovery sweep had an index of its own
    "organization_id_1_status_1__id_-1": [("organization_id", 1), ("status", 1), ("_id", -1)],
    "status_1_started_at_1": [("status", 1), ("started_at", 1)],
}
PAGES = ("status_1_organization_id_1__id_-1", "organization_id_1_workflow_id_1_status_1__id_-1")


async def test_start_up_retires_the_indexes_earlier_versions_made(platform):
    mongo = await init_mongo(platform.mongo_uri, platform.settings.mongo_db, DOCUMENTS)
    collection = ExecutionDocument.get_pymongo_collection()
    org = PydanticObjectId()
    try:
        for name, keys in OLD.items():
            await collection.create_index(keys, name=name)
        await mongo.close()
        mongo = await init_mongo(platform.mongo_uri, platform.settings.mongo_db, DOCUMENTS)
        collection = ExecutionDocument.get_pymongo_collection()
        indexes = {i["name"]: i async for i in await collection.list_indexes()}
        assert not OLD.keys() & indexes.keys()
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


async def test_every_query_of_a_history_page_is_answered_by_an_index(platform, monkeypatch):
    """An unfiltered page queries a status at a time (no index lacks the status): each
    of its queries, with or without a workflow, is planned on an index, none scans."""
    mongo = await init_mongo(platform.mongo_uri, platform.settings.mongo_db, DOCUMENTS)
    collection = ExecutionDocument.get_pymongo_collection()
    org, workflow = PydanticObjectId(), PydanticObjectId()
    asked: list[dict] = []
    real_find = ExecutionDocument.find

    def find(query, *args, **kwargs):
        asked.append(query)
        return real_find(query, *args, **kwargs)

    monkeypatch.setattr(ExecutionDocument, "find", find)
    try:
        viewer = Viewer(user_id=str(PydanticObjectId()), organization_id=str(org), role="owner")
        for only in (None, str(workflow)):
            await ExecutionRepository().page(viewer, ExecutionFilter(workflow_id=only), None, 20)
        assert {q["status"] for q in asked} == {s.value for s in ExecutionStatus}
        for query in asked:
            plan = await collection.find(query).sort("_id", -1).limit(20).explain()
            winning = str(plan["queryPlanner"]["winningPlan"])
            assert "COLLSCAN" not in winning, (query, winning)
            assert any(f"'indexName': '{name}'" in winning for name in PAGES), winning
        for status in ExecutionStatus:  # the recovery sweep's and requeue's (no organization)
            plan = await collection.find({"status": status.value}).explain()
            winning = str(plan["queryPlanner"]["winningPlan"])
            assert f"'indexName': '{PAGES[0]}'" in winning, winning
    finally:
        await mongo.close()
