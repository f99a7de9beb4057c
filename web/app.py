"""The dashboard's ASGI app: ``uvicorn web.app:create_app --factory``."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TypedDict

import httpx
from starlette.applications import Starlette
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from klikkflow.kit.settings import WebSettings
from web.probes import healthz, readyz
from web.status import status_page, status_partial

STATIC_DIR = Path(__file__).parent / "static"

# Fail fast: a page waits on the router at most this long before showing it unreachable.
ROUTER_TIMEOUT_SECONDS = 3.0


class WebState(TypedDict):
    """Lifespan state, read by handlers as ``request.state.<key>``."""

    settings: WebSettings
    http: httpx.AsyncClient


def create_app(settings: WebSettings | None = None) -> Starlette:
    settings = settings if settings is not None else WebSettings()

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[WebState]:
        # trust_env=False: the router is an internal service; proxy variables meant for
        # the outside world must not send dashboard traffic (and tokens) elsewhere.
        async with httpx.AsyncClient(timeout=ROUTER_TIMEOUT_SECONDS, trust_env=False) as http:
            yield {"settings": settings, "http": http}

    routes = [
        Route("/", status_page, name="home"),
        Route("/status", status_page, name="status"),
        Route("/partials/status", status_partial, name="status_partial"),
        Route("/healthz", healthz, name="healthz"),
        Route("/readyz", readyz, name="readyz"),
        Mount("/static", StaticFiles(directory=STATIC_DIR), name="static"),
    ]
    return Starlette(routes=routes, lifespan=lifespan)
