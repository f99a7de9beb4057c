"""The Starlette shell every subgraph shares: /graphql (HTTP + graphql-transport-ws),
/healthz (the process is alive) and /readyz (its stores answer)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

import strawberry
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import BaseRoute, Route, WebSocketRoute

from klikkflow.kit import heap
from klikkflow.kit.graphql import ServiceHealth, SubgraphGraphQL
from klikkflow.kit.health import probe_all
from klikkflow.kit.settings import SubgraphSettings

Check = Callable[[], Awaitable[object]]
Lifespan = Callable[[Starlette], AbstractAsyncContextManager[None]]


async def service_health(info: strawberry.Info) -> ServiceHealth:
    """Resolver of each subgraph's `<name>Health` root field."""
    state = info.context.state
    return ServiceHealth.from_statuses(state.service_name, await probe_all(state.health_checks))


async def _healthz(request: Request) -> JSONResponse:
    return JSONResponse({"status": "ok", "service": request.app.state.service_name})


async def _readyz(request: Request) -> JSONResponse:
    statuses = await probe_all(request.app.state.health_checks)
    body = {
        "service": request.app.state.service_name,
        "ready": all(s.ok for s in statuses),
        "stores": {
            s.name: {"ok": s.ok, "latencyMs": s.latency_ms, "error": s.error} for s in statuses
        },
    }
    return JSONResponse(body, status_code=200 if body["ready"] else 503)


def subgraph_app(
    name: str,
    schema: Any,
    settings: SubgraphSettings,
    lifespan: Lifespan,
    routes: list[BaseRoute] | None = None,
) -> Starlette:
    """Build a subgraph. `lifespan` opens its stores and sets `app.state.health_checks`."""
    graphql_app = SubgraphGraphQL(
        schema, settings, graphql_ide="graphiql" if settings.debug else None
    )

    @asynccontextmanager
    async def settled(app: Starlette) -> AsyncIterator[None]:
        async with lifespan(app):
            heap.settle()
            yield

    app = Starlette(
        routes=[
            Route("/graphql", graphql_app, methods=["GET", "POST"]),
            WebSocketRoute("/graphql", graphql_app),
            Route("/healthz", _healthz),
            Route("/readyz", _readyz),
            *(routes or []),
        ],
        lifespan=settled,
    )
    app.state.service_name = name
    app.state.settings = settings
    app.state.health_checks = {}
    return app
