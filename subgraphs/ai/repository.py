"""Every AI-data query, scoped by the viewer's organization."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col, select

from klikkflow.kit.auth import Viewer
from subgraphs.ai.models import KnowledgeBase


def parse_uuid(value: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(value)
    except ValueError:
        return None


class KnowledgeBaseRepository:
    async def by_ids(
        self, session: AsyncSession, viewer: Viewer, ids: Sequence[str]
    ) -> dict[str, KnowledgeBase]:
        uuids = [u for u in (parse_uuid(i) for i in ids) if u is not None]
        if not uuids:
            return {}
        rows = await session.execute(
            select(KnowledgeBase).where(
                col(KnowledgeBase.id).in_(uuids),
                KnowledgeBase.organization_id == viewer.organization_id,
            )
        )
        return {str(kb.id): kb for kb in rows.scalars()}

    async def recent(
        self, session: AsyncSession, viewer: Viewer, limit: int
    ) -> list[KnowledgeBase]:
        rows = await session.execute(
            select(KnowledgeBase)
            .where(KnowledgeBase.organization_id == viewer.organization_id)
            .order_by(col(KnowledgeBase.created_at).desc())
            .limit(limit)
        )
        return list(rows.scalars())


repository = KnowledgeBaseRepository()
