"""Workflows: the foundation keeps name and owner; the workflows issue adds the graph."""

from __future__ import annotations

from beanie import PydanticObjectId

from klikkflow.kit.auth import Viewer
from klikkflow.kit.errors import InvalidInput
from klikkflow.kit.permissions import require
from subgraphs.workflows.models import WorkflowDocument
from subgraphs.workflows.repository import repository

MAX_NAME_LENGTH = 200
MAX_PAGE = 100


class WorkflowService:
    async def create(self, viewer: Viewer, name: str) -> WorkflowDocument:
        require(viewer, "workflow.create")
        name = name.strip()
        if not name or len(name) > MAX_NAME_LENGTH:
            raise InvalidInput({"name": f"must have 1 to {MAX_NAME_LENGTH} characters"})
        workflow = WorkflowDocument(
            organization_id=PydanticObjectId(viewer.organization_id),
            owner_id=PydanticObjectId(viewer.user_id),
            name=name,
        )
        await workflow.insert()
        return workflow

    async def get(self, viewer: Viewer, workflow_id: str) -> WorkflowDocument | None:
        return (await repository.by_ids(viewer, [workflow_id])).get(workflow_id)

    async def get_many(self, viewer: Viewer, ids: list[str]) -> list[WorkflowDocument | None]:
        found = await repository.by_ids(viewer, ids)
        return [found.get(i) for i in ids]

    async def recent(self, viewer: Viewer, first: int) -> list[WorkflowDocument]:
        return await repository.recent(viewer, max(1, min(first, MAX_PAGE)))

    async def by_owners(
        self, viewer: Viewer, owner_ids: list[str], first: int
    ) -> list[list[WorkflowDocument]]:
        found = await repository.by_owners(viewer, owner_ids, max(1, min(first, MAX_PAGE)))
        return [found[i] for i in owner_ids]


workflow = WorkflowService()
