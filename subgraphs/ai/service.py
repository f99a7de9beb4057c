"""Knowledge bases (the AI issue adds documents, chunks and search)."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from klikkflow.kit.auth import Viewer
from klikkflow.kit.errors import InvalidInput
from klikkflow.kit.permissions import require
from subgraphs.ai.models import KnowledgeBase
from subgraphs.ai.repository import repository

MAX_NAME_LENGTH = 200
MAX_PAGE = 100


class KnowledgeBaseService:
    def create(self, session: AsyncSession, viewer: Viewer, name: str) -> KnowledgeBase:
        """Adds to the session; the request boundary commits."""
        require(viewer, "knowledge_base.create")
        name = name.strip()
        if not name or len(name) > MAX_NAME_LENGTH:
            raise InvalidInput({"name": f"must have 1 to {MAX_NAME_LENGTH} characters"})
        kb = KnowledgeBase(organization_id=viewer.organization_id, name=name)
        session.add(kb)
        return kb

    async def get_many(
        self, session: AsyncSession, viewer: Viewer, ids: list[str]
    ) -> list[KnowledgeBase | None]:
        found = await repository.by_ids(session, viewer, ids)
        return [found.get(i) for i in ids]

    async def recent(
        self, session: AsyncSession, viewer: Viewer, first: int
    ) -> list[KnowledgeBase]:
        return await repository.recent(session, viewer, max(1, min(first, MAX_PAGE)))


knowledge_base = KnowledgeBaseService()
