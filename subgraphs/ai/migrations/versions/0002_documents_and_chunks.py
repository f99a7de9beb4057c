"""documents and chunks with vectors (HNSW per model) and full text (GIN)

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op
from pgvector.sqlalchemy import Vector
from sqlalchemy.dialects import postgresql

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

TSV = (
    "setweight(to_tsvector('english', coalesce(metadata->>'heading', '')), 'A')"
    " || setweight(to_tsvector('english', text), 'B')"
)
# The local default model's vectors (klikkflow.ai.embeddings.LOCAL_MODEL_ID, 384-d); other
# models get theirs when a knowledge base first uses them (subgraphs.ai.repository).
LOCAL_INDEX = (
    "CREATE INDEX IF NOT EXISTS ix_chunks_embedding_384_27323efcc9df ON chunks "
    "USING hnsw ((embedding::vector(384)) vector_cosine_ops) "
    "WHERE model = 'all-MiniLM-L6-v2-onnx-int8'"
)


def upgrade() -> None:
    op.add_column(
        "knowledge_bases",
        sa.Column("embedding_model", sqlmodel.AutoString(length=200), nullable=True),
    )
    op.add_column("knowledge_bases", sa.Column("embedding_dimensions", sa.Integer(), nullable=True))
    op.create_table(
        "documents",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("organization_id", sqlmodel.AutoString(length=64), nullable=False),
        sa.Column("knowledge_base_id", sa.Uuid(), nullable=False),
        sa.Column("name", sqlmodel.AutoString(length=300), nullable=False),
        sa.Column("content_type", sqlmodel.AutoString(length=100), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("sha256", sqlmodel.AutoString(length=64), nullable=False),
        sa.Column("status", sqlmodel.AutoString(length=20), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("title", sqlmodel.AutoString(length=300), nullable=True),
        sa.Column("chunk_count", sa.Integer(), nullable=False),
        sa.Column(
            "metadata",
            postgresql.JSONB(),
            server_default=sa.text("'{}'::jsonb"),
            nullable=False,
        ),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["knowledge_base_id"], ["knowledge_bases.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("knowledge_base_id", "sha256", name="uq_documents_content"),
    )
    op.create_index("ix_documents_organization_id", "documents", ["organization_id"])
    op.create_index(
        "ix_documents_knowledge_base_created", "documents", ["knowledge_base_id", "created_at"]
    )
    op.create_table(
        "chunks",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=True), nullable=False),
        sa.Column("organization_id", sqlmodel.AutoString(length=64), nullable=False),
        sa.Column("knowledge_base_id", sa.Uuid(), nullable=False),
        sa.Column("document_id", sa.Uuid(), nullable=False),
        sa.Column("ordinal", sa.Integer(), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column(
            "metadata",
            postgresql.JSONB(),
            server_default=sa.text("'{}'::jsonb"),
            nullable=False,
        ),
        sa.Column("tsv", postgresql.TSVECTOR(), sa.Computed(TSV, persisted=True)),
        sa.Column("model", sqlmodel.AutoString(length=200), nullable=False),
        sa.Column("embedding", Vector(), nullable=False),
        sa.ForeignKeyConstraint(["knowledge_base_id"], ["knowledge_bases.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["document_id"], ["documents.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("document_id", "ordinal", name="uq_chunks_document_ordinal"),
    )
    op.create_index("ix_chunks_knowledge_base_model", "chunks", ["knowledge_base_id", "model"])
    op.create_index("ix_chunks_tsv", "chunks", ["tsv"], postgresql_using="gin")
    op.execute(LOCAL_INDEX)


def downgrade() -> None:
    op.drop_table("chunks")  # drops its indexes, the per-model vector ones too
    op.drop_index("ix_documents_knowledge_base_created", table_name="documents")
    op.drop_index("ix_documents_organization_id", table_name="documents")
    op.drop_table("documents")
    op.drop_column("knowledge_bases", "embedding_dimensions")
    op.drop_column("knowledge_bases", "embedding_model")
