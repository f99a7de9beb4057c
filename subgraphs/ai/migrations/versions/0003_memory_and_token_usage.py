"""conversation memory and token usage of AI nodes

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "ai_memory_messages",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=True), nullable=False),
        sa.Column("organization_id", sqlmodel.AutoString(length=64), nullable=False),
        sa.Column("session_key", sqlmodel.AutoString(length=512), nullable=False),
        sa.Column("role", sqlmodel.AutoString(length=20), nullable=False),
        sa.Column("content", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(
        "ix_ai_memory_messages_session",
        "ai_memory_messages",
        ["organization_id", "session_key", "id"],
    )
    op.create_table(
        "ai_token_usage",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=True), nullable=False),
        sa.Column("organization_id", sqlmodel.AutoString(length=64), nullable=False),
        sa.Column("workflow_id", sqlmodel.AutoString(length=64), nullable=True),
        sa.Column("execution_id", sqlmodel.AutoString(length=64), nullable=False),
        sa.Column("node", sqlmodel.AutoString(length=128), nullable=False),
        sa.Column("provider", sqlmodel.AutoString(length=40), nullable=False),
        sa.Column("model", sqlmodel.AutoString(length=200), nullable=False),
        sa.Column("input_tokens", sa.Integer(), nullable=False),
        sa.Column("output_tokens", sa.Integer(), nullable=False),
        sa.Column("calls", sa.Integer(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(
        "ix_ai_token_usage_organization_at", "ai_token_usage", ["organization_id", "at"]
    )
    op.create_index("ix_ai_token_usage_execution", "ai_token_usage", ["execution_id"])


def downgrade() -> None:
    op.drop_table("ai_token_usage")  # drops its indexes
    op.drop_table("ai_memory_messages")
