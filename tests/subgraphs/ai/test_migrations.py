"""Alembic brings the AI database to head: pgvector installed, tables in place."""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from klikkflow.kit import migrations


async def test_migrations_install_pgvector_and_are_idempotent(platform):
    await migrations.upgrade(platform.database_url)  # the platform already ran it once
    engine = create_async_engine(platform.database_url)
    try:
        async with engine.connect() as conn:
            version = await conn.scalar(text("SELECT version_num FROM alembic_version"))
            extension = await conn.scalar(
                text("SELECT extversion FROM pg_extension WHERE extname = 'vector'")
            )
            distance = await conn.scalar(text("SELECT '[1,2,3]'::vector <-> '[1,2,4]'::vector"))
            columns = await conn.scalars(
                text(
                    "SELECT column_name FROM information_schema.columns "
                    "WHERE table_name = 'knowledge_bases' ORDER BY column_name"
                )
            )
            column_names = list(columns)
    finally:
        await engine.dispose()
    assert version == "0001"
    assert extension is not None
    assert distance == 1.0
    assert column_names == ["created_at", "id", "name", "organization_id"]
