"""The AI subgraph: knowledge bases, their documents and hybrid search, in PostgreSQL +
pgvector; document upload over plain HTTP beside /graphql (subgraphs.ai.uploads)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from sqlalchemy.ext.asyncio import async_sessionmaker
from starlette.applications import Starlette

from klikkflow.ai.embeddings import embedder_from_settings
from klikkflow.kit.asgi import subgraph_app
from klikkflow.kit.auth import JwksVerifier
from klikkflow.kit.health import postgres_check
from klikkflow.kit.settings import SubgraphSettings
from klikkflow.kit.stores import create_pg_engine
from subgraphs.ai import uploads
from subgraphs.ai.generation import generation_stores
from subgraphs.ai.schema import schema
from subgraphs.ai.service import knowledge_base as knowledge_base_service


def create_app(settings: SubgraphSettings | None = None) -> Starlette:
    settings = settings or SubgraphSettings()

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        knowledge_base_service.configure(
            embedder_from_settings(settings), settings.document_max_bytes
        )
        engine = create_pg_engine(settings.database_url)
        app.state.sessions = async_sessionmaker(engine, expire_on_commit=False)
        app.state.verifier = JwksVerifier(settings)
        try:
            async with generation_stores(settings) as checks:
                app.state.health_checks = {"postgres": postgres_check(engine), **checks}
                yield
        finally:
            await engine.dispose()

    return subgraph_app("ai", schema, settings, lifespan, routes=uploads.ROUTES)
