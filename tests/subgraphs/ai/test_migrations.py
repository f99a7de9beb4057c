"""Alembic brings the AI database to head: pgvector installed, tables in place."""

from __future__ import annotations

from alembic.script import ScriptDirectory
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from klikkflow.kit import migrations


async def _columns(conn, table: str) -> list[str]:
    found = await conn.scalars(
        text(
            "SELECT column_name FROM information_schema.columns "
            "WHERE table_name = :table ORDER BY column_name"
        ),
        {"table": table},
    )
    return list(found)


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
            columns = {
                t: await _columns(conn, t) for t in ("knowledge_bases", "documents", "chunks")
            }
            index_rows = await conn.execute(
                text("SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'chunks'")
            )
            indexes = {name: definition for name, definition in index_rows}
            generated = await conn.scalar(
                text(
                    "SELECT generation_expression FROM information_schema.columns "
                    "WHERE table_name = 'chunks' AND column_name = 'tsv'"
                )
            )
    finally:
        await engine.dispose()
    scripts = ScriptDirectory.from_config(migrations.alembic_config(platform.database_url))
    assert version == scripts.get_current_head()  # every migration ran
    assert "0002" in {s.revision for s in scripts.walk_revisions()}  # documents and chunks
    assert extension is not None
    assert distance == 1.0
    assert columns == {
        "knowledge_bases": [
            "created_at",
            "embedding_dimensions",
            "embedding_model",
            "id",
            "name",
            "organization_id",
        ],
        "documents": [
            "chunk_count",
            "content_type",
            "created_at",
            "error",
            "id",
            "knowledge_base_id",
            "metadata",
            "name",
            "organization_id",
            "sha256",
            "size",
            "status",
            "title",
        ],
        "chunks": [
            "document_id",
            "embedding",
            "id",
            "knowledge_base_id",
            "metadata",
            "model",
            "ordinal",
            "organization_id",
            "text",
            "tsv",
        ],
    }
    assert "to_tsvector('english'" in generated
    assert "USING gin (tsv)" in indexes["ix_chunks_tsv"]
    hnsw = indexes["ix_chunks_embedding_384_27323efcc9df"]
    assert "USING hnsw (((embedding)::vector(384)) vector_cosine_ops)" in hnsw
    assert "WHERE ((model)::text = 'all-MiniLM-L6-v2-onnx-int8'::text)" in hnsw
