from __future__ import annotations

import hashlib
import uuid
from datetime import UTC, datetime
from typing import Any

from pgvector.sqlalchemy import Vector
from sqlalchemy import (
    BigInteger,
    Column,
    Computed,
    DateTime,
    ForeignKey,
    Identity,
    Index,
    Integer,
    Text,
    UniqueConstraint,
)
from sqlalchemy import (
    text as sql_text,
)
from sqlalchemy.dialects.postgresql import JSONB, TSVECTOR
from sqlmodel import Field, SQLModel

#: The text-search configuration of chunks' `tsv` and of queries (stemming, stop words).
TEXT_SEARCH_CONFIG = "english"


def _now() -> datetime:
    return datetime.now(UTC)


class KnowledgeBase(SQLModel, table=True):
    __tablename__ = "knowledge_bases"

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    organization_id: str = Field(index=True, max_length=64)
    name: str = Field(max_length=200)
    created_at: datetime = Field(
        default_factory=_now, sa_column=Column(DateTime(timezone=True), nullable=False)
    )
    # The model every vector of this knowledge base comes from (None: none chosen yet).
    embedding_model: str | None = Field(default=None, max_length=200)
    embedding_dimensions: int | None = Field(default=None)


class DocumentStatus:
    READY = "ready"


class Document(SQLModel, table=True):
    __tablename__ = "documents"
    __table_args__ = (
        UniqueConstraint("knowledge_base_id", "sha256", name="uq_documents_content"),
        Index("ix_documents_knowledge_base_created", "knowledge_base_id", "created_at"),
    )

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    organization_id: str = Field(index=True, max_length=64)
    knowledge_base_id: uuid.UUID = Field(
        sa_column=Column(
            ForeignKey("knowledge_bases.id", ondelete="CASCADE"),
            nullable=False,
        )
    )
    name: str = Field(max_length=300)
    content_type: str = Field(max_length=100)
    size: int = Field(sa_column=Column(BigInteger, nullable=False))
    sha256: str = Field(max_length=64)
    status: str = Field(default=DocumentStatus.READY, max_length=20)
    error: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    title: str | None = Field(default=None, max_length=300)
    chunk_count: int = Field(default=0)
    meta: dict[str, Any] = Field(
        default_factory=dict,
        sa_column=Column("metadata", JSONB, nullable=False, server_default=sql_text("'{}'::jsonb")),
    )
    created_at: datetime = Field(
        default_factory=_now, sa_column=Column(DateTime(timezone=True), nullable=False)
    )


TSV_EXPRESSION = (
    f"setweight(to_tsvector('{TEXT_SEARCH_CONFIG}', coalesce(metadata->>'heading', '')), 'A')"
    f" || setweight(to_tsvector('{TEXT_SEARCH_CONFIG}', text), 'B')"
)


class Chunk(SQLModel, table=True):
    """A piece of a document with its vector. `embedding` has no fixed dimension, so
    vectors of models of different sizes can live here; each model's vectors get an HNSW
    index of their own (`vector_index_name`), on `embedding::vector(n)` where the model
    matches, and searches compare only vectors of their knowledge base's model."""

    __tablename__ = "chunks"
    __table_args__ = (
        UniqueConstraint("document_id", "ordinal", name="uq_chunks_document_ordinal"),
        Index("ix_chunks_knowledge_base_model", "knowledge_base_id", "model"),
        Index("ix_chunks_tsv", "tsv", postgresql_using="gin"),
    )

    id: int | None = Field(
        default=None, sa_column=Column(BigInteger, Identity(always=True), primary_key=True)
    )
    organization_id: str = Field(max_length=64)
    knowledge_base_id: uuid.UUID = Field(
        sa_column=Column(ForeignKey("knowledge_bases.id", ondelete="CASCADE"), nullable=False)
    )
    document_id: uuid.UUID = Field(
        sa_column=Column(ForeignKey("documents.id", ondelete="CASCADE"), nullable=False)
    )
    ordinal: int = Field(sa_column=Column(Integer, nullable=False))
    text: str = Field(sa_column=Column(Text, nullable=False))
    meta: dict[str, Any] = Field(
        default_factory=dict,
        sa_column=Column("metadata", JSONB, nullable=False, server_default=sql_text("'{}'::jsonb")),
    )
    tsv: str | None = Field(
        default=None, sa_column=Column(TSVECTOR, Computed(TSV_EXPRESSION, persisted=True))
    )
    model: str = Field(max_length=200)
    embedding: list[float] = Field(sa_column=Column(Vector(), nullable=False))


def vector_index_name(model: str, dimensions: int) -> str:
    """The name of the HNSW index over one model's vectors."""
    digest = hashlib.sha256(model.encode()).hexdigest()[:12]
    return f"ix_chunks_embedding_{dimensions}_{digest}"


def sql_literal(value: str) -> str:
    """A string as an SQL literal. Model ids are written into vector queries and index
    predicates as literals: a partial index is only used when the planner sees the
    predicate's very value."""
    return "'" + value.replace("'", "''") + "'"


def vector_index_ddl(model: str, dimensions: int) -> str:
    return (
        f"CREATE INDEX IF NOT EXISTS {vector_index_name(model, dimensions)} ON chunks "
        f"USING hnsw ((embedding::vector({int(dimensions)})) vector_cosine_ops) "
        f"WHERE model = {sql_literal(model)}"
    )
