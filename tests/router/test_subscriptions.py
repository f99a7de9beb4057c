"""Live execution events: subgraph subscription -> Hive Gateway -> client, over WS and SSE.

runWorkflow queues an execution; the real arq worker moves it queued -> running ->
succeeded, publishing each change on the execution's Redis stream, which the executions
subgraph's subscription follows.
"""

from __future__ import annotations

import asyncio

import pytest

from tests.factories.graphql import data, gql
from tests.factories.identity import sign_up
from tests.factories.subscriptions import sse_subscribe, ws_subscribe
from tests.factories.workflows import create_workflow

RUN = """mutation ($id: ID!) { runWorkflow(input: {workflowId: $id}) {
  __typename ... on RunWorkflowSuccess { execution { id status } }
  ... on NotFoundError { message id } } }"""
EVENTS = """subscription ($id: ID!, $after: String) {
  executionEvents(executionId: $id, after: $after) { cursor seq type status node executionId } }"""


async def _run(client, platform, account) -> str:
    workflow_id = await create_workflow(client, platform.router_url, account)
    result = data(await gql(client, platform.router_url, RUN, {"id": workflow_id}, account.token))[
        "runWorkflow"
    ]
    assert result["__typename"] == "RunWorkflowSuccess", result
    assert result["execution"]["status"] == "QUEUED"
    return result["execution"]["id"]


def _statuses(payloads) -> list[str]:
    return [p["data"]["executionEvents"]["status"] for p in payloads]


def _steps(payloads) -> list[tuple[str, str | None]]:
    return [
        (p["data"]["executionEvents"]["type"], p["data"]["executionEvents"]["node"])
        for p in payloads
    ]


# The factory's workflow is a Manual Trigger alone: the worker runs it for real.
STEPS = [
    ("execution.queued", None),
    ("execution.started", None),
    ("node.started", "Start"),
    ("node.succeeded", "Start"),
    ("execution.finished", None),
]


async def test_events_reach_a_websocket_client_through_the_router(platform, client):
    account = await sign_up(client, platform.router_url)
    execution_id = await _run(client, platform, account)
    payloads = await asyncio.wait_for(
        ws_subscribe(platform.router_url, EVENTS, {"id": execution_id}, account.token), 30
    )
    assert _steps(payloads) == STEPS
    assert _statuses(payloads) == ["QUEUED", "RUNNING", "RUNNING", "RUNNING", "SUCCEEDED"]
    assert [p["data"]["executionEvents"]["seq"] for p in payloads] == [1, 2, 3, 4, 5]
    assert {p["data"]["executionEvents"]["executionId"] for p in payloads} == {execution_id}

    execution = data(
        await gql(
            client,
            platform.router_url,
            "query ($id: ID!) { execution(id: $id) { status startedAt "
            "finishedAt workflow { name owner { email } } } }",
            {"id": execution_id},
            account.token,
        )
    )["execution"]
    assert execution["status"] == "SUCCEEDED"
    assert execution["workflow"]["owner"]["email"] == account.email  # three subgraphs


async def test_events_reach_an_sse_client_and_resume_after_a_cursor(platform, client):
    account = await sign_up(client, platform.router_url)
    execution_id = await _run(client, platform, account)
    payloads = await asyncio.wait_for(
        sse_subscribe(client, platform.router_url, EVENTS, {"id": execution_id}, account.token),
        30,
    )
    assert _steps(payloads) == STEPS
    first_cursor = payloads[0]["data"]["executionEvents"]["cursor"]
    resumed = await asyncio.wait_for(
        sse_subscribe(
            client,
            platform.router_url,
            EVENTS,
            {"id": execution_id, "after": first_cursor},
            account.token,
        ),
        30,
    )
    assert _steps(resumed) == STEPS[1:]


@pytest.mark.parametrize("transport", ["ws", "sse"])
async def test_another_tenant_cannot_follow_an_execution(platform, client, transport):
    owner = await sign_up(client, platform.router_url)
    stranger = await sign_up(client, platform.router_url)
    execution_id = await _run(client, platform, owner)
    variables = {"id": execution_id}
    if transport == "ws":
        payloads = await asyncio.wait_for(
            ws_subscribe(platform.router_url, EVENTS, variables, stranger.token), 30
        )
    else:
        payloads = await asyncio.wait_for(
            sse_subscribe(client, platform.router_url, EVENTS, variables, stranger.token), 30
        )
    assert len(payloads) == 1
    assert "executionEvents" not in (payloads[0].get("data") or {}) or (
        payloads[0]["data"]["executionEvents"] is None
    )
    messages = [e["message"] for e in payloads[0]["errors"]]
    assert any(f"execution {execution_id} not found" in m for m in messages), messages


async def test_websocket_subscription_without_token_is_refused(platform, client):
    account = await sign_up(client, platform.router_url)
    execution_id = await _run(client, platform, account)
    payloads = await asyncio.wait_for(
        ws_subscribe(platform.router_url, EVENTS, {"id": execution_id}, None), 30
    )
    messages = [e["message"] for e in payloads[0]["errors"]]
    assert any("authentication required" in m for m in messages), messages


async def test_a_finished_execution_whose_stream_expired_replays_its_log(platform, client):
    """A finished execution's live stream lasts a minute (Redis keeps recent executions'
    only); a later subscriber gets the same events from its log in MongoDB, then the end."""
    from redis.asyncio import Redis

    from subgraphs.executions.service import STREAM_TTL_SECONDS, stream_key

    account = await sign_up(client, platform.router_url)
    execution_id = await _run(client, platform, account)
    live = await asyncio.wait_for(
        sse_subscribe(client, platform.router_url, EVENTS, {"id": execution_id}, account.token),
        30,
    )
    assert _steps(live) == STEPS
    redis = Redis.from_url(platform.redis_url)
    try:
        assert 0 < await redis.ttl(stream_key(execution_id)) <= STREAM_TTL_SECONDS
        await redis.delete(stream_key(execution_id))  # as if it expired
    finally:
        await redis.aclose()

    def follow(after):
        variables = {"id": execution_id, "after": after}
        return asyncio.wait_for(
            ws_subscribe(platform.router_url, EVENTS, variables, account.token), 30
        )

    replayed = await follow(None)
    assert _steps(replayed) == STEPS
    assert _statuses(replayed) == _statuses(live)
    assert [p["data"]["executionEvents"]["seq"] for p in replayed] == [1, 2, 3, 4, 5]
    cursors = [p["data"]["executionEvents"]["cursor"] for p in replayed]
    assert cursors == ["0-1", "0-2", "0-3", "0-4", "0-5"]
    assert _steps(await follow(cursors[1])) == STEPS[2:]
    assert await follow(cursors[-1]) == []
    old = live[2]["data"]["executionEvents"]["cursor"]  # of the stream that expired
    assert _steps(await follow(old)) == STEPS
