"""A workflow's triggers on its page, over plain HTTP against the real router, subgraphs
and executions service: activate a Webhook workflow and see its endpoint (which answers),
a second workflow refused the same path (with a link to the holder), deactivate frees it,
schedules with their next run, and an archived workflow refused."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from tests.factories.identity import Account, sign_up
from tests.factories.workflows import create_workflow, link, node
from tests.web.test_workflow_pages import visible

HOOK = {
    "id": "h",
    "name": "Hook",
    "type": "webhook",
    "typeVersion": 2,
    "parameters": {"path": "orders", "httpMethod": "POST"},
}


def hooked() -> dict[str, Any]:
    """Webhook (POST /orders) → Done."""
    return {"nodes": [HOOK, node("Done")], "connections": [link("Hook", "Done")]}


@pytest.fixture
async def owner(client: httpx.AsyncClient, platform: Any) -> Account:
    return await sign_up(client, platform.router_url, "Trigger Setters")


@pytest.fixture
async def web(web_url: str, owner: Account) -> AsyncIterator[httpx.AsyncClient]:
    """The dashboard as the owner's browser: their token cookie, then a CSRF cookie."""
    cookies = {"kf_token": owner.token}
    async with httpx.AsyncClient(
        base_url=web_url, cookies=cookies, trust_env=False, timeout=20
    ) as browser:
        assert (await browser.get("/workflows")).status_code == 200
        yield browser


def csrf(web: httpx.AsyncClient) -> str:
    return web.cookies["kf_csrf"]


def section(markup: str) -> str:
    start = markup.index('id="workflow-activation"')
    return markup[start : markup.index("</section>", start)]


def url_of(markup: str, node_name: str, kind: str) -> str | None:
    """The URL path a webhook row shows for ``kind`` (production or test)."""
    start = markup.index(f'data-webhook="{node_name}"')
    cell = markup[markup.index(f'data-url="{kind}"', start) :]
    cell = cell[: cell.index("</td>")]
    found = re.search(r'value="([^"]+)"', cell)
    return found.group(1) if found else None


async def post(web: httpx.AsyncClient, workflow_id: str, action: str) -> httpx.Response:
    return await web.post(
        f"/workflows/{workflow_id}/{action}",
        data={"csrf_token": csrf(web)},
        headers={"HX-Request": "true"},
    )


async def answers(client: httpx.AsyncClient, url: str, statuses: tuple[int, ...]) -> int:
    """POST to the executions service until it answers one of ``statuses`` (activation
    reaches its ingress within 2 s); the last status seen."""
    status = 0
    for _ in range(40):
        status = (await client.post(url, json={"order": 1})).status_code
        if status in statuses:
            break
        await asyncio.sleep(0.1)
    return status


async def test_activate_shows_the_webhook_endpoint_that_answers(
    web: httpx.AsyncClient, client: httpx.AsyncClient, platform: Any, owner: Account
) -> None:
    workflow_id = await create_workflow(client, platform.router_url, owner, "Orders", hooked())
    org = owner.organization_id

    before = await web.get(f"/workflows/{workflow_id}")
    activated = await post(web, workflow_id, "activate")

    off = section(before.text)
    assert 'data-active="false"' in off
    assert 'id="workflow-activate"' in off
    assert "Activate publishes the latest version, v1" in visible(off)
    assert url_of(off, "Hook", "production") is None  # nothing listens while off
    assert url_of(off, "Hook", "test") == f"/webhook-test/{org}/{workflow_id}/orders"
    assert activated.status_code == 200
    assert "<html" not in activated.text  # the workflow fragment
    on = section(activated.text)
    assert 'data-active="true"' in on
    assert "On: version 1's webhooks and schedules run." in visible(on)
    assert 'id="workflow-deactivate"' in on
    assert 'id="workflow-activate"' not in on
    assert 'id="workflow-published">v1<' in activated.text  # activating published v1
    row = on[on.index('data-webhook="Hook"') :]
    assert "POST" in visible(row[: row.index("</tr>")])
    production = url_of(on, "Hook", "production")
    assert production == f"/webhook/{org}/orders"
    assert 'data-copy="/webhook/' in on
    assert "port 4003 by default" in visible(on)
    base = platform.urls["executions"].removesuffix("/graphql")
    assert await answers(client, base + production, (202, 200)) in (202, 200)


async def test_a_path_in_use_is_refused_with_a_link_to_its_holder(
    web: httpx.AsyncClient, client: httpx.AsyncClient, platform: Any, owner: Account
) -> None:
    router = platform.router_url
    holder_id = await create_workflow(client, router, owner, "Orders intake", hooked())
    second_id = await create_workflow(client, router, owner, "Orders copy", hooked())
    assert (await post(web, holder_id, "activate")).status_code == 200

    refused = await post(web, second_id, "activate")
    page = await web.post(f"/workflows/{second_id}/activate", data={"csrf_token": csrf(web)})

    shown = section(refused.text)
    assert 'data-active="false"' in shown
    assert 'data-error="WebhookPathTakenError"' in shown
    assert "POST /orders is already used by another active workflow" in visible(shown)
    assert f'<a href="/workflows/{holder_id}" id="activation-holder">Orders intake</a>' in shown
    assert 'data-error="WebhookPathTakenError"' in page.text  # without htmx: the page

    deactivated = await post(web, holder_id, "deactivate")
    assert 'data-active="false"' in section(deactivated.text)
    assert "Off: its webhooks answer 404" in visible(section(deactivated.text))
    taken_over = await post(web, second_id, "activate")
    assert 'data-active="true"' in section(taken_over.text)
    assert "activation-error" not in taken_over.text


async def test_a_schedule_shows_its_time_zone_and_next_run(
    web: httpx.AsyncClient, client: httpx.AsyncClient, platform: Any, owner: Account
) -> None:
    cron = node(
        "Nightly",
        "scheduleTrigger",
        typeVersion=1.2,
        parameters={
            "rule": {"interval": [{"field": "cronExpression", "expression": "0 3 * * *"}]},
            "timezone": "Europe/Oslo",
        },
    )
    definition = {"nodes": [cron, node("Done")], "connections": [link("Nightly", "Done")]}
    workflow_id = await create_workflow(client, platform.router_url, owner, "Nightly", definition)

    activated = await post(web, workflow_id, "activate")

    shown = section(activated.text)
    row = shown[shown.index('data-schedule="Nightly"') :]
    row = visible(row[: row.index("</tr>")])
    assert "Europe/Oslo" in row
    assert re.search(r"\d{4}-\d\d-\d\d \d\d:\d\d UTC", row)
    assert "Webhook endpoints" not in visible(shown)


async def test_an_archived_workflow_cannot_be_activated(
    web: httpx.AsyncClient, client: httpx.AsyncClient, platform: Any, owner: Account
) -> None:
    workflow_id = await create_workflow(client, platform.router_url, owner, "Retired", hooked())
    await web.post(f"/workflows/{workflow_id}/archive", data={"csrf_token": csrf(web)})

    page = await web.get(f"/workflows/{workflow_id}")
    refused = await post(web, workflow_id, "activate")  # from a page loaded before
    forged = await web.post(f"/workflows/{workflow_id}/activate", data={"csrf_token": "x" * 40})

    assert 'id="workflow-activate"' not in section(page.text)
    assert "Restore it to turn it on" in visible(section(page.text))
    shown = section(refused.text)
    assert 'data-error="ValidationError"' in shown
    assert "an archived workflow cannot be activated: restore it" in visible(shown)
    assert 'data-active="false"' in shown
    assert forged.status_code == 403
