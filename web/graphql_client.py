"""The dashboard's one way to talk to the router: GraphQL over HTTP POST.

A GraphQL answer, even one full of ``errors``, is a :class:`GraphQLResponse`: the router
spoke. Anything else (connection refused, timeout, a 5xx, a body that is not a GraphQL
JSON object) raises :class:`RouterUnavailable`, so pages can tell "the router is down"
apart from "a subgraph behind it is down".
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import httpx

JSON = dict[str, Any]


@dataclass(frozen=True)
class GraphQLResponse:
    data: JSON | None
    errors: list[JSON] = field(default_factory=list)

    def errors_at(self, root_field: str) -> list[JSON]:
        """The errors whose ``path`` starts at ``root_field``."""
        return [e for e in self.errors if (e.get("path") or [None])[0] == root_field]

    def errors_without_path(self) -> list[JSON]:
        return [e for e in self.errors if not e.get("path")]


class RouterUnavailable(Exception):
    """The router could not be reached or did not answer with GraphQL."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


async def execute(
    client: httpx.AsyncClient,
    url: str,
    query: str,
    variables: JSON | None = None,
    token: str | None = None,
    forwarded_for: str | None = None,
    timeout: float | None = None,
) -> GraphQLResponse:
    """POST ``query`` to the router at ``url``; ``token`` goes out as a Bearer token and
    ``forwarded_for`` (the browser's address chain) as X-Forwarded-For. ``timeout``
    replaces the client's for calls known to take long (a language model designing)."""
    headers = {"Accept": "application/graphql-response+json, application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    if forwarded_for:
        headers["X-Forwarded-For"] = forwarded_for
    payload: JSON = {"query": query}
    if variables:
        payload["variables"] = variables
    try:
        if timeout is None:
            response = await client.post(url, json=payload, headers=headers)
        else:
            response = await client.post(url, json=payload, headers=headers, timeout=timeout)
    except httpx.TimeoutException:
        raise RouterUnavailable("timed out") from None
    except httpx.HTTPError as exc:
        raise RouterUnavailable(_describe_transport_error(exc)) from None
    return _parse(response)


def _parse(response: httpx.Response) -> GraphQLResponse:
    try:
        body = response.json()
    except ValueError:
        body = None
    if response.status_code >= 500:
        raise RouterUnavailable(f"HTTP {response.status_code}{_first_message(body)}")
    if not isinstance(body, dict) or not ({"data", "errors"} & body.keys()):
        raise RouterUnavailable(f"HTTP {response.status_code} without a GraphQL JSON body")
    data = body.get("data")
    errors = body.get("errors") or []
    return GraphQLResponse(
        data=data if isinstance(data, dict) else None,
        errors=[e if isinstance(e, dict) else {"message": str(e)} for e in errors],
    )


def _first_message(body: object) -> str:
    if isinstance(body, dict) and body.get("errors"):
        first = body["errors"][0]
        message = first.get("message") if isinstance(first, dict) else first
        return f": {message}"
    return ""


def _describe_transport_error(exc: httpx.HTTPError) -> str:
    if isinstance(exc, httpx.ConnectError):
        return f"cannot connect: {exc}" if str(exc) else "cannot connect"
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
