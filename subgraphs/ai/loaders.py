from __future__ import annotations

from strawberry.dataloader import DataLoader

from klikkflow.kit.auth import Viewer
from klikkflow.kit.graphql import Context
from subgraphs.ai.models import KnowledgeBase
from subgraphs.ai.service import knowledge_base as knowledge_base_service


def knowledge_base_loader(context: Context) -> DataLoader[str, KnowledgeBase | None]:
    async def load(viewer: Viewer, ids: list[str]) -> list[KnowledgeBase | None]:
        async with context.state.sessions() as session:
            return await knowledge_base_service.get_many(session, viewer, ids)

    return context.loader("knowledge_base", load)
