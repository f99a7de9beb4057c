"""execution analytics: daily rollup, its ledger of counted executions, reader cursors

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def _count(name: str) -> sa.Column[int]:
    return sa.Column(name, sa.BigInteger(), nullable=False, server_default="0")


def upgrade() -> None:
    op.create_table(
        "execution_stats_daily",
        sa.Column("organization_id", sqlmodel.AutoString(length=64), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("workflow_id", sqlmodel.AutoString(length=64), nullable=False),
        sa.Column("mode", sqlmodel.AutoString(length=40), nullable=False),
        _count("executions"),
        _count("succeeded"),
        _count("failed"),
        _count("cancelled"),
        _count("timed"),
        _count("duration_ms_sum"),
        _count("duration_ms_max"),
        sa.Column("duration_buckets", postgresql.ARRAY(sa.BigInteger()), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("organization_id", "day", "workflow_id", "mode"),
    )
    op.create_table(
        "analytics_executions",
        sa.Column("execution_id", sqlmodel.AutoString(length=64), nullable=False),
        sa.Column("organization_id", sqlmodel.AutoString(length=64), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("execution_id"),
    )
    op.create_index("ix_analytics_executions_finished_at", "analytics_executions", ["finished_at"])
    op.create_table(
        "analytics_cursors",
        sa.Column("name", sqlmodel.AutoString(length=64), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_id", sqlmodel.AutoString(length=64), nullable=False),
        sa.PrimaryKeyConstraint("name"),
    )


def downgrade() -> None:
    op.drop_table("analytics_cursors")
    op.drop_table("analytics_executions")  # drops its index
    op.drop_table("execution_stats_daily")
