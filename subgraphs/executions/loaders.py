from __future__ import annotations

from strawberry.dataloader import DataLoader

from klikkflow.kit.graphql import Context
from subgraphs.executions.models import ExecutionDocument
from subgraphs.executions.service import execution as execution_service


def execution_loader(context: Context) -> DataLoader[str, ExecutionDocument | None]:
    return context.loader("execution", execution_service.get_many)
