"""The execution pages in real headless Chromium, against the real router, subgraphs and
worker: Run on a workflow's page opens its execution, which follows the run over SSE
(the status and the timeline change in place, no reload) until it succeeds."""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest
from playwright.async_api import Page, expect

from tests.factories.executions import start_run, wait_for_status
from tests.factories.identity import sign_up
from tests.factories.workflows import create_workflow, link, node
from tests.web.test_workflow_browser import accept_dialogs, assert_same_document, mark_document

pytestmark = pytest.mark.browser


def waits(amount: int, unit: str) -> dict[str, Any]:
    """Manual Trigger → Wait → Done (a No Op)."""
    wait = {
        "id": "w",
        "name": "Wait",
        "type": "wait",
        "typeVersion": 1.1,
        "parameters": {"amount": amount, "unit": unit},
    }
    nodes = [node("Start", "manualTrigger"), wait, node("Done")]
    return {"nodes": nodes, "connections": [link("Start", "Wait"), link("Wait", "Done")]}


NAPS = waits(2, "seconds")


async def test_a_run_is_followed_live_until_it_succeeds(
    page: Page, web_url: str, platform: Any, client: httpx.AsyncClient
) -> None:
    owner = await sign_up(client, platform.router_url, "Live Watchers")
    workflow_id = await create_workflow(client, platform.router_url, owner, "Naps", NAPS)
    await page.context.add_cookies([{"name": "kf_token", "value": owner.token, "url": web_url}])
    navigations: list[str] = []

    await page.goto(f"{web_url}/workflows/{workflow_id}")
    await page.click("#workflow-run")
    await page.wait_for_url(f"{web_url}/executions/*")
    execution_url = page.url
    await mark_document(page)
    page.on("framenavigated", lambda frame: navigations.append(frame.url))

    status = page.locator("#execution-status")
    first_seen = await status.get_attribute("data-status")
    assert first_seen in ("queued", "running", "waiting"), first_seen
    await expect(status).to_have_attribute("data-status", "succeeded", timeout=30_000)
    await expect(status).to_have_text("succeeded")

    runs = page.locator("#execution-timeline .node-run")
    await expect(runs).to_have_count(3)
    await expect(runs.nth(2)).to_have_attribute("data-node", "Done")
    await expect(runs.nth(2)).to_have_attribute("data-status", "succeeded")
    await expect(page.locator("#execution-cancel")).to_have_count(0)  # nothing to cancel
    await assert_same_document(page)
    assert navigations == []
    assert page.url == execution_url

    # The items of a node open in place; the list shows the run as succeeded.
    output = runs.nth(2).locator('details[data-kind="output"]')
    await output.locator("summary").click()
    await expect(output.locator("pre")).to_be_visible()
    await page.click(".site-nav a:has-text('Executions')")
    row = page.locator(f'tr[data-execution="{execution_url.rsplit("/", 1)[-1]}"]')
    await expect(row).to_have_attribute("data-status", "succeeded")
    await expect(row).to_contain_text("Naps")


async def test_the_list_follows_unfinished_runs_and_cancels_one(
    page: Page, web_url: str, platform: Any, client: httpx.AsyncClient
) -> None:
    owner = await sign_up(client, platform.router_url, "List Watchers")
    router = platform.router_url
    sleeper = await create_workflow(client, router, owner, "Sleeper", waits(1, "hours"))
    napper = await create_workflow(client, router, owner, "Napper", NAPS)
    await page.context.add_cookies([{"name": "kf_token", "value": owner.token, "url": web_url}])
    page.on("dialog", accept_dialogs)  # Cancel asks first
    sleeping = await start_run(client, router, owner, sleeper)
    await wait_for_status(client, router, owner, sleeping, ("WAITING",))
    napping = await start_run(client, router, owner, napper)

    await page.goto(f"{web_url}/executions")
    await mark_document(page)
    nap_row = page.locator(f'tr[data-execution="{napping}"]')
    assert await nap_row.get_attribute("data-status") in ("queued", "running", "waiting")
    await expect(page.locator("#execution-list")).to_have_attribute("data-live", "true")

    # The unfinished run's row changes by itself; the other one is cancelled in place.
    await expect(nap_row).to_have_attribute("data-status", "succeeded", timeout=30_000)
    sleep_row = page.locator(f'tr[data-execution="{sleeping}"]')
    await expect(sleep_row).to_have_attribute("data-status", "waiting")
    await sleep_row.get_by_role("button", name="Cancel").click()
    await expect(page.locator("#execution-notice")).to_have_text("Cancelled.")
    await expect(sleep_row).to_have_attribute("data-status", "cancelled")
    await expect(sleep_row.get_by_role("button", name="Cancel")).to_have_count(0)
    await expect(page.locator("#execution-list")).to_have_attribute("data-live", "false")
    await assert_same_document(page)


async def test_retry_a_failed_run_then_delete_it(
    page: Page, web_url: str, platform: Any, client: httpx.AsyncClient
) -> None:
    owner = await sign_up(client, platform.router_url, "Retriers")
    stop = node("Stop", "stopAndError", typeVersion=1, parameters={"errorMessage": "x"})
    definition = {
        "nodes": [node("Start", "manualTrigger"), stop],
        "connections": [link("Start", "Stop")],
    }
    workflow_id = await create_workflow(client, platform.router_url, owner, "Stops", definition)
    failed_id = await start_run(client, platform.router_url, owner, workflow_id)
    await wait_for_status(client, platform.router_url, owner, failed_id)
    await page.context.add_cookies([{"name": "kf_token", "value": owner.token, "url": web_url}])
    page.on("dialog", accept_dialogs)  # Delete asks first

    await page.goto(f"{web_url}/executions/{failed_id}")
    await page.click("#execution-retry")
    await page.wait_for_url(re.compile(r"/executions/(?!" + failed_id + r")[0-9a-f]+$"))
    retry_id = page.url.rsplit("/", 1)[-1]
    await expect(page.locator("#execution-mode")).to_have_text("retry")
    await expect(page.locator("#execution-status")).to_have_attribute(
        "data-status", "failed", timeout=30_000
    )

    await page.click("#execution-delete")
    await page.wait_for_url(f"{web_url}/executions")
    await expect(page.locator(f'tr[data-execution="{failed_id}"]')).to_have_count(1)
    await expect(page.locator(f'tr[data-execution="{retry_id}"]')).to_have_count(0)
