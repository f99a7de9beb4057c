"""GraphQL subscriptions from the router over SSE (GraphQL over SSE, distinct connections).

The router answers a POST with ``Accept: text/event-stream`` by a stream of ``next``
events, each a GraphQL result, then a ``complete`` event. :func:`subscribe` yields the
``data`` of each result and returns when the router completes the stream.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import httpx

from web.graphql_client import JSON, RouterUnavailable

# How long to wait for the router to accept the subscription; once it streams, events
# may be hours apart (a Wait node), so reads have no timeout. The dashboard's own
# keep-alives notice a browser that left, and closing this stream ends the subscription.
CONNECT_TIMEOUT_SECONDS = 5.0


class SubscriptionError(Exception):
    """The router refused the subscription or sent an error in it."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


async def subscribe(
    client: httpx.AsyncClient,
    url: str,
    query: str,
    variables: JSON,
    token: str,
    forwarded_for: str | None = None,
) -> AsyncIterator[JSON]:
    """Yield the ``data`` of every result of ``query`` until the router completes it."""
    headers = {"Accept": "text/event-stream", "Authorization": f"Bearer {token}"}
    if forwarded_for:
        headers["X-Forwarded-For"] = forwarded_for
    timeout = httpx.Timeout(CONNECT_TIMEOUT_SECONDS, read=None)
    body = {"query": query, "variables": variables}
    try:
        async with client.stream("POST", url, json=body, headers=headers, timeout=timeout) as r:
            if r.status_code != 200 or not r.headers.get("content-type", "").startswith(
                "text/event-stream"
            ):
                await r.aread()
                raise SubscriptionError(_refusal(r))
            async for name, data in _events(r.aiter_lines()):
                if name == "complete":
                    return
                yield _result_data(data)
    except httpx.TimeoutException:
        raise RouterUnavailable("timed out") from None
    except httpx.HTTPError as exc:
        raise RouterUnavailable(f"{type(exc).__name__}: {exc}") from None


async def _events(lines: AsyncIterator[str]) -> AsyncIterator[tuple[str, str]]:
    """(event name, data) of each server-sent event; comments (keep-alives) skipped."""
    name = "message"
    data: list[str] = []
    async for line in lines:
        if not line:
            if data or name == "complete":
                yield name, "\n".join(data)
            name, data = "message", []
        elif line.startswith(":"):
            continue
        else:
            field, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if field == "event":
                name = value
            elif field == "data":
                data.append(value)
    if data:
        yield name, "\n".join(data)


def _result_data(text: str) -> JSON:
    try:
        result = json.loads(text)
    except ValueError:
        raise SubscriptionError("the router sent an event that is not JSON") from None
    if not isinstance(result, dict):
        raise SubscriptionError("the router sent an event that is not a GraphQL result")
    errors = result.get("errors") or []
    if errors or not isinstance(result.get("data"), dict):
        messages = "; ".join(str(e.get("message", e)) for e in errors if isinstance(e, dict))
        raise SubscriptionError(messages or "the subscription returned no data")
    data: JSON = result["data"]
    return data


def _refusal(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return f"HTTP {response.status_code}"
    errors = body.get("errors") if isinstance(body, dict) else None
    if errors and isinstance(errors[0], dict):
        return str(errors[0].get("message") or f"HTTP {response.status_code}")
    return f"HTTP {response.status_code}"
