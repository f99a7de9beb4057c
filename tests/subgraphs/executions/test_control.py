"""Controlling executions through the router: cancel one that is queued, waiting or
running; Wait parks an execution and a deferred job wakes it, nothing sleeps."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.factories.executions import (
    execution,
    output,
    run_and_wait,
    start_run,
    wait_for_status,
)
from tests.factories.graphql import data, gql
from tests.factories.identity import sign_up
from tests.factories.servers import serve
from tests.factories.workers import paused, platform_workers
from tests.factories.workflows import create_workflow, link, node

CANCEL = """mutation ($id: ID!) { cancelExecution(input: {id: $id}) { __typename
  ... on CancelExecutionSuccess { execution { status } }
  ... on ValidationError { fields { path message } } } }"""


def _line(*nodes: dict) -> dict:
    names = [n["name"] for n in nodes]
    return {
        "nodes": list(nodes),
        "connections": [link(a, b) for a, b in zip(names, names[1:], strict=False)],
    }


async def _cancel(client, platform, account, execution_id) -> dict:
    return data(
        await gql(client, platform.router_url, CANCEL, {"id": execution_id}, account.token)
    )["cancelExecution"]


@pytest.fixture
async def hanging() -> AsyncIterator[tuple[str, asyncio.Event]]:
    arrived = asyncio.Event()

    async def hang(request: Request) -> Response:
        arrived.set()
        await asyncio.sleep(60)
        return JSONResponse({})

    async with serve(Starlette(routes=[Route("/hang", hang)])) as url:
        yield f"{url}/hang", arrived


async def test_a_running_execution_is_stopped_by_its_worker(platform, client, hanging):
    url, arrived = hanging
    account = await sign_up(client, platform.router_url, "Cancellers")
    call = node("Call", "httpRequest", typeVersion=4.2, parameters={"url": url})
    definition = _line(node("Start", "manualTrigger"), call, node("After"))
    workflow_id = await create_workflow(client, platform.router_url, account, "Hangs", definition)
    execution_id = await start_run(client, platform.router_url, account, workflow_id)
    await asyncio.wait_for(arrived.wait(), 30)
    answer = await _cancel(client, platform, account, execution_id)
    assert answer["__typename"] == "CancelExecutionSuccess"
    done = await wait_for_status(client, platform.router_url, account, execution_id, seconds=10)
    assert done["status"] == "CANCELLED"
    assert done["error"]["message"] == f"cancelled by {account.user_id}"
    assert "After" not in {n["node"] for n in done["nodes"]}
    again = await _cancel(client, platform, account, execution_id)
    assert again == {
        "__typename": "ValidationError",
        "fields": [{"path": "id", "message": "the execution already cancelled"}],
    }


async def test_a_waiting_execution_is_cancelled_at_once(platform, client):
    account = await sign_up(client, platform.router_url, "Wait cancellers")
    wait = node("Wait", "wait", typeVersion=1.1, parameters={"amount": 1, "unit": "hours"})
    definition = _line(node("Start", "manualTrigger"), wait, node("After"))
    workflow_id = await create_workflow(client, platform.router_url, account, "Waits", definition)
    execution_id = await start_run(client, platform.router_url, account, workflow_id)
    await wait_for_status(client, platform.router_url, account, execution_id, ("WAITING",))
    answer = await _cancel(client, platform, account, execution_id)
    assert answer == {"__typename": "CancelExecutionSuccess", "execution": {"status": "CANCELLED"}}


async def test_a_queued_execution_never_runs_once_cancelled(platform, client):
    account = await sign_up(client, platform.router_url, "Queue cancellers")
    workflow_id = await create_workflow(client, platform.router_url, account, "Queued")
    with paused(platform_workers(platform.redis_url)):
        execution_id = await start_run(client, platform.router_url, account, workflow_id)
        answer = await _cancel(client, platform, account, execution_id)
        assert answer["execution"]["status"] == "CANCELLED"
    await asyncio.sleep(1)  # the worker is back and takes the job: it must leave it be
    found = await execution(client, platform.router_url, account, execution_id)
    assert found["status"] == "CANCELLED"
    assert found["nodes"] == []


async def test_wait_parks_and_a_deferred_job_wakes_the_execution(platform, client):
    account = await sign_up(client, platform.router_url, "Waiters")
    wait = node("Wait", "wait", typeVersion=1.1, parameters={"amount": 1, "unit": "seconds"})
    definition = _line(node("Start", "manualTrigger"), wait, node("After"))
    workflow_id = await create_workflow(client, platform.router_url, account, "Short", definition)
    execution_id = await start_run(
        client, platform.router_url, account, workflow_id, [{"order": 42}]
    )
    parked = await wait_for_status(
        client, platform.router_url, account, execution_id, ("WAITING", "SUCCEEDED")
    )
    assert parked["status"] == "WAITING"
    done = await wait_for_status(client, platform.router_url, account, execution_id, seconds=20)
    assert done["status"] == "SUCCEEDED", done
    assert output(done, "After") == [{"order": 42}]


async def test_a_wait_already_over_when_it_parks_wakes_the_execution(platform, client):
    """A wait that is over at once (0 seconds) parks the execution, and its wake-up job is
    due as soon as it is enqueued, maybe before the run that parked it lets go of the
    execution's lease (that job then tries again a second later, see test_runs.py).
    Thirty in a row all finish, each with its own items."""
    account = await sign_up(client, platform.router_url, "Zero waits")
    wait = node("Wait", "wait", typeVersion=1.1, parameters={"amount": 0, "unit": "seconds"})
    definition = _line(node("Start", "manualTrigger"), wait, node("After"))
    workflow_id = await create_workflow(client, platform.router_url, account, "Zero", definition)
    ids = [
        await start_run(client, platform.router_url, account, workflow_id, [{"n": n}])
        for n in range(30)
    ]
    for n, execution_id in enumerate(ids):
        done = await wait_for_status(client, platform.router_url, account, execution_id)
        assert done["status"] == "SUCCEEDED", done
        assert output(done, "After") == [{"n": n}]


async def test_an_execution_cannot_be_cancelled_by_a_viewer(platform, client):
    from dataclasses import replace

    account = await sign_up(client, platform.router_url, "Viewer cancels")
    workflow_id = await create_workflow(client, platform.router_url, account, "Done")
    finished = await run_and_wait(client, platform.router_url, account, workflow_id)
    assert finished["status"] == "SUCCEEDED"
    key = data(
        await gql(
            client,
            platform.router_url,
            'mutation { createApiKey(input: {name: "v", role: "viewer"}) '
            "{ ... on CreateApiKeySuccess { secret } } }",
            token=account.token,
        )
    )["createApiKey"]["secret"]
    query = "{ executions { edges { node { id } } } }"
    edges = data(await gql(client, platform.router_url, query, token=account.token))["executions"][
        "edges"
    ]
    answer = await _cancel(client, platform, replace(account, token=key), edges[0]["node"]["id"])
    assert answer["__typename"] == "ForbiddenError"


async def test_a_wait_for_a_call_goes_on_when_its_resume_url_is_called(platform, client):
    account = await sign_up(client, platform.router_url, "Approvers")
    wait = node("Approval", "wait", typeVersion=1.1, parameters={"resume": "webhook"})
    definition = _line(node("Start", "manualTrigger"), wait, node("After"))
    workflow_id = await create_workflow(
        client, platform.router_url, account, "Needs OK", definition
    )
    execution_id = await start_run(client, platform.router_url, account, workflow_id)
    await wait_for_status(client, platform.router_url, account, execution_id, ("WAITING",))
    path = data(
        await gql(
            client,
            platform.router_url,
            "query ($id: ID!) { execution(id: $id) { resumePath } }",
            {"id": execution_id},
            account.token,
        )
    )["execution"]["resumePath"]
    assert path.startswith(f"/webhook-waiting/{execution_id}/")
    base = platform.urls["executions"].removesuffix("/graphql")
    forged = await client.post(f"{base}/webhook-waiting/{execution_id}/{'0' * 32}", json={})
    assert forged.status_code == 404
    answer = await client.post(f"{base}{path}", json={"approved": True})
    assert answer.status_code == 202
    again = await client.post(f"{base}{path}", json={"approved": False})
    assert again.status_code == 409  # one call resumes it
    done = await wait_for_status(client, platform.router_url, account, execution_id)
    assert done["status"] == "SUCCEEDED", done
    [after] = output(done, "After")
    assert after["body"] == {"approved": True}


async def test_cancelling_a_parent_cancels_the_sub_workflow_it_waits_for(platform, client, hanging):
    url, arrived = hanging
    account = await sign_up(client, platform.router_url, "Family cancellers")
    call_out = node("Call", "httpRequest", typeVersion=4.2, parameters={"url": url})
    child = await create_workflow(
        client,
        platform.router_url,
        account,
        "Hanging child",
        _line(node("In", "executeWorkflowTrigger"), call_out),
    )
    parent = await create_workflow(
        client,
        platform.router_url,
        account,
        "Waiting parent",
        _line(
            node("Start", "manualTrigger"),
            node("Run child", "executeWorkflow", parameters={"workflowId": child}),
        ),
    )
    parent_id = await start_run(client, platform.router_url, account, parent)
    await asyncio.wait_for(arrived.wait(), 30)
    answer = await _cancel(client, platform, account, parent_id)
    assert answer["__typename"] == "CancelExecutionSuccess"
    done = await wait_for_status(client, platform.router_url, account, parent_id, seconds=10)
    assert done["status"] == "CANCELLED"
    children = data(
        await gql(
            client,
            platform.router_url,
            """query ($id: ID!) { executions(filter: {workflowId: $id}) {
              edges { node { id parentId } } } }""",
            {"id": child},
            account.token,
        )
    )["executions"]["edges"]
    assert [c["node"]["parentId"] for c in children] == [parent_id]
    ended = await wait_for_status(
        client, platform.router_url, account, children[0]["node"]["id"], seconds=10
    )
    assert ended["status"] == "CANCELLED"
    assert ended["error"]["message"] == f"cancelled by {account.user_id} (with its parent)"


async def test_a_workflow_hands_out_its_resume_url_and_a_call_to_it_wakes_the_wait(
    platform, client
):
    """n8n's approval pattern: a node sends `$execution.resumeUrl` to someone, a Wait
    for a call parks the execution, and the call to that URL wakes it."""
    sent: asyncio.Queue[str] = asyncio.Queue()

    async def notify(request: Request) -> Response:
        await sent.put(request.query_params["link"])
        return JSONResponse({"sent": True})

    async with serve(Starlette(routes=[Route("/notify", notify)])) as mailer:
        account = await sign_up(client, platform.router_url, "Link approvers")
        link = "encodeURIComponent($execution.resumeUrl)"
        url = f"={{{{ '{mailer}/notify?link=' + {link} }}}}"
        ask = node("Ask", "httpRequest", typeVersion=4.2, parameters={"url": url})
        wait = node("Approval", "wait", typeVersion=1.1, parameters={"resume": "webhook"})
        definition = _line(node("Start", "manualTrigger"), ask, wait, node("After"))
        workflow_id = await create_workflow(
            client, platform.router_url, account, "Asks by link", definition
        )
        execution_id = await start_run(client, platform.router_url, account, workflow_id)
        link_sent = await asyncio.wait_for(sent.get(), 30)
    base = platform.urls["executions"].removesuffix("/graphql")
    assert link_sent.startswith(f"{base}/webhook-waiting/{execution_id}/")
    await wait_for_status(client, platform.router_url, account, execution_id, ("WAITING",))
    answer = await client.post(link_sent, json={"approved": "yes"})
    assert answer.status_code == 202
    done = await wait_for_status(client, platform.router_url, account, execution_id)
    assert done["status"] == "SUCCEEDED", done
    [after] = output(done, "After")
    assert after["body"] == {"approved": "yes"}
