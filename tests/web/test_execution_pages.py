"""The execution pages over plain HTTP, against the real router, subgraphs and worker: the
list, one execution with its node outputs, cancel, run and run again, and the SSE stream
that carries an execution's header and timeline while it runs."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from tests.factories.executions import start_run, wait_for_status
from tests.factories.identity import Account, sign_up
from tests.factories.workflows import chain, create_workflow, link, node
from tests.web.test_workflow_pages import visible

WAIT_AN_HOUR = {
    "id": "w",
    "name": "Wait",
    "type": "wait",
    "typeVersion": 1.1,
    "parameters": {"amount": 1, "unit": "hours"},
}


def waits(seconds_or_hour: dict[str, Any]) -> dict[str, Any]:
    """Manual Trigger → the given Wait → Done (a No Op)."""
    nodes = [node("Start", "manualTrigger"), seconds_or_hour, node("Done")]
    return {"nodes": nodes, "connections": [link("Start", "Wait"), link("Wait", "Done")]}


@pytest.fixture
async def owner(client: httpx.AsyncClient, platform: Any) -> Account:
    return await sign_up(client, platform.router_url, "Execution Watchers")


@pytest.fixture
async def web(web_url: str, owner: Account) -> AsyncIterator[httpx.AsyncClient]:
    """The dashboard as the owner's browser: their token cookie, then a CSRF cookie."""
    cookies = {"kf_token": owner.token}
    async with httpx.AsyncClient(
        base_url=web_url, cookies=cookies, trust_env=False, timeout=20
    ) as browser:
        assert (await browser.get("/executions")).status_code == 200
        yield browser


def csrf(web: httpx.AsyncClient) -> str:
    return web.cookies["kf_csrf"]


def row(markup: str, execution_id: str) -> str:
    start = markup.index(f'data-execution="{execution_id}"')
    return markup[start : markup.index("</tr>", start)]


def sse_events(text: str) -> list[tuple[str, str | None, str]]:
    """(event, id, data) of each server-sent event in ``text``."""
    found = []
    for block in text.split("\n\n"):
        fields = [line.partition(": ") for line in block.splitlines() if line[:1] != ":"]
        if not fields:
            continue
        name = next((v for k, _, v in fields if k == "event"), "message")
        event_id = next((v for k, _, v in fields if k == "id"), None)
        found.append((name, event_id, "\n".join(v for k, _, v in fields if k == "data")))
    return found


def status_of(head: str) -> str:
    found = re.search(r'id="execution-status" data-status="([a-z]+)"', head)
    assert found, head
    return found.group(1)


async def test_the_execution_pages_need_a_session(web_url: str) -> None:
    async with httpx.AsyncClient(base_url=web_url, trust_env=False) as anonymous:
        response = await anonymous.get("/executions")

    assert response.status_code == 303
    assert response.headers["location"] == "/login?next=%2Fexecutions"


async def test_the_list_shows_a_finished_execution(
    web: httpx.AsyncClient, client: httpx.AsyncClient, platform: Any, owner: Account
) -> None:
    workflow_id = await create_workflow(
        client, platform.router_url, owner, "Nightly tidy", chain("Tidy")
    )
    other_id = await create_workflow(client, platform.router_url, owner, "Other flow")
    execution_id = await start_run(client, platform.router_url, owner, workflow_id)
    done = await wait_for_status(client, platform.router_url, owner, execution_id)
    assert done["status"] == "SUCCEEDED"

    listing = await web.get("/executions")
    of_workflow = await web.get(f"/workflows/{workflow_id}/executions")
    of_other = await web.get(f"/workflows/{other_id}/executions")

    shown = row(listing.text, execution_id)
    assert 'data-status="succeeded"' in shown
    assert "Nightly tidy" in visible(shown)
    assert "manual" in visible(shown)
    assert "v1" in visible(shown)
    assert re.search(r"\d+(\.\d)? (ms|s)", visible(shown))  # how long it took
    assert "Cancel" not in shown  # only unfinished runs can be cancelled
    assert 'data-live="false"' in listing.text  # nothing left to follow: no polling
    assert 'aria-current="page">Executions</a>' in listing.text
    assert "Executions of Nightly tidy" in visible(of_workflow.text)
    assert execution_id in of_workflow.text
    assert execution_id not in of_other.text
    assert "No executions yet" in visible(of_other.text)


async def test_the_execution_page_shows_each_nodes_items(
    web: httpx.AsyncClient, client: httpx.AsyncClient, platform: Any, owner: Account
) -> None:
    workflow_id = await create_workflow(
        client, platform.router_url, owner, "Greeter", chain("Greet")
    )
    items = [{"json": {"name": "Ada Lovelace"}}]
    execution_id = await start_run(client, platform.router_url, owner, workflow_id, items)
    await wait_for_status(client, platform.router_url, owner, execution_id)

    page = await web.get(f"/executions/{execution_id}")

    assert page.status_code == 200
    text = visible(page.text)
    assert status_of(page.text) == "succeeded"
    assert "Greeter" in text
    assert f'href="/workflows/{workflow_id}"' in page.text
    runs = re.findall(
        r'<li class="node-run[^"]*" data-node="([^"]+)"[^>]*data-status="(\w+)"', page.text
    )
    assert runs == [("Start", "succeeded"), ("Greet", "succeeded")]
    greet = page.text[page.text.index('data-node="Greet"') :]
    output = greet[greet.index('data-kind="output"') :]
    shown = output[output.index("<pre") : output.index("</pre>")]
    shown_items = json.loads(re.sub(r"<[^>]+>", "", shown).replace("&#34;", '"'))
    assert [item["json"] for item in shown_items] == [{"name": "Ada Lovelace"}]
    assert "sse-connect" not in page.text  # finished: nothing to follow
    assert "Cancel" not in text


async def test_many_items_are_shown_in_part(
    web: httpx.AsyncClient, client: httpx.AsyncClient, platform: Any, owner: Account
) -> None:
    workflow_id = await create_workflow(client, platform.router_url, owner, "Bulk", chain("Pass"))
    items = [{"json": {"n": n, "text": "x" * 2000}} for n in range(30)]
    execution_id = await start_run(client, platform.router_url, owner, workflow_id, items)
    await wait_for_status(client, platform.router_url, owner, execution_id)

    page = await web.get(f"/executions/{execution_id}")

    assert "Showing the first 20 of 30 items." in visible(page.text)
    assert "30 items" in visible(page.text)
    assert '"n": 29' not in page.text.replace("&#34;", '"')


async def test_cancel_a_waiting_execution_from_the_list(
    web: httpx.AsyncClient, client: httpx.AsyncClient, platform: Any, owner: Account
) -> None:
    workflow_id = await create_workflow(
        client, platform.router_url, owner, "Sleeps an hour", waits(WAIT_AN_HOUR)
    )
    execution_id = await start_run(client, platform.router_url, owner, workflow_id)
    await wait_for_status(client, platform.router_url, owner, execution_id, ("WAITING",))

    listing = await web.get(f"/workflows/{workflow_id}/executions")
    shown = row(listing.text, execution_id)
    assert 'data-status="waiting"' in shown
    assert 'data-live="true"' in listing.text
    assert 'hx-trigger="every 2s"' in listing.text  # the list follows it
    detail = await web.get(f"/executions/{execution_id}")
    assert status_of(detail.text) == "waiting"
    assert f'sse-connect="/executions/{execution_id}/events"' in detail.text
    assert re.findall(
        r'data-node="([^"]+)" data-run-index="0" data-status="(\w+)"', detail.text
    ) == [("Start", "succeeded"), ("Wait", "waiting")]

    cancelled = await web.post(
        f"/executions/{execution_id}/cancel",
        data={"csrf_token": csrf(web), "workflow_id": workflow_id},
        headers={"HX-Request": "true", "HX-Target": "execution-list"},
    )

    assert cancelled.status_code == 200
    assert 'id="execution-list"' in cancelled.text  # the list fragment, not a page
    assert "<html" not in cancelled.text
    assert "Cancelled." in visible(cancelled.text)
    assert 'data-status="cancelled"' in row(cancelled.text, execution_id)
    assert "Cancel</button>" not in row(cancelled.text, execution_id)
    found = await wait_for_status(client, platform.router_url, owner, execution_id, seconds=5)
    assert found["status"] == "CANCELLED"


async def test_cancel_needs_the_forms_token(
    web: httpx.AsyncClient, client: httpx.AsyncClient, platform: Any, owner: Account
) -> None:
    workflow_id = await create_workflow(
        client, platform.router_url, owner, "Sleeps too", waits(WAIT_AN_HOUR)
    )
    execution_id = await start_run(client, platform.router_url, owner, workflow_id)
    await wait_for_status(client, platform.router_url, owner, execution_id, ("WAITING",))

    forged = await web.post(f"/executions/{execution_id}/cancel", data={"csrf_token": "x" * 40})
    page = await web.post(f"/executions/{execution_id}/cancel", data={"csrf_token": csrf(web)})
    again = await web.post(
        f"/executions/{execution_id}/cancel",
        data={"csrf_token": csrf(web)},
        headers={"HX-Request": "true", "HX-Target": "execution-head"},
    )

    assert forged.status_code == 403
    assert page.status_code == 303
    assert page.headers["location"] == f"/executions/{execution_id}"
    assert status_of(again.text) == "cancelled"
    assert "<html" not in again.text
    assert 'role="alert"' in again.text  # a second cancel is refused, and says why


async def test_run_from_the_workflow_page_and_run_again(
    web: httpx.AsyncClient, client: httpx.AsyncClient, platform: Any, owner: Account
) -> None:
    workflow_id = await create_workflow(client, platform.router_url, owner, "Echo", chain("Echo"))
    items = [{"json": {"order": 7}}]
    first_id = await start_run(client, platform.router_url, owner, workflow_id, items)
    await wait_for_status(client, platform.router_url, owner, first_id)

    workflow_page = await web.get(f"/workflows/{workflow_id}")
    run = await web.post(f"/workflows/{workflow_id}/run", data={"csrf_token": csrf(web)})
    again = await web.post(
        f"/executions/{first_id}/rerun",
        data={"csrf_token": csrf(web)},
        headers={"HX-Request": "true"},
    )

    assert 'id="workflow-run"' in workflow_page.text
    assert f'href="/workflows/{workflow_id}/executions"' in workflow_page.text
    assert run.status_code == 303
    run_id = run.headers["location"].removeprefix("/executions/")
    assert run.headers["location"] == f"/executions/{run_id}"
    manual = await wait_for_status(client, platform.router_url, owner, run_id)
    assert manual["status"] == "SUCCEEDED"
    assert again.status_code == 204
    rerun_id = again.headers["HX-Redirect"].removeprefix("/executions/")
    assert rerun_id not in (first_id, run_id)
    rerun = await wait_for_status(client, platform.router_url, owner, rerun_id)
    [echo] = [n for n in rerun["nodes"] if n["node"] == "Echo"]
    assert [i["json"] for i in echo["outputs"]["main"]] == [{"order": 7}]  # the same items


async def test_the_event_stream_of_a_finished_execution_ends_at_once(
    web: httpx.AsyncClient, client: httpx.AsyncClient, platform: Any, owner: Account
) -> None:
    workflow_id = await create_workflow(client, platform.router_url, owner, "Quick")
    execution_id = await start_run(client, platform.router_url, owner, workflow_id)
    done = await wait_for_status(client, platform.router_url, owner, execution_id)
    assert done["status"] == "SUCCEEDED"

    response = await web.get(f"/executions/{execution_id}/events")

    assert response.headers["content-type"].startswith("text/event-stream")
    events = sse_events(response.text)
    assert [name for name, _, _ in events] == ["head", "timeline", "done"]
    assert status_of(events[0][2]) == "succeeded"
    assert 'data-node="Start"' in events[1][2]


async def test_the_event_stream_follows_a_run_until_it_finishes(
    web: httpx.AsyncClient, client: httpx.AsyncClient, platform: Any, owner: Account
) -> None:
    wait = {**WAIT_AN_HOUR, "parameters": {"amount": 2, "unit": "seconds"}}
    workflow_id = await create_workflow(client, platform.router_url, owner, "Naps", waits(wait))
    execution_id = await start_run(client, platform.router_url, owner, workflow_id)

    events = []
    async with web.stream("GET", f"/executions/{execution_id}/events", timeout=30) as response:
        assert response.status_code == 200
        text = ""
        async for chunk in response.aiter_text():
            text += chunk
            if "event: done" in text:
                break
        events = sse_events(text)

    heads = [(event_id, status_of(data)) for name, event_id, data in events if name == "head"]
    assert heads[0][1] in ("queued", "running", "waiting")  # it was followed while it ran
    assert heads[-1][1] == "succeeded"
    assert len(heads) >= 2
    assert all(event_id for event_id, _ in heads[1:])  # router cursors, to resume after
    assert events[-1][0] == "done"
    timeline = [data for name, _, data in events if name == "timeline"][-1]
    assert re.findall(r'data-node="([^"]+)"', timeline) == ["Start", "Wait", "Done"]


async def test_resuming_the_stream_after_the_last_event_sent(
    web: httpx.AsyncClient, client: httpx.AsyncClient, platform: Any, owner: Account
) -> None:
    """A browser that reconnects sends Last-Event-ID: the stream goes on from there."""
    workflow_id = await create_workflow(
        client, platform.router_url, owner, "Sleeps again", waits(WAIT_AN_HOUR)
    )
    execution_id = await start_run(client, platform.router_url, owner, workflow_id)
    await wait_for_status(client, platform.router_url, owner, execution_id, ("WAITING",))

    async with web.stream("GET", f"/executions/{execution_id}/events") as response:
        text = ""
        async for chunk in response.aiter_text():
            text += chunk
            if len([e for e in sse_events(text) if e[0] == "timeline"]) >= 2:
                break
    last_id = [event_id for name, event_id, _ in sse_events(text) if event_id][-1]

    async def cancel_soon() -> httpx.Response:
        await asyncio.sleep(0.5)
        return await web.post(f"/executions/{execution_id}/cancel", data={"csrf_token": csrf(web)})

    headers = {"Last-Event-ID": last_id}
    async with web.stream("GET", f"/executions/{execution_id}/events", headers=headers) as resumed:
        cancelling = asyncio.create_task(cancel_soon())
        text = ""
        async for chunk in resumed.aiter_text():
            text += chunk
            if "event: done" in text:
                break
    assert (await cancelling).status_code == 303

    heads = [
        (event_id, status_of(data)) for name, event_id, data in sse_events(text) if name == "head"
    ]
    assert heads[0] == (last_id, "waiting")  # where the browser was
    assert heads[-1][1] == "cancelled"
    assert heads[-1][0] not in (None, last_id)  # the cancel's own event, after it


async def test_a_refused_run_says_why(web: httpx.AsyncClient) -> None:
    missing = "0" * 24

    fragment = await web.post(
        f"/workflows/{missing}/run", data={"csrf_token": csrf(web)}, headers={"HX-Request": "true"}
    )
    page = await web.post(f"/workflows/{missing}/run", data={"csrf_token": csrf(web)})

    assert fragment.status_code == 200
    assert 'data-error="NotFoundError"' in fragment.text
    assert "<html" not in fragment.text
    assert "HX-Redirect" not in fragment.headers
    assert page.status_code == 400
    assert "Not started" in visible(page.text)


async def test_another_organizations_execution_is_not_found(
    web: httpx.AsyncClient, client: httpx.AsyncClient, platform: Any
) -> None:
    stranger = await sign_up(client, platform.router_url, "Strangers")
    workflow_id = await create_workflow(client, platform.router_url, stranger, "Private")
    execution_id = await start_run(client, platform.router_url, stranger, workflow_id)
    await wait_for_status(client, platform.router_url, stranger, execution_id)

    page = await web.get(f"/executions/{execution_id}")
    events = await web.get(f"/executions/{execution_id}/events")
    listing = await web.get("/executions")
    rerun = await web.post(f"/executions/{execution_id}/rerun", data={"csrf_token": csrf(web)})

    assert page.status_code == 404
    assert events.status_code == 404
    assert not events.headers["content-type"].startswith("text/event-stream")
    assert execution_id not in listing.text
    assert rerun.status_code == 404


async def test_a_failed_execution_shows_its_error_and_the_failed_node(
    web: httpx.AsyncClient, client: httpx.AsyncClient, platform: Any, owner: Account
) -> None:
    stop = node("Refuse", "stopAndError", typeVersion=1, parameters={"errorMessage": "No stock"})
    definition = {
        "nodes": [node("Start", "manualTrigger"), stop],
        "connections": [link("Start", "Refuse")],
    }
    workflow_id = await create_workflow(client, platform.router_url, owner, "Fails", definition)
    execution_id = await start_run(client, platform.router_url, owner, workflow_id)
    found = await wait_for_status(client, platform.router_url, owner, execution_id)
    assert found["status"] == "FAILED"

    page = await web.get(f"/executions/{execution_id}")
    listing = await web.get("/executions")

    assert status_of(page.text) == "failed"
    error = page.text[page.text.index('id="execution-error"') :]
    assert "No stock" in visible(error[: error.index("</div>")])
    assert "in Refuse" in visible(error[: error.index("</div>")])
    refused = page.text[page.text.index('data-node="Refuse"') :]
    assert 'data-status="failed"' in refused[:200]
    assert "No stock" in visible(refused[: refused.index("</li>")])
    assert "Refuse: No stock" in visible(row(listing.text, execution_id))


def failing() -> dict[str, Any]:
    """Manual Trigger → Stop and Error ("x")."""
    stop = node("Stop", "stopAndError", typeVersion=1, parameters={"errorMessage": "x"})
    return {"nodes": [node("Start", "manualTrigger"), stop], "connections": [link("Start", "Stop")]}


async def test_retry_a_failed_execution_from_its_failed_node(
    web: httpx.AsyncClient, client: httpx.AsyncClient, platform: Any, owner: Account
) -> None:
    router = platform.router_url
    workflow_id = await create_workflow(client, router, owner, "Stops", failing())
    failed_id = await start_run(client, router, owner, workflow_id)
    assert (await wait_for_status(client, router, owner, failed_id))["status"] == "FAILED"
    fine_id = await start_run(client, router, owner, await create_workflow(client, router, owner))
    await wait_for_status(client, router, owner, fine_id)

    failed_page = await web.get(f"/executions/{failed_id}")
    fine_page = await web.get(f"/executions/{fine_id}")
    retried = await web.post(
        f"/executions/{failed_id}/retry",
        data={"csrf_token": csrf(web)},
        headers={"HX-Request": "true"},
    )
    refused = await web.post(
        f"/executions/{fine_id}/retry",
        data={"csrf_token": csrf(web)},
        headers={"HX-Request": "true"},
    )

    assert "Retry from failed node</button>" in failed_page.text
    assert "Retry from failed node" not in fine_page.text  # only failed runs go on
    assert retried.status_code == 204
    retry_id = retried.headers["HX-Redirect"].removeprefix("/executions/")
    assert retry_id != failed_id
    retry = await wait_for_status(client, router, owner, retry_id)
    assert retry["mode"] == "retry"
    assert retry["workflowVersion"] == 1
    assert [(n["node"], n["status"]) for n in retry["nodes"]] == [
        ("Start", "succeeded"),  # kept from the failed execution
        ("Stop", "failed"),  # the failed node ran again
    ]
    assert refused.status_code == 200
    assert 'data-error="ValidationError"' in refused.text
    assert "only a failed execution goes on from its failed node" in visible(refused.text)
    assert "HX-Redirect" not in refused.headers


async def test_delete_a_finished_execution(
    web: httpx.AsyncClient, client: httpx.AsyncClient, platform: Any, owner: Account
) -> None:
    router = platform.router_url
    workflow_id = await create_workflow(client, router, owner, "Done soon", chain("Tidy"))
    kept_id = await start_run(client, router, owner, workflow_id)
    gone_id = await start_run(client, router, owner, workflow_id)
    for execution_id in (kept_id, gone_id):
        await wait_for_status(client, router, owner, execution_id)
    assert gone_id in (await web.get("/executions")).text

    page = await web.get(f"/executions/{gone_id}")
    deleted = await web.post(
        f"/executions/{gone_id}/delete",
        data={"csrf_token": csrf(web)},
        headers={"HX-Request": "true"},
    )
    forged = await web.post(f"/executions/{kept_id}/delete", data={"csrf_token": "x" * 40})

    assert "Delete</button>" in page.text
    assert 'hx-confirm="Delete this execution' in page.text  # asks first
    assert deleted.status_code == 204
    assert deleted.headers["HX-Redirect"] == "/executions"  # back to the list
    listing = await web.get("/executions")
    assert gone_id not in listing.text
    assert kept_id in listing.text
    assert (await web.get(f"/executions/{gone_id}")).status_code == 404
    assert forged.status_code == 403
    again = await web.post(f"/executions/{gone_id}/delete", data={"csrf_token": csrf(web)})
    assert again.status_code == 404


async def test_an_unfinished_execution_is_not_deleted(
    web: httpx.AsyncClient, client: httpx.AsyncClient, platform: Any, owner: Account
) -> None:
    workflow_id = await create_workflow(
        client, platform.router_url, owner, "Sleeps on", waits(WAIT_AN_HOUR)
    )
    execution_id = await start_run(client, platform.router_url, owner, workflow_id)
    await wait_for_status(client, platform.router_url, owner, execution_id, ("WAITING",))

    page = await web.get(f"/executions/{execution_id}")
    refused = await web.post(
        f"/executions/{execution_id}/delete",
        data={"csrf_token": csrf(web)},
        headers={"HX-Request": "true"},
    )
    plain = await web.post(f"/executions/{execution_id}/delete", data={"csrf_token": csrf(web)})

    assert 'id="execution-delete"' not in page.text  # cancel it first
    assert 'data-error="ValidationError"' in refused.text
    assert "cancel it first" in visible(refused.text)
    assert plain.status_code == 400
    assert "Not deleted" in visible(plain.text)
    assert execution_id in (await web.get("/executions")).text
