"""web.graphql_client against HTTP answers a router (or a proxy before it) can give.

The far side is httpx.MockTransport standing in for the network, not for our code.
"""

from __future__ import annotations

import json

import httpx
import pytest

from web.graphql_client import RouterUnavailable, execute

URL = "http://router.test/graphql"


def client_answering(status: int, body: str, seen: list[httpx.Request]) -> httpx.AsyncClient:
    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(status, text=body)

    return httpx.AsyncClient(transport=httpx.MockTransport(answer))


async def test_partial_answer_keeps_data_and_errors() -> None:
    body = {
        "data": {"identityHealth": {"ok": True}, "aiHealth": None},
        "errors": [{"message": "subgraph ai unavailable", "path": ["aiHealth"]}],
    }
    seen: list[httpx.Request] = []
    async with client_answering(200, json.dumps(body), seen) as client:
        response = await execute(client, URL, "query { x }", {"a": 1}, token="tok-123")

    assert response.data == body["data"]
    assert response.errors_at("aiHealth") == body["errors"]
    assert response.errors_at("identityHealth") == []
    sent = seen[0]
    assert sent.method == "POST"
    assert sent.headers["authorization"] == "Bearer tok-123"
    assert json.loads(sent.content) == {"query": "query { x }", "variables": {"a": 1}}


async def test_no_token_sends_no_authorization() -> None:
    seen: list[httpx.Request] = []
    async with client_answering(200, '{"data": {}}', seen) as client:
        await execute(client, URL, "query { x }")

    assert "authorization" not in seen[0].headers


@pytest.mark.parametrize(
    ("status", "body", "reason"),
    [
        (502, "<html>Bad Gateway</html>", "HTTP 502"),
        (500, '{"errors": [{"message": "boom"}]}', "HTTP 500: boom"),
        (200, "<html>not graphql</html>", "HTTP 200 without a GraphQL JSON body"),
        (404, '{"detail": "not found"}', "HTTP 404 without a GraphQL JSON body"),
    ],
)
async def test_non_graphql_answers_mean_router_unavailable(
    status: int, body: str, reason: str
) -> None:
    async with client_answering(status, body, []) as client:
        with pytest.raises(RouterUnavailable) as raised:
            await execute(client, URL, "query { x }")

    assert raised.value.reason == reason


async def test_refused_connection_means_router_unavailable() -> None:
    async with httpx.AsyncClient(trust_env=False) as client:
        with pytest.raises(RouterUnavailable, match="cannot connect"):
            await execute(client, "http://127.0.0.1:9/graphql", "query { x }")
