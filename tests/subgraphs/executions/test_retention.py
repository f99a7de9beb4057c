"""Retention: finished executions beyond the age or per-workflow limits go, with their
logs; unfinished ones and other workflows' stay."""

from __future__ import annotations

import os
from datetime import timedelta

from beanie import PydanticObjectId
from bson import ObjectId

from klikkflow.kit.stores import init_mongo
from subgraphs.executions import retention
from subgraphs.executions.models import (
    DOCUMENTS,
    ExecutionDocument,
    ExecutionLogDocument,
    ExecutionStatus,
    now,
)
from subgraphs.workflows.models import DOCUMENTS as WORKFLOW_DOCUMENTS
from subgraphs.workflows.models import WorkflowDocument


async def _workflow(org) -> PydanticObjectId:
    owner = PydanticObjectId()
    workflow = WorkflowDocument(
        organization_id=org, owner_id=owner, name="Kept", definition="{}", saved_by=owner
    )
    await workflow.insert()
    assert workflow.id is not None
    return workflow.id


async def _execution(org, workflow, status, age_days=0.0) -> PydanticObjectId:
    born = now() - timedelta(days=age_days)
    execution = ExecutionDocument(
        # An id of that time (ids order executions by creation), unique within it.
        id=PydanticObjectId(ObjectId(ObjectId.from_datetime(born).binary[:4] + os.urandom(8))),
        organization_id=org,
        workflow_id=workflow,
        status=status,
        created_at=born,
    )
    await execution.insert()
    await ExecutionLogDocument(
        execution_id=execution.id,
        organization_id=org,
        seq=2,
        last_seq=2,
        events=[{"seq": 2, "type": "node.started", "status": status, "data": {"engine": {}}}],
    ).insert()
    assert execution.id is not None
    return execution.id


async def test_old_and_surplus_finished_executions_go_with_their_logs(platform):
    mongo = await init_mongo(
        platform.mongo_uri, platform.settings.mongo_db, [*DOCUMENTS, *WORKFLOW_DOCUMENTS]
    )
    try:
        org = PydanticObjectId()
        busy, quiet, spread = await _workflow(org), await _workflow(org), await _workflow(org)
        ancient = await _execution(org, quiet, ExecutionStatus.SUCCEEDED, age_days=40)
        ancient_waiting = await _execution(org, quiet, ExecutionStatus.WAITING, age_days=40)
        recent_quiet = await _execution(org, quiet, ExecutionStatus.FAILED, age_days=1)
        busy_runs = [
            await _execution(org, busy, ExecutionStatus.SUCCEEDED, age_days=0.001 * (10 - i))
            for i in range(10)
        ]  # oldest first, 86 s apart
        spread_runs = [  # over 20 days, oldest first: counted across windows of ids
            await _execution(org, spread, ExecutionStatus.SUCCEEDED, age_days=20 - 2 * i)
            for i in range(10)
        ]
        deleted = await retention.prune(max_age_days=30, keep_per_workflow=4)
        # (earlier tests' workflows in this database may lose their surplus runs too)
        assert deleted >= 1 + 6 + 6
        left = {e.id for e in await ExecutionDocument.find({"organization_id": org}).to_list()}
        assert left == {ancient_waiting, recent_quiet, *busy_runs[-4:], *spread_runs[-4:]}
        logs = await ExecutionLogDocument.find({"organization_id": org}).to_list()
        assert {e.execution_id for e in logs} == left
        assert ancient not in left
        assert await retention.prune(max_age_days=30, keep_per_workflow=4) == 0
        assert await retention.prune(max_age_days=0, keep_per_workflow=0) == 0
    finally:
        await mongo.close()
