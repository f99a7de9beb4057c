from __future__ import annotations

from strawberry.dataloader import DataLoader

from klikkflow.kit.graphql import Context
from subgraphs.workflows.models import WorkflowDocument
from subgraphs.workflows.service import workflow as workflow_service

OWNER_PAGE = 50


def workflow_loader(context: Context) -> DataLoader[str, WorkflowDocument | None]:
    if "workflow" not in context.loaders:
        viewer = context.require_viewer()

        async def load(ids: list[str]) -> list[WorkflowDocument | None]:
            return await workflow_service.get_many(viewer, ids)

        context.loaders["workflow"] = DataLoader(load_fn=load)
    return context.loaders["workflow"]


def workflows_by_owner_loader(context: Context) -> DataLoader[str, list[WorkflowDocument]]:
    if "by_owner" not in context.loaders:
        viewer = context.require_viewer()

        async def load(owner_ids: list[str]) -> list[list[WorkflowDocument]]:
            return await workflow_service.by_owners(viewer, owner_ids, OWNER_PAGE)

        context.loaders["by_owner"] = DataLoader(load_fn=load)
    return context.loaders["by_owner"]
