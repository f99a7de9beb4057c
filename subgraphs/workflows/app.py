"""The workflows subgraph: workflows, their versions, credentials."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from starlette.applications import Starlette

from klikkflow.kit.asgi import subgraph_app
from klikkflow.kit.health import mongo_check
from klikkflow.kit.settings import SubgraphSettings
from klikkflow.kit.stores import init_mongo
from klikkflow.kit.vault import LocalKeyProvider
from subgraphs.identity.audit import AuditEntryDocument
from subgraphs.workflows.credentials import credential as credential_service
from subgraphs.workflows.models import DOCUMENTS
from subgraphs.workflows.schema import schema


def create_app(settings: SubgraphSettings | None = None) -> Starlette:
    settings = settings or SubgraphSettings()

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        mongo = await init_mongo(
            settings.mongo_uri, settings.mongo_db, [*DOCUMENTS, AuditEntryDocument]
        )
        credential_service.configure(
            settings,
            LocalKeyProvider(settings.credentials_master_keys, settings.secret_key),
        )
        app.state.health_checks = {"mongo": mongo_check(mongo)}
        try:
            yield
        finally:
            await mongo.close()

    return subgraph_app("workflows", schema, settings, lifespan)
