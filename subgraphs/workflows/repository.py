"""Every workflow query, always scoped by the viewer's organization."""

from __future__ import annotations

from collections.abc import Sequence

from klikkflow.kit.auth import Viewer
from klikkflow.kit.stores import object_id
from subgraphs.workflows.models import WorkflowDocument


class WorkflowRepository:
    async def by_ids(self, viewer: Viewer, ids: Sequence[str]) -> dict[str, WorkflowDocument]:
        oids = [i for i in (object_id(x) for x in ids) if i is not None]
        org = object_id(viewer.organization_id)
        if not oids or org is None:
            return {}
        found = await WorkflowDocument.find(
            {"_id": {"$in": oids}, "organization_id": org}
        ).to_list()
        return {str(w.id): w for w in found}

    async def by_owners(
        self, viewer: Viewer, owner_ids: Sequence[str], limit: int
    ) -> dict[str, list[WorkflowDocument]]:
        oids = [i for i in (object_id(x) for x in owner_ids) if i is not None]
        org = object_id(viewer.organization_id)
        result: dict[str, list[WorkflowDocument]] = {x: [] for x in owner_ids}
        if not oids or org is None:
            return result
        found = (
            await WorkflowDocument.find({"organization_id": org, "owner_id": {"$in": oids}})
            .sort("-created_at")
            .to_list()
        )
        for w in found:
            bucket = result[str(w.owner_id)]
            if len(bucket) < limit:
                bucket.append(w)
        return result

    async def recent(self, viewer: Viewer, limit: int) -> list[WorkflowDocument]:
        org = object_id(viewer.organization_id)
        if org is None:
            return []
        return (
            await WorkflowDocument.find({"organization_id": org})
            .sort("-created_at")
            .limit(limit)
            .to_list()
        )


repository = WorkflowRepository()
