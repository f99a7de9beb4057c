"""The status page: every subgraph's health, asked of the router in one query."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

import httpx
from starlette.requests import Request
from starlette.responses import Response

from klikkflow.kit.settings import SUBGRAPHS
from web.auth import viewer_token
from web.graphql_client import GraphQLResponse, RouterUnavailable, execute
from web.session import current_token
from web.templating import is_htmx, render
from web.viewer import Viewer, load_viewer, render_page

# One root field per subgraph (``<name>Health``, see SUBGRAPHS); each is nullable, so a
# subgraph that is down comes back null with an error whose path names its field.
STATUS_QUERY = """\
query Status {
  identityHealth { service ok version stores { name ok latencyMs error } }
  workflowsHealth { service ok version stores { name ok latencyMs error } }
  executionsHealth { service ok version stores { name ok latencyMs error } }
  aiHealth { service ok version stores { name ok latencyMs error } }
}
"""

# Seconds between two HTMX refreshes of the status table.
REFRESH_SECONDS = 5

State = Literal["ok", "degraded", "down", "unknown"]


@dataclass(frozen=True)
class StoreHealth:
    name: str
    ok: bool
    latency_ms: float | None
    error: str | None


@dataclass(frozen=True)
class SubgraphHealth:
    name: str
    state: State
    version: str | None = None
    stores: list[StoreHealth] = field(default_factory=list)
    problem: str | None = None  # why the subgraph is down or unknown


@dataclass(frozen=True)
class StatusReport:
    subgraphs: list[SubgraphHealth]
    checked_at: datetime
    router_url: str
    router_problem: str | None = None  # set when the router itself did not answer
    router_errors: list[str] = field(default_factory=list)  # errors not tied to a subgraph


def report_from_response(response: GraphQLResponse, router_url: str) -> StatusReport:
    """Turn the router's (possibly partial) answer into one row per subgraph."""
    if response.data is None:
        reason = "; ".join(_messages(response.errors)) or "no data"
        rows = [SubgraphHealth(name, "unknown", problem=reason) for name in SUBGRAPHS]
        return StatusReport(rows, _now(), router_url, router_errors=_messages(response.errors))
    rows = [_subgraph_health(name, response) for name in SUBGRAPHS]
    return StatusReport(
        rows, _now(), router_url, router_errors=_messages(response.errors_without_path())
    )


def report_router_unavailable(router_url: str, reason: str) -> StatusReport:
    rows = [SubgraphHealth(name, "unknown", problem="router unreachable") for name in SUBGRAPHS]
    return StatusReport(rows, _now(), router_url, router_problem=reason)


async def fetch_report(
    client: httpx.AsyncClient, router_url: str, token: str | None = None
) -> StatusReport:
    try:
        response = await execute(client, router_url, STATUS_QUERY, token=token)
    except RouterUnavailable as exc:
        return report_router_unavailable(router_url, exc.reason)
    return report_from_response(response, router_url)


async def status_page(request: Request) -> Response:
    # The header's viewer first: it may refresh the session the report then uses.
    viewer = await _viewer_or_none(request)
    report = await _report_for(request)
    return await render_page(
        request,
        "pages/status.html",
        {**_context(report), "viewer": viewer},
        fragment="partials/status_table.html",
    )


async def status_partial(request: Request) -> Response:
    report = await _report_for(request)
    return render(request, "partials/status_table.html", _context(report))


async def _viewer_or_none(request: Request) -> Viewer | None:
    if is_htmx(request):
        return None
    try:
        return await load_viewer(request, required=False)
    except RouterUnavailable:
        return None  # the report says so


async def _report_for(request: Request) -> StatusReport:
    router_url = request.state.settings.router_url
    # An Authorization header wins over the session cookie (see web.auth).
    token = viewer_token(request) if "authorization" in request.headers else None
    return await fetch_report(request.state.http, router_url, token or current_token(request))


def _context(report: StatusReport) -> dict[str, Any]:
    return {"report": report, "refresh_seconds": REFRESH_SECONDS, "nav": "status"}


def _subgraph_health(name: str, response: GraphQLResponse) -> SubgraphHealth:
    root_field = f"{name}Health"
    health = (response.data or {}).get(root_field)
    if not isinstance(health, dict):
        reason = "; ".join(_messages(response.errors_at(root_field))) or "no answer"
        return SubgraphHealth(name, "down", problem=f"unreachable: {reason}")
    stores = [_store_health(s) for s in health.get("stores") or [] if isinstance(s, dict)]
    healthy = bool(health.get("ok")) and all(s.ok for s in stores)
    return SubgraphHealth(
        name,
        "ok" if healthy else "degraded",
        version=health.get("version"),
        stores=stores,
        problem=None if healthy else _degraded_reason(stores),
    )


def _store_health(raw: dict[str, Any]) -> StoreHealth:
    latency = raw.get("latencyMs")
    return StoreHealth(
        name=str(raw.get("name") or "?"),
        ok=bool(raw.get("ok")),
        latency_ms=float(latency) if isinstance(latency, int | float) else None,
        error=raw.get("error"),
    )


def _degraded_reason(stores: list[StoreHealth]) -> str:
    failing = [s.name for s in stores if not s.ok]
    return f"store down: {', '.join(failing)}" if failing else "service reports not ok"


def _messages(errors: list[dict[str, Any]]) -> list[str]:
    return [str(e.get("message") or e) for e in errors]


def _now() -> datetime:
    return datetime.now(UTC)
