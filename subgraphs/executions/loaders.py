from __future__ import annotations

from strawberry.dataloader import DataLoader

from klikkflow.kit.graphql import Context
from subgraphs.executions.models import ExecutionDocument
from subgraphs.executions.service import execution as execution_service


def execution_loader(context: Context) -> DataLoader[str, ExecutionDocument | None]:
    if "execution" not in context.loaders:
        viewer = context.require_viewer()

        async def load(ids: list[str]) -> list[ExecutionDocument | None]:
            return await execution_service.get_many(viewer, ids)

        context.loaders["execution"] = DataLoader(load_fn=load)
    return context.loaders["execution"]
