"""Subscription clients for tests: graphql-transport-ws and GraphQL over SSE."""

from __future__ import annotations

import json
import secrets
from typing import Any

import httpx
import websockets


async def ws_subscribe(
    url: str,
    query: str,
    variables: dict[str, Any],
    token: str | None,
    limit: int = 50,
    organization: str | None = None,
) -> list[dict[str, Any]]:
    """Run one subscription over graphql-transport-ws until it completes; return its payloads
    (each `next` payload, or the `error` payload list as {"errors": [...]}). `organization`
    goes in the connection_init payload as `x-klikkflow-organization`."""
    ws_url = url.replace("http", "ws", 1)
    received: list[dict[str, Any]] = []
    async with websockets.connect(ws_url, subprotocols=["graphql-transport-ws"]) as ws:
        init = {"authorization": f"Bearer {token}"} if token else {}
        if organization is not None:
            init["x-klikkflow-organization"] = organization
        await ws.send(json.dumps({"type": "connection_init", "payload": init}))
        ack = json.loads(await ws.recv())
        assert ack["type"] == "connection_ack", ack
        op = secrets.token_hex(4)
        payload = {"query": query, "variables": variables}
        await ws.send(json.dumps({"id": op, "type": "subscribe", "payload": payload}))
        while len(received) < limit:
            message = json.loads(await ws.recv())
            if message["type"] == "ping":
                await ws.send(json.dumps({"type": "pong"}))
            elif message["type"] == "next":
                received.append(message["payload"])
            elif message["type"] == "error":
                received.append({"errors": message["payload"]})
                break
            elif message["type"] == "complete":
                break
    return received


async def sse_subscribe(
    client: httpx.AsyncClient, url: str, query: str, variables: dict[str, Any], token: str | None
) -> list[dict[str, Any]]:
    """Run one subscription over GraphQL-over-SSE (distinct connections mode)."""
    headers = {"accept": "text/event-stream"}
    if token:
        headers["authorization"] = f"Bearer {token}"
    received: list[dict[str, Any]] = []
    body = {"query": query, "variables": variables}
    async with client.stream("POST", url, json=body, headers=headers) as response:
        assert response.status_code == 200, await response.aread()
        assert response.headers["content-type"].startswith("text/event-stream")
        event = None
        async for line in response.aiter_lines():
            if line.startswith("event:"):
                event = line.partition(":")[2].strip()
                if event == "complete":
                    break
            elif line.startswith("data:") and event in (None, "next"):
                text = line.partition(":")[2].strip()
                if text:
                    received.append(json.loads(text))
    return received
