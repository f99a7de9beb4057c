from __future__ import annotations

from strawberry.dataloader import DataLoader

from klikkflow.kit.auth import Viewer
from klikkflow.kit.graphql import Context
from subgraphs.ai.models import Document, KnowledgeBase
from subgraphs.ai.service import knowledge_base as knowledge_base_service


def knowledge_base_loader(context: Context) -> DataLoader[str, KnowledgeBase | None]:
    async def load(viewer: Viewer, ids: list[str]) -> list[KnowledgeBase | None]:
        async with context.state.sessions() as session:
            return await knowledge_base_service.get_many(session, viewer, ids)

    return context.loader("knowledge_base", load)


def document_loader(context: Context) -> DataLoader[str, Document | None]:
    async def load(viewer: Viewer, ids: list[str]) -> list[Document | None]:
        async with context.state.sessions() as session:
            return await knowledge_base_service.documents(session, viewer, ids)

    return context.loader("document", load)


def documents_of_loader(context: Context, first: int) -> DataLoader[str, list[Document]]:
    """The newest `first` documents of knowledge bases, by knowledge base id."""

    async def load(viewer: Viewer, ids: list[str]) -> list[list[Document]]:
        async with context.state.sessions() as session:
            return await knowledge_base_service.documents_of(session, viewer, ids, first)

    return context.loader(f"documents_of:{first}", load)


def document_count_loader(context: Context) -> DataLoader[str, int]:
    async def load(viewer: Viewer, ids: list[str]) -> list[int]:
        async with context.state.sessions() as session:
            return await knowledge_base_service.document_counts(session, viewer, ids)

    return context.loader("document_count", load)
