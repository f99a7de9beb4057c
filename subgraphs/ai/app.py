"""The AI subgraph: knowledge bases in PostgreSQL + pgvector (the AI issue fills it in)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from sqlalchemy.ext.asyncio import async_sessionmaker
from starlette.applications import Starlette

from klikkflow.kit.asgi import subgraph_app
from klikkflow.kit.health import postgres_check
from klikkflow.kit.settings import SubgraphSettings
from klikkflow.kit.stores import create_pg_engine
from subgraphs.ai.schema import schema


def create_app(settings: SubgraphSettings | None = None) -> Starlette:
    settings = settings or SubgraphSettings()

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        engine = create_pg_engine(settings.database_url)
        app.state.sessions = async_sessionmaker(engine, expire_on_commit=False)
        app.state.health_checks = {"postgres": postgres_check(engine)}
        try:
            yield
        finally:
            await engine.dispose()

    return subgraph_app("ai", schema, settings, lifespan)
