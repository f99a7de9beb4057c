"""Every execution query, scoped by the viewer's organization."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from beanie import PydanticObjectId

from klikkflow.kit.auth import Viewer
from klikkflow.kit.stores import object_id
from subgraphs.executions.models import ExecutionDocument, ExecutionEventDocument


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

    async def recent(
        self, viewer: Viewer, workflow_id: str | None, limit: int
    ) -> list[ExecutionDocument]:
        query: dict[str, object] = {"organization_id": object_id(viewer.organization_id)}
        if workflow_id is not None:
            query["workflow_id"] = object_id(workflow_id)
        return await ExecutionDocument.find(query).sort("-created_at").limit(limit).to_list()

    async def by_id_unscoped(self, execution_id: str) -> ExecutionDocument | None:
        """For the worker, which acts for the system and not for a viewer."""
        oid = object_id(execution_id)
        return await ExecutionDocument.get(oid) if oid else None

    async def engine_events(self, execution: ExecutionDocument) -> list[dict[str, Any]]:
        """The engine events of an execution's log, in order (the caller may see it)."""
        found = (
            await ExecutionEventDocument.find(
                {"execution_id": execution.id, "data.engine": {"$exists": True}}
            )
            .sort("seq")
            .to_list()
        )
        return [e.data["engine"] for e in found]

    async def last_seq(self, execution_id: PydanticObjectId) -> int:
        last = (
            await ExecutionEventDocument.find(ExecutionEventDocument.execution_id == execution_id)
            .sort("-seq")
            .first_or_none()
        )
        return last.seq if last else 0


repository = ExecutionRepository()
