"""The workflow pages in real headless Chromium, against the real router and subgraphs:
create a workflow, edit a node through its generated form, compare versions, roll back,
and search the list, with HTMX swapping fragments instead of loading pages."""

from __future__ import annotations

import re
import secrets

import pytest
from playwright.async_api import Dialog, Page, expect

pytestmark = pytest.mark.browser


async def accept_dialogs(dialog: Dialog) -> None:
    await dialog.accept()


async def sign_up(page: Page, web_url: str, tag: str) -> None:
    await page.goto(f"{web_url}/signup")
    await page.fill("#field-email", f"flows-{tag}@example.com")
    await page.fill("#field-name", f"Flora Flow {tag}")
    await page.fill("#field-password", f"{secrets.token_urlsafe(12)}-Qz7!")
    await page.fill("#field-organizationName", f"Flow Browser Org {tag}")
    await page.click("#signup-form button[type=submit]")
    await expect(page).to_have_url(f"{web_url}/")


async def mark_document(page: Page) -> None:
    """A flag that only survives as long as this document does (no full reload)."""
    await page.evaluate("window.__sameDocument = true")


async def assert_same_document(page: Page) -> None:
    assert await page.evaluate("window.__sameDocument === true"), "the page was reloaded"


async def test_edit_a_node_diff_and_roll_back(page: Page, web_url: str, platform: object) -> None:
    tag = secrets.token_hex(3)
    name = f"Order intake {tag}"
    page.on("dialog", accept_dialogs)  # rollback asks first
    await sign_up(page, web_url, tag)

    # Create from the list page: the browser lands on the new workflow.
    await page.click(".site-nav a:has-text('Workflows')")
    await expect(page.locator("#workflow-empty")).to_contain_text("No workflows yet")
    await page.fill("#create-workflow-form #field-name", name)
    await page.fill("#create-workflow-form #field-tags", "orders, intake")
    await page.select_option("#create-workflow-form #field-starter", "webhook")
    await page.click("#create-workflow-form button[type=submit]")
    await expect(page.locator("#workflow-name")).to_have_text(name)
    await expect(page.locator("#workflow-version")).to_have_text("v1")
    await expect(page.locator("#workflow-published")).to_have_text("none")
    graph = page.locator("svg.wf-graph")
    await expect(graph.locator("[data-node]")).to_have_count(2)
    await expect(graph.locator('[data-node="Webhook"]')).to_contain_text("Webhook")
    await expect(graph.locator('[data-source="Webhook"][data-target="Respond"]')).to_have_count(1)
    await mark_document(page)

    # Open the Webhook node from the graph and change its path in the generated form.
    await graph.locator('[data-node="Webhook"]').click()
    webhook = page.locator("#node-webhook")
    await expect(webhook).to_have_attribute("open", "")
    path = webhook.get_by_label("Path (required)")
    await expect(path).to_have_value("incoming")
    await expect(webhook.get_by_label("Http method")).to_have_value("POST")
    await path.fill("orders-in")
    await webhook.get_by_label("Note for the history").fill("Orders path")
    await webhook.get_by_role("button", name="Save Webhook").click()
    await expect(page.locator("#workflow-notice")).to_have_text("Saved Webhook: version 2.")
    await expect(page.locator("#workflow-version")).to_have_text("v2")
    await expect(page.locator("#node-webhook").get_by_label("Path (required)")).to_have_value(
        "orders-in"
    )
    versions = page.locator("#workflow-versions tbody tr")
    await expect(versions).to_have_count(2)
    await expect(versions.first).to_contain_text("Orders path")
    await assert_same_document(page)

    # The diff of 1 and 2 shows the path, before and after.
    await page.select_option("#diff-older", "1")
    await page.select_option("#diff-newer", "2")
    await page.click("#diff-form button[type=submit]")
    diff = page.locator("#workflow-diff")
    await expect(diff.locator("h3")).to_have_text("Changes from v1 to v2")
    change = diff.locator('[data-node-changed="Webhook"] tr[data-path="parameters.path"]')
    await expect(change.locator(".diff-before")).to_have_text('"incoming"')
    await expect(change.locator(".diff-after")).to_have_text('"orders-in"')
    await assert_same_document(page)

    # Roll back to 1: its content comes back as version 3, published.
    await (
        page.locator('#workflow-versions tr[data-version="1"]')
        .get_by_role("button", name="Roll back to v1")
        .click()
    )
    await expect(page.locator("#workflow-notice")).to_have_text(
        "Rolled back to version 1: saved as version 3 and published."
    )
    await expect(page.locator("#workflow-version")).to_have_text("v3")
    await expect(page.locator("#workflow-published")).to_have_text("v3")
    await expect(page.locator('#workflow-versions tr[data-version="3"]')).to_have_attribute(
        "data-published", "true"
    )
    await page.locator("#node-webhook summary").click()
    await expect(page.locator("#node-webhook").get_by_label("Path (required)")).to_have_value(
        "incoming"
    )
    await assert_same_document(page)

    # The list finds it as you type, without loading a page.
    await page.click(".breadcrumb a")
    await expect(page.locator(f'tr[data-workflow="{name}"]')).to_be_visible()
    await mark_document(page)
    await page.fill("#workflow-search", "no such flow")
    await expect(page.locator("#workflow-empty")).to_have_text("No workflows match.")
    await page.fill("#workflow-search", tag)
    await expect(page.locator(f'tr[data-workflow="{name}"]')).to_contain_text("v3")
    await expect(page).to_have_url(f"{web_url}/workflows?search={tag}")
    await assert_same_document(page)


async def test_activate_copy_an_endpoint_and_deactivate(
    page: Page, web_url: str, platform: object
) -> None:
    tag = secrets.token_hex(3)
    page.on("dialog", accept_dialogs)  # Deactivate asks first
    await page.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=web_url)
    await sign_up(page, web_url, tag)
    await page.goto(f"{web_url}/workflows")
    await page.fill("#create-workflow-form #field-name", f"Hooked {tag}")
    await page.select_option("#create-workflow-form #field-starter", "webhook")
    await page.click("#create-workflow-form button[type=submit]")
    await expect(page.locator("#activation-state")).to_have_text("off")
    await mark_document(page)

    await page.click("#workflow-activate")
    await expect(page.locator("#activation-notice")).to_have_text(
        "On: version 1's webhooks and schedules run."
    )
    await expect(page.locator("#workflow-published")).to_have_text("v1")
    production = page.get_by_label("Production URL of Webhook")
    await expect(production).to_have_value(re.compile(r"^/webhook/[0-9a-f]+/incoming$"))
    await page.locator('[data-url="production"] button[data-copy]').click()
    await expect(page.locator('[data-url="production"] button[data-copy]')).to_have_text("Copied")
    copied = await page.evaluate("navigator.clipboard.readText()")
    assert copied == await production.input_value()

    await page.click("#workflow-deactivate")
    await expect(page.locator("#activation-state")).to_have_text("off")
    await expect(page.locator("#workflow-activation")).to_have_attribute("data-active", "false")
    await expect(page.get_by_label("Production URL of Webhook")).to_have_count(0)
    await assert_same_document(page)
