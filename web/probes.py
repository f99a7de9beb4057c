"""Liveness and readiness probes for orchestrators (compose, Kubernetes)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse

from web.graphql_client import RouterUnavailable, execute
from web.status import STATUS_QUERY


async def healthz(request: Request) -> JSONResponse:
    """The process is up and serving."""
    return JSONResponse({"status": "ok"})


async def readyz(request: Request) -> JSONResponse:
    """Ready when the router answers the status query at all, even with partial errors."""
    router_url = request.state.settings.router_url
    try:
        await execute(request.state.http, router_url, STATUS_QUERY)
    except RouterUnavailable as exc:
        body = {"status": "unavailable", "router": router_url, "reason": exc.reason}
        return JSONResponse(body, status_code=503)
    return JSONResponse({"status": "ok", "router": router_url})
