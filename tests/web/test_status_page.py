"""The dashboard over real HTTP when the router does not answer: it degrades, never 500s."""

from __future__ import annotations

import hashlib
import re
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

import web

VENDOR_DIR = Path(web.__file__).parent / "static" / "vendor"


def visible_text(html: str) -> str:
    return " ".join(re.sub(r"<[^>]+>", " ", html).split())


@pytest.fixture
async def client(web_without_router: str) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=web_without_router, trust_env=False) as client:
        yield client


@pytest.mark.parametrize("path", ["/", "/status"])
async def test_status_page_shows_router_unreachable_banner(
    client: httpx.AsyncClient, path: str
) -> None:
    response = await client.get(path)

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    text = visible_text(response.text)
    assert re.search(r"Router unreachable at http://127\.0\.0\.1:\d+/graphql : \S", text), text
    for name in ("identity", "workflows", "executions", "ai"):
        assert f'<tr data-subgraph="{name}" data-state="unknown">' in response.text
    assert 'hx-get="/partials/status"' in response.text
    assert 'hx-trigger="every 5s"' in response.text


async def test_htmx_requests_get_only_the_fragment(client: httpx.AsyncClient) -> None:
    for path in ("/", "/partials/status"):
        response = await client.get(path, headers={"HX-Request": "true"})

        assert response.status_code == 200
        assert "<html" not in response.text
        assert 'class="status-report"' in response.text
        assert "Router unreachable" in response.text


async def test_healthz_is_ok_without_a_router(client: httpx.AsyncClient) -> None:
    response = await client.get("/healthz")

    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


async def test_readyz_is_unavailable_without_a_router(client: httpx.AsyncClient) -> None:
    response = await client.get("/readyz")

    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "unavailable"
    assert body["reason"]


async def test_vendored_assets_are_served_and_match_their_pins(client: httpx.AsyncClient) -> None:
    pins = [
        line.split()
        for line in (VENDOR_DIR / "VERSIONS.txt").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert {pin[1] for pin in pins} == {"htmx.org", "htmx-ext-sse"}
    page = (await client.get("/")).text
    for file_name, _package, _version, _licence, _tarball_path, sha256 in pins:
        response = await client.get(f"/static/vendor/{file_name}")
        assert response.status_code == 200
        assert hashlib.sha256(response.content).hexdigest() == sha256, file_name
        assert f'src="/static/vendor/{file_name}"' in page
    assert not re.search(r'(src|href)="(https?:)?//', page), "page loads something off-site"
