"""The executions subgraph: execution records, their event log and live subscriptions."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from starlette.applications import Starlette

from klikkflow.kit.asgi import subgraph_app
from klikkflow.kit.health import mongo_check, redis_check
from klikkflow.kit.settings import SubgraphSettings
from klikkflow.kit.stores import create_arq_pool, create_redis, init_mongo
from klikkflow.kit.vault import LocalKeyProvider
from subgraphs.executions import metrics, webhooks
from subgraphs.executions.models import DOCUMENTS as EXECUTION_DOCUMENTS
from subgraphs.executions.schema import schema
from subgraphs.workflows.credentials import credential as credential_service
from subgraphs.workflows.models import DOCUMENTS as WORKFLOW_DOCUMENTS


def create_app(settings: SubgraphSettings | None = None) -> Starlette:
    settings = settings or SubgraphSettings()

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        # The workflows service is called in-process, so its documents are registered too.
        mongo = await init_mongo(
            settings.mongo_uri, settings.mongo_db, [*EXECUTION_DOCUMENTS, *WORKFLOW_DOCUMENTS]
        )
        credential_service.configure(
            settings, LocalKeyProvider(settings.credentials_master_keys, settings.secret_key)
        )
        app.state.redis = create_redis(settings.redis_url)
        app.state.queue = await create_arq_pool(settings.redis_url)
        app.state.health_checks = {
            "mongo": mongo_check(mongo),
            "redis": redis_check(app.state.redis),
        }
        try:
            yield
        finally:
            await app.state.queue.aclose()
            await app.state.redis.aclose()
            await mongo.close()

    return subgraph_app(
        "executions", schema, settings, lifespan, routes=[*webhooks.ROUTES, *metrics.ROUTES]
    )
