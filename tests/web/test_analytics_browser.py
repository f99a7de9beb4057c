"""The analytics page in real headless Chromium, against the real router, AI service and
worker: executions the worker ran (one failed by a Stop and Error node) show in the
totals, as drawn bars of the right proportions and in the table by workflow once its
cron rolled them up; the breakdown, the workflow filter and the range change in place
(HTMX), and a range too long is refused in words."""

from __future__ import annotations

import asyncio
import re
import secrets
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from playwright.async_api import Page, expect

from klikkflow.platform import Platform
from tests.factories.executions import run_and_wait
from tests.factories.graphql import data, gql
from tests.factories.identity import Account
from tests.factories.workflows import chain, create_workflow, link, node

pytestmark = pytest.mark.browser

TOTALS = """query ($input: AnalyticsInput!) { analytics(input: $input) {
  ... on ExecutionAnalytics { totals { executions } } } }"""


async def sign_up(page: Page, web_url: str) -> Account:
    tag = secrets.token_hex(3)
    await page.goto(f"{web_url}/signup")
    await page.fill("#field-email", f"charts-{tag}@example.com")
    await page.fill("#field-name", f"Chas Charts {tag}")
    await page.fill("#field-password", f"{secrets.token_urlsafe(12)}-Ch7!")
    await page.fill("#field-organizationName", f"Charts Org {tag}")
    await page.click("#signup-form button[type=submit]")
    await expect(page).to_have_url(f"{web_url}/")
    cookies = {c["name"]: c["value"] for c in await page.context.cookies()}
    return Account(cookies["kf_token"], "", "", "")


def failing() -> dict[str, Any]:
    stop = node("Stop", "stopAndError", parameters={"errorMessage": "no"})
    return {"nodes": [node("Start", "manualTrigger"), stop], "connections": [link("Start", "Stop")]}


async def run_and_roll_up(platform: Platform, account: Account) -> None:
    """Two succeeded runs of "Nightly sync", one failed of "Invoice check"; returns once
    the worker's rollup counted the three."""
    router = platform.router_url
    async with httpx.AsyncClient(timeout=30, trust_env=False) as client:
        good = await create_workflow(client, router, account, "Nightly sync", chain("A"))
        bad = await create_workflow(client, router, account, "Invoice check", failing())
        runs = [await run_and_wait(client, router, account, w) for w in (good, good, bad)]
        assert [r["status"] for r in runs] == ["SUCCEEDED", "SUCCEEDED", "FAILED"]
        today = datetime.now(UTC).date()
        window = {"from": (today - timedelta(days=29)).isoformat(), "to": today.isoformat()}
        counted = 0
        for _ in range(120):
            answer = await gql(client, router, TOTALS, {"input": window}, account.token)
            counted = data(answer)["analytics"]["totals"]["executions"]
            if counted >= 3:
                return
            await asyncio.sleep(0.25)
    raise AssertionError(f"the rollup counted {counted} of 3 executions")


async def test_executions_are_charted_and_regrouped_in_the_browser(
    page: Page, web_url: str, platform: Platform
) -> None:
    account = await sign_up(page, web_url)
    await run_and_roll_up(platform, account)
    await page.click(".site-nav a:has-text('AI')")
    await page.click("[data-hub=analytics]")
    await expect(page).to_have_url(f"{web_url}/analytics")
    await expect(page.locator("h1")).to_have_text("Analytics")

    totals = page.locator(".analytics-totals")
    await expect(totals.locator("[data-total=executions] dd")).to_have_text("3")
    await expect(totals.locator("[data-total=failed] dd")).to_have_text("1")
    await expect(totals.locator("[data-total=failure-rate] dd")).to_have_text("33.3%")

    # Today's bar, as drawn: succeeded twice as tall as failed, stacked under it.
    today = datetime.now(UTC).date()
    bars = page.locator("#chart-executions g.chart-bar")
    await expect(bars).to_have_count(30)  # the last 30 days by default, empty ones too
    bar = page.locator(f'#chart-executions g.chart-bar[data-category="{today}"]')
    succeeded = await bar.locator("rect[data-series=succeeded]").bounding_box()
    failed = await bar.locator("rect[data-series=failed]").bounding_box()
    assert succeeded
    assert failed
    assert succeeded["height"] == pytest.approx(2 * failed["height"], rel=0.02)
    assert failed["y"] + failed["height"] == pytest.approx(succeeded["y"], abs=0.5)
    tooltip = await bar.locator("title").text_content()
    assert tooltip == f"{today:%a} {today}: 3 executions (Succeeded 2; Failed 1; Cancelled 0)"
    point = page.locator(f'#chart-failure-rate circle[data-category="{today}"]')
    await expect(point).to_have_attribute("data-value", "0.333333")
    await expect(page.locator("#chart-duration circle")).to_have_count(2)  # average, longest

    table = page.locator(".analytics-breakdown tbody tr")
    await expect(table).to_have_count(2)
    await expect(table.nth(0).locator("th")).to_have_text("Nightly sync")
    await expect(table.nth(0).locator("[data-cell=executions]")).to_have_text("2")
    await expect(table.nth(1).locator("th")).to_have_text("Invoice check")
    await expect(table.nth(1).locator("[data-cell=failure-rate]")).to_have_text("100%")

    # Another breakdown: only the results change, and the address says so.
    await page.select_option("#analytics-group", "mode")
    await expect(page.locator(".analytics-breakdown h2")).to_have_text("By trigger")
    await expect(table).to_have_count(1)
    await expect(table.nth(0).locator("th")).to_have_text("manual")
    await expect(table.nth(0).locator("[data-cell=executions]")).to_have_text("3")
    await expect(page).to_have_url(re.compile(r"/analytics\?range=30&.*group=mode"))

    await page.select_option("#analytics-group", "day_and_workflow")
    legend = page.locator("#chart-workflows-by-day .chart-legend li")
    await expect(legend).to_have_text(["Nightly sync", "Invoice check"])

    # One workflow, over the last 7 days: the form's days follow.
    await page.select_option("#analytics-workflow", label="Invoice check")
    await expect(totals.locator("[data-total=executions] dd")).to_have_text("1")
    await expect(totals.locator("[data-total=failure-rate] dd")).to_have_text("100%")
    await page.select_option("#analytics-range", "7")
    await expect(bars).to_have_count(7)
    await expect(page.locator("#analytics-from")).to_have_value(str(today - timedelta(days=6)))

    # A day typed by hand makes the range custom; over a year is refused in words.
    await page.fill("#analytics-from", str(today - timedelta(days=400)))
    await expect(page.locator("#analytics-range")).to_have_value("custom")
    alert = page.locator("#analytics-results [role=alert]")
    await expect(alert).to_have_text("These dates were refused. To: the range is at most 366 days")
    await expect(page.locator("#chart-executions")).to_have_count(0)
    await page.fill("#analytics-from", str(today - timedelta(days=1)))
    await expect(alert).to_have_count(0)
    await expect(bars).to_have_count(2)
    await expect(totals.locator("[data-total=executions] dd")).to_have_text("1")
