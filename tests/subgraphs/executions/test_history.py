"""Execution history through the router: Relay pages with filters, delete, rerun with the
same input on the latest version, and retry from the failed node."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.factories.executions import output, run_and_wait, wait_for_status
from tests.factories.graphql import data, gql
from tests.factories.identity import sign_up
from tests.factories.servers import serve
from tests.factories.workflows import create_workflow, link, node, update_workflow

PAGE = """query ($first: Int!, $after: String, $filter: ExecutionFilterInput) {
  executions(first: $first, after: $after, filter: $filter) {
    edges { cursor node { id status workflow { id } } }
    pageInfo { hasNextPage endCursor } } }"""
START = """mutation ($id: ID!) { %s(input: {id: $id}) { __typename
  ... on RunWorkflowSuccess { execution { id } }
  ... on ValidationError { fields { path message } } } }"""
DELETE = """mutation ($id: ID!) { deleteExecution(input: {id: $id}) { __typename
  ... on ValidationError { fields { message } } } }"""


async def _page(client, platform, account, first=20, after=None, **filter) -> dict:
    variables = {"first": first, "after": after, "filter": filter or None}
    return data(await gql(client, platform.router_url, PAGE, variables, account.token))[
        "executions"
    ]


async def _ids(client, platform, account, **filter) -> list[str]:
    page = await _page(client, platform, account, 100, **filter)
    return [e["node"]["id"] for e in page["edges"]]


async def test_history_pages_and_filters(platform, client):
    account = await sign_up(client, platform.router_url, "Historians")
    good = await create_workflow(client, platform.router_url, account, "Good")
    stop = node("Stop", "stopAndError", parameters={"errorMessage": "bad"})
    bad = await create_workflow(
        client,
        platform.router_url,
        account,
        "Bad",
        {"nodes": [node("Start", "manualTrigger"), stop], "connections": [link("Start", "Stop")]},
    )
    done = [await run_and_wait(client, platform.router_url, account, good) for _ in range(3)]
    assert {d["status"] for d in done} == {"SUCCEEDED"}
    await run_and_wait(client, platform.router_url, account, bad)
    everything = await _ids(client, platform, account)
    assert len(everything) == 4
    first = await _page(client, platform, account, first=3)
    assert first["pageInfo"]["hasNextPage"] is True
    rest = await _page(client, platform, account, first=3, after=first["pageInfo"]["endCursor"])
    assert rest["pageInfo"]["hasNextPage"] is False
    paged = [e["node"]["id"] for e in first["edges"] + rest["edges"]]
    assert paged == everything  # newest first, nothing twice, nothing left out
    assert len(await _ids(client, platform, account, workflowId=good)) == 3
    failed = await _ids(client, platform, account, statuses=["FAILED"])
    assert failed == everything[:1]
    assert await _ids(client, platform, account, statuses=["FAILED"], workflowId=good) == []
    later = (datetime.now(UTC) + timedelta(minutes=1)).isoformat()
    assert await _ids(client, platform, account, since=later) == []
    assert len(await _ids(client, platform, account, until=later)) == 4


async def test_delete_removes_a_finished_execution_only(platform, client):
    account = await sign_up(client, platform.router_url, "Deleters")
    workflow_id = await create_workflow(client, platform.router_url, account, "Gone soon")
    wait = node("Wait", "wait", typeVersion=1.1, parameters={"amount": 1, "unit": "hours"})
    waits = await create_workflow(
        client,
        platform.router_url,
        account,
        "Waits",
        {"nodes": [node("Start", "manualTrigger"), wait], "connections": [link("Start", "Wait")]},
    )
    await run_and_wait(client, platform.router_url, account, workflow_id)
    [finished] = await _ids(client, platform, account, workflowId=workflow_id)
    started = data(
        await gql(
            client, platform.router_url, START % "rerunExecution", {"id": finished}, account.token
        )
    )["rerunExecution"]
    await wait_for_status(client, platform.router_url, account, started["execution"]["id"])
    from tests.factories.executions import start_run

    parked = await start_run(client, platform.router_url, account, waits)
    await wait_for_status(client, platform.router_url, account, parked, ("WAITING",))
    refused = data(await gql(client, platform.router_url, DELETE, {"id": parked}, account.token))
    assert refused["deleteExecution"]["__typename"] == "ValidationError"
    gone = data(await gql(client, platform.router_url, DELETE, {"id": finished}, account.token))
    assert gone["deleteExecution"]["__typename"] == "DeleteExecutionSuccess"
    left = await _ids(client, platform, account, workflowId=workflow_id)
    assert finished not in left
    assert len(left) == 1
    missing = await gql(
        client,
        platform.router_url,
        "query ($id: ID!) { execution(id: $id) { id } }",
        {"id": finished},
        account.token,
    )
    assert data(missing)["execution"] is None


async def test_rerun_uses_the_same_items_on_the_latest_version(platform, client):
    account = await sign_up(client, platform.router_url, "Rerunners")
    workflow_id = await create_workflow(client, platform.router_url, account, "Again")
    first = await run_and_wait(client, platform.router_url, account, workflow_id, [{"n": 5}])
    [first_id] = await _ids(client, platform, account, workflowId=workflow_id)
    await update_workflow(
        client,
        platform.router_url,
        account,
        id=workflow_id,
        expectedVersion=1,
        definition={
            "nodes": [node("Start", "manualTrigger"), node("Added")],
            "connections": [link("Start", "Added")],
        },
    )
    started = data(
        await gql(
            client, platform.router_url, START % "rerunExecution", {"id": first_id}, account.token
        )
    )["rerunExecution"]
    again = await wait_for_status(client, platform.router_url, account, started["execution"]["id"])
    assert first["workflowVersion"] == 1
    assert again["workflowVersion"] == 2
    assert output(again, "Added") == [{"n": 5}]


@pytest.fixture
async def flaky_api() -> AsyncIterator[tuple[str, dict[str, int]]]:
    """/ok always answers; /flaky fails its first call and answers the next ones."""
    calls = {"ok": 0, "flaky": 0}

    async def ok(request: Request) -> Response:
        calls["ok"] += 1
        return JSONResponse({"ok": True})

    async def flaky(request: Request) -> Response:
        calls["flaky"] += 1
        if calls["flaky"] == 1:
            return JSONResponse({"error": "down"}, status_code=503)
        return JSONResponse({"flaky": calls["flaky"]})

    app = Starlette(routes=[Route("/ok", ok), Route("/flaky", flaky)])
    async with serve(app) as url:
        yield url, calls


async def test_retry_goes_on_from_the_failed_node(platform, client, flaky_api):
    url, calls = flaky_api
    account = await sign_up(client, platform.router_url, "Retriers")
    call = node("Call", "httpRequest", typeVersion=4.2, parameters={"url": f"{url}/flaky"})
    notify = node("Notify", "httpRequest", typeVersion=4.2, parameters={"url": f"{url}/ok"})
    definition = {
        "nodes": [node("Start", "manualTrigger"), notify, call, node("After")],
        "connections": [link("Start", "Notify"), link("Notify", "Call"), link("Call", "After")],
    }
    workflow_id = await create_workflow(client, platform.router_url, account, "Flaky", definition)
    failed = await run_and_wait(client, platform.router_url, account, workflow_id, [{"k": 1}])
    assert failed["status"] == "FAILED", failed
    assert failed["error"]["node"] == "Call"
    assert calls == {"ok": 1, "flaky": 1}
    [failed_id] = await _ids(client, platform, account, workflowId=workflow_id)
    started = data(
        await gql(
            client, platform.router_url, START % "retryExecution", {"id": failed_id}, account.token
        )
    )["retryExecution"]
    assert started["__typename"] == "RunWorkflowSuccess", started
    retried = await wait_for_status(
        client, platform.router_url, account, started["execution"]["id"]
    )
    assert retried["status"] == "SUCCEEDED", retried
    assert retried["mode"] == "retry"
    assert calls == {"ok": 1, "flaky": 2}  # only Call ran again, Notify did not
    runs = {n["node"]: n for n in retried["nodes"]}
    assert runs["Call"]["tries"] == 2
    assert runs["Notify"]["tries"] == 1
    assert output(retried, "After") == [{"flaky": 2}]
    again = data(
        await gql(
            client,
            platform.router_url,
            START % "retryExecution",
            {"id": started["execution"]["id"]},
            account.token,
        )
    )["retryExecution"]
    assert again["__typename"] == "ValidationError"  # only failed executions go on
