"""What the AI nodes read and write while workers run them: conversation memory, token
usage and knowledge bases, in PostgreSQL (``klikkflow.ai.runtime.AiServices``).

Both tables are scoped by organization in every query. ``ai_token_usage`` has one row per
LLM call (or per answer that took ``calls`` calls) for analytics to sum by organization,
workflow and day.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import BigInteger, Column, DateTime, Identity, Index, Integer, Text, select
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker
from sqlmodel import Field, SQLModel, col

from klikkflow.ai.embeddings import Embedder, EmbeddingError
from klikkflow.ai.runtime import (
    KnowledgeError,
    MemoryLimit,
    Passage,
    StoredDocument,
    Turn,
    UsageRecord,
    within,
)
from klikkflow.kit.errors import InvalidInput
from subgraphs.ai.service import KnowledgeBaseNotFound
from subgraphs.ai.service import knowledge_base as knowledge_base_service

# Recalling by token limit alone reads at most this many of the latest messages.
RECALL_MAX = 1_000


def _now() -> datetime:
    return datetime.now(UTC)


class MemoryMessage(SQLModel, table=True):
    """One message of a conversation kept by an AI node's memory."""

    __tablename__ = "ai_memory_messages"
    __table_args__ = (
        Index("ix_ai_memory_messages_session", "organization_id", "session_key", "id"),
    )

    id: int | None = Field(
        default=None, sa_column=Column(BigInteger, Identity(always=True), primary_key=True)
    )
    organization_id: str = Field(max_length=64)
    session_key: str = Field(max_length=512)
    role: str = Field(max_length=20)
    content: str = Field(sa_column=Column(Text, nullable=False))
    created_at: datetime = Field(
        default_factory=_now, sa_column=Column(DateTime(timezone=True), nullable=False)
    )


class TokenUsage(SQLModel, table=True):
    """Tokens an LLM call made by a node cost its organization."""

    __tablename__ = "ai_token_usage"
    __table_args__ = (
        Index("ix_ai_token_usage_organization_at", "organization_id", "at"),
        Index("ix_ai_token_usage_execution", "execution_id"),
    )

    id: int | None = Field(
        default=None, sa_column=Column(BigInteger, Identity(always=True), primary_key=True)
    )
    organization_id: str = Field(max_length=64)
    workflow_id: str | None = Field(default=None, max_length=64)
    execution_id: str = Field(max_length=64)
    node: str = Field(max_length=128)
    provider: str = Field(max_length=40)
    model: str = Field(max_length=200)
    input_tokens: int = Field(sa_column=Column(Integer, nullable=False))
    output_tokens: int = Field(sa_column=Column(Integer, nullable=False))
    calls: int = Field(default=1, sa_column=Column(Integer, nullable=False))
    at: datetime = Field(
        default_factory=_now, sa_column=Column(DateTime(timezone=True), nullable=False)
    )


class PostgresAiServices:
    """``AiServices`` on the AI subgraph's PostgreSQL; one per worker process. Knowledge
    bases go through the knowledge-base service (configured with the same embedder)."""

    def __init__(self, engine: AsyncEngine, embedder: Embedder) -> None:
        self._sessions = async_sessionmaker(engine, expire_on_commit=False)
        self._embedder = embedder

    @property
    def embedder(self) -> Embedder:
        return self._embedder

    async def record_usage(self, records: Sequence[UsageRecord]) -> None:
        if not records:
            return
        rows = [
            TokenUsage(
                organization_id=r.organization_id,
                workflow_id=r.workflow_id,
                execution_id=r.execution_id,
                node=r.node[:128],
                provider=r.provider,
                model=r.model[:200],
                input_tokens=r.input_tokens,
                output_tokens=r.output_tokens,
                calls=r.calls,
            )
            for r in records
        ]
        async with self._sessions() as session:
            session.add_all(rows)
            await session.commit()

    async def recall(
        self, organization_id: str, session_key: str, limit: MemoryLimit
    ) -> list[Turn]:
        latest = (
            select(col(MemoryMessage.role), col(MemoryMessage.content))
            .where(
                col(MemoryMessage.organization_id) == organization_id,
                col(MemoryMessage.session_key) == session_key,
            )
            .order_by(col(MemoryMessage.id).desc())
            .limit(limit.window or RECALL_MAX)
        )
        async with self._sessions() as session:
            rows = (await session.execute(latest)).all()
        turns = [Turn("user" if role == "user" else "assistant", text) for role, text in rows]
        return within(turns[::-1], limit)

    async def remember(self, organization_id: str, session_key: str, turns: Sequence[Turn]) -> None:
        rows = [
            MemoryMessage(
                organization_id=organization_id,
                session_key=session_key,
                role=turn.role,
                content=turn.content,
            )
            for turn in turns
        ]
        async with self._sessions() as session:
            session.add_all(rows)
            await session.commit()

    async def search(
        self, organization_id: str, knowledge_base_id: str, query: str, k: int
    ) -> list[Passage]:
        async with self._sessions() as session:
            try:
                hits = await knowledge_base_service.search(
                    session, organization_id, knowledge_base_id, query, k
                )
            except (KnowledgeBaseNotFound, InvalidInput, EmbeddingError) as exc:
                raise KnowledgeError(str(exc)) from None
            await session.commit()  # the re-embedding a changed model may have needed
        return [Passage(h.text, h.score, str(h.document_id), h.ordinal, h.metadata) for h in hits]

    async def ingest(
        self,
        organization_id: str,
        knowledge_base_id: str,
        name: str,
        content_type: str | None,
        data: bytes,
        metadata: dict[str, Any] | None,
    ) -> StoredDocument:
        async with self._sessions() as session:
            try:
                document = await knowledge_base_service.ingest(
                    session, organization_id, knowledge_base_id, name, content_type, data, metadata
                )
            except (KnowledgeBaseNotFound, InvalidInput, EmbeddingError) as exc:
                raise KnowledgeError(str(exc)) from None
            await session.commit()
        return StoredDocument(str(document.id), document.name, document.chunk_count)
