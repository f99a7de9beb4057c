"""How the router's answer to the status query becomes one row per subgraph."""

from __future__ import annotations

from typing import Any

from web.graphql_client import GraphQLResponse
from web.status import STATUS_QUERY, report_from_response, report_router_unavailable

URL = "http://router.test/graphql"


def health(service: str, ok: bool = True, **stores: Any) -> dict[str, Any]:
    return {
        "service": service,
        "ok": ok,
        "version": "0.1.0",
        "stores": [
            {"name": name, "ok": err is None, "latencyMs": 1.5, "error": err}
            for name, err in stores.items()
        ],
    }


def states(report) -> dict[str, str]:
    return {row.name: row.state for row in report.subgraphs}


def test_query_asks_every_subgraph() -> None:
    for name in ("identity", "workflows", "executions", "ai"):
        assert f"{name}Health {{ service ok version stores {{ name ok latencyMs error }} }}" in (
            STATUS_QUERY
        )


def test_null_subgraph_is_down_and_named_with_its_error() -> None:
    response = GraphQLResponse(
        data={
            "identityHealth": health("identity", mongo=None),
            "workflowsHealth": health("workflows", mongo=None),
            "executionsHealth": health("executions", ok=False, mongo=None, redis="refused"),
            "aiHealth": None,
        },
        errors=[{"message": "Could not reach subgraph ai", "path": ["aiHealth"]}],
    )

    report = report_from_response(response, URL)

    assert states(report) == {
        "identity": "ok",
        "workflows": "ok",
        "executions": "degraded",
        "ai": "down",
    }
    rows = {row.name: row for row in report.subgraphs}
    assert rows["ai"].problem == "unreachable: Could not reach subgraph ai"
    assert rows["executions"].problem == "store down: redis"
    assert [(s.name, s.ok, s.error) for s in rows["executions"].stores] == [
        ("mongo", True, None),
        ("redis", False, "refused"),
    ]
    assert report.router_problem is None
    assert report.router_errors == []


def test_rejected_query_leaves_every_subgraph_unknown() -> None:
    response = GraphQLResponse(data=None, errors=[{"message": 'Cannot query field "aiHealth"'}])

    report = report_from_response(response, URL)

    assert set(states(report).values()) == {"unknown"}
    assert report.router_errors == ['Cannot query field "aiHealth"']


def test_router_unavailable_leaves_every_subgraph_unknown() -> None:
    report = report_router_unavailable(URL, "timed out")

    assert set(states(report).values()) == {"unknown"}
    assert report.router_problem == "timed out"
