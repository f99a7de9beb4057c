"""A tiny GraphQL-over-HTTP client for tests (through the router, like every client)."""

from __future__ import annotations

from typing import Any

import httpx


async def gql(
    client: httpx.AsyncClient,
    url: str,
    query: str,
    variables: dict[str, Any] | None = None,
    token: str | None = None,
    organization: str | None = None,
) -> dict[str, Any]:
    headers = {"authorization": f"Bearer {token}"} if token else {}
    if organization is not None:
        headers["x-klikkflow-organization"] = organization
    response = await client.post(
        url, json={"query": query, "variables": variables or {}}, headers=headers
    )
    return response.json()


def data(result: dict[str, Any]) -> dict[str, Any]:
    assert not result.get("errors"), result
    return result["data"]
