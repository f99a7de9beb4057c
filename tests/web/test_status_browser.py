"""The status page in real headless Chromium, against the real router and subgraphs."""

from __future__ import annotations

import pytest
from playwright.async_api import Page, expect

pytestmark = pytest.mark.browser

SCREENSHOT = "/tmp/kf-status.png"

EXPECTED_STORES = {
    "identity": {"mongo", "redis"},
    "workflows": {"mongo"},
    "executions": {"mongo", "redis"},
    "ai": {"postgres", "mongo"},
}

# One HTMX refresh every 5 s: wait a little longer than one period.
REFRESH_TIMEOUT_MS = 9_000


async def test_status_page_shows_every_subgraph_ok_with_its_stores(
    page: Page, web_url: str
) -> None:
    requested: list[str] = []
    page.on("request", lambda request: requested.append(request.url))

    await page.goto(f"{web_url}/")

    await expect(page.locator("header .brand")).to_contain_text("KlikkFlow")
    await expect(page.locator(".banner")).to_have_count(0)
    for name, stores in EXPECTED_STORES.items():
        row = page.locator(f'tr[data-subgraph="{name}"]')
        await expect(row.locator(".badge")).to_have_text("ok")
        shown = await row.locator("[data-store]").evaluate_all(
            "items => items.map(item => item.dataset.store)"
        )
        assert set(shown) == stores, f"{name} shows stores {shown}"
        for store in stores:
            await expect(row.locator(f'[data-store="{store}"] .store-state')).to_have_text("ok")
            await expect(row.locator(f'[data-store="{store}"] .latency')).to_contain_text("ms")
    await page.screenshot(path=SCREENSHOT, full_page=True)
    assert all(url.startswith(web_url) for url in requested), f"off-site requests: {requested}"


async def test_status_table_refreshes_itself_through_htmx(page: Page, web_url: str) -> None:
    await page.goto(f"{web_url}/status")
    report = page.locator("#status .status-report")
    first_check = await report.get_attribute("data-checked-at")

    async with page.expect_request(
        lambda request: request.url == f"{web_url}/partials/status", timeout=REFRESH_TIMEOUT_MS
    ) as request_info:
        pass
    request = await request_info.value
    assert request.headers.get("hx-request") == "true"
    response = await request.response()
    assert response is not None
    assert response.status == 200

    await expect(report).not_to_have_attribute("data-checked-at", first_check or "")
    await expect(page.locator("#status tr[data-subgraph]")).to_have_count(4)
    await expect(page.locator('#status tr[data-state="ok"]')).to_have_count(4)


async def test_router_down_shows_a_banner_and_keeps_refreshing(
    page: Page, web_without_router: str
) -> None:
    await page.goto(f"{web_without_router}/")

    banner = page.locator(".banner-error")
    await expect(banner).to_contain_text("Router unreachable at http://127.0.0.1:")
    await expect(page.locator('#status tr[data-state="unknown"]')).to_have_count(4)
    await page.screenshot(path="/tmp/kf-status-router-down.png", full_page=True)

    async with page.expect_request(
        lambda request: request.url == f"{web_without_router}/partials/status",
        timeout=REFRESH_TIMEOUT_MS,
    ):
        pass
    await expect(banner).to_contain_text("Router unreachable")
