"""Fixtures of the dashboard tests: the real web app served over HTTP, real Chromium."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator

import pytest
import uvicorn
from playwright.async_api import Browser, Page, async_playwright
from starlette.applications import Starlette

from klikkflow.kit.settings import WebSettings
from klikkflow.platform import Platform
from web.app import create_app

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


class _InProcessServer(uvicorn.Server):
    # Leave SIGINT/SIGTERM to pytest: Ctrl-C must stop the test run, not just this server.
    def capture_signals(self) -> contextlib.AbstractContextManager[None]:
        return contextlib.nullcontext()


@contextlib.asynccontextmanager
async def serve(app: Starlette) -> AsyncIterator[str]:
    """Serve ``app`` with uvicorn on a free port in this event loop; yield its base URL."""
    config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="on")
    server = _InProcessServer(config)
    task = asyncio.create_task(server.serve())
    try:
        async with asyncio.timeout(10):
            while not server.started:
                if task.done():
                    task.result()  # raises why the server could not start
                    raise RuntimeError("uvicorn exited before it started")
                await asyncio.sleep(0.02)
        port = server.servers[0].sockets[0].getsockname()[1]
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task


def closed_port_url() -> str:
    """A router URL where nothing listens: the port was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/graphql"


@pytest.fixture(scope="session")
async def web_without_router() -> AsyncIterator[str]:
    """The dashboard configured with a router URL where nothing answers."""
    settings = WebSettings(router_url=closed_port_url())
    async with serve(create_app(settings)) as base_url:
        yield base_url


@pytest.fixture(scope="session")
async def web_url(platform: Platform) -> AsyncIterator[str]:
    """The dashboard in front of the real platform (router + four subgraphs)."""
    settings = WebSettings(router_url=platform.router_url, ai_url=ai_service_url(platform))
    async with serve(create_app(settings)) as base_url:
        yield base_url


def ai_service_url(platform: Platform) -> str:
    """The AI service's base URL (document uploads go there, not through the router)."""
    return platform.urls["ai"].removesuffix("/graphql")


@pytest.fixture(scope="session")
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        await browser.close()


@pytest.fixture
async def page(browser: Browser) -> AsyncIterator[Page]:
    """A fresh browser context per test; fails the test on any JavaScript error."""
    context = await browser.new_context(viewport={"width": 1200, "height": 800})
    page = await context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on(
        "console",
        lambda msg: (
            errors.append(f"{msg.text} ({msg.location.get('url')})")
            if msg.type == "error"
            else None
        ),
    )
    yield page
    await context.close()
    assert not errors, f"JavaScript errors on the page: {errors}"
