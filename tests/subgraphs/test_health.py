"""Every subgraph answers /healthz (alive) and /readyz (its stores answer)."""

from __future__ import annotations

import pytest
from starlette.testclient import TestClient

from klikkflow.kit.settings import SUBGRAPHS, SubgraphSettings
from klikkflow.kit.supervisor import free_port
from subgraphs.ai.app import create_app as create_ai_app

EXPECTED_STORES = {
    "identity": {"mongo", "redis"},
    "workflows": {"mongo"},
    "executions": {"mongo", "redis"},
    "ai": {"postgres", "mongo"},  # credentials and workflows, for generateWorkflow
}


@pytest.mark.parametrize("name", SUBGRAPHS)
async def test_running_subgraph_is_alive_and_ready(platform, client, name):
    base = platform.urls[name].removesuffix("/graphql")
    alive = await client.get(f"{base}/healthz")
    assert alive.status_code == 200
    assert alive.json() == {"status": "ok", "service": name}
    ready = await client.get(f"{base}/readyz")
    assert ready.status_code == 200
    body = ready.json()
    assert body["ready"] is True
    assert set(body["stores"]) == EXPECTED_STORES[name]
    assert all(store["ok"] for store in body["stores"].values())


async def test_health_of_every_subgraph_through_the_router(platform, client):
    fields = " ".join(f"{n}Health {{ service ok stores {{ name ok }} }}" for n in SUBGRAPHS)
    response = await client.post(platform.router_url, json={"query": f"{{ {fields} }}"})
    result = response.json()["data"]
    for name in SUBGRAPHS:
        health = result[f"{name}Health"]
        assert health["service"] == name
        assert health["ok"] is True
        assert {s["name"] for s in health["stores"]} == EXPECTED_STORES[name]


def test_readyz_names_the_store_that_does_not_answer(platform):
    dead = f"postgresql+asyncpg://klikkflow@127.0.0.1:{free_port()}/klikkflow"
    app = create_ai_app(
        SubgraphSettings(
            database_url=dead, mongo_uri=platform.mongo_uri, mongo_db=platform.settings.mongo_db
        )
    )
    with TestClient(app) as http:
        assert http.get("/healthz").status_code == 200
        ready = http.get("/readyz")
    assert ready.status_code == 503
    store = ready.json()["stores"]["postgres"]
    assert store["ok"] is False
    assert "refused" in store["error"].lower() or "connect" in store["error"].lower()
