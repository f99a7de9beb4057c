"""The credentials and variables pages in real headless Chromium, against the real router:
the type select swaps the generated fields in with HTMX, a saved secret shows only as its
masked hint, the edit form leaves it empty; a variable is set and deleted."""

from __future__ import annotations

import secrets

import pytest
from playwright.async_api import Dialog, Page, expect

pytestmark = pytest.mark.browser


async def accept_dialogs(dialog: Dialog) -> None:
    await dialog.accept()


async def sign_up(page: Page, web_url: str) -> None:
    tag = secrets.token_hex(3)
    await page.goto(f"{web_url}/signup")
    await page.fill("#field-email", f"vault-{tag}@example.com")
    await page.fill("#field-name", f"Vera Vault {tag}")
    await page.fill("#field-password", f"{secrets.token_urlsafe(12)}-Qz7!")
    await page.fill("#field-organizationName", f"Vault Browser Org {tag}")
    await page.click("#signup-form button[type=submit]")
    await expect(page).to_have_url(f"{web_url}/")


async def test_credentials_and_variables_in_the_browser(
    page: Page, web_url: str, platform: object
) -> None:
    page.on("dialog", accept_dialogs)  # hx-confirm asks before deleting
    await sign_up(page, web_url)
    secret = f"sk-live-{secrets.token_urlsafe(24)}"

    await page.click(".site-nav a:has-text('Credentials')")
    await expect(page).to_have_url(f"{web_url}/credentials")
    form = page.locator("#new-credential-form")
    await expect(form.locator("input[name='data.value']")).to_have_attribute("type", "password")

    # Choosing another type swaps its fields in, without reloading the page.
    await page.select_option("#new-credential-type", "httpBearerAuth")
    token = form.locator("input[name='data.token']")
    await expect(token).to_have_attribute("type", "password")
    await expect(form.locator("input[name='data.value']")).to_have_count(0)
    await page.fill("#field-name", "Payments")
    await token.fill(secret)
    await form.locator("button[type=submit]").click()

    row = page.locator('tr[data-credential="Payments"]')
    await expect(row).to_contain_text(f"••••{secret[-4:]}")
    await expect(page.locator("[role=status]").first).to_contain_text("Credential “Payments” saved")
    assert secret not in await page.content()

    # The edit form offers the secret empty: leaving it so keeps it.
    tools = page.locator('tr[data-credential-tools="Payments"]')
    await tools.locator("summary:has-text('Edit')").click()
    stored = tools.locator("input[name='data.token']")
    await expect(stored).to_have_value("")
    await tools.locator("input[name='name']").fill("Payments live")
    await tools.locator("button:has-text('Save changes')").click()
    await expect(page.locator('tr[data-credential="Payments live"]')).to_contain_text(
        f"••••{secret[-4:]}"
    )

    # Delete it: gone from the list.
    renamed = page.locator('tr[data-credential="Payments live"]')
    await renamed.locator("button:has-text('Delete')").click()
    await expect(renamed).to_have_count(0)
    await expect(page.locator("#credentials-section")).to_contain_text("No credentials yet")

    # Variables: set one, see it, delete it.
    await page.click(".site-nav a:has-text('Variables')")
    await page.fill("#field-key", "region")
    await page.fill("#field-value", "eu-north-1")
    await page.click("#set-variable-form button[type=submit]")
    variable = page.locator('tr[data-variable="region"]')
    await expect(variable).to_contain_text("eu-north-1")
    await variable.locator("button:has-text('Delete')").click()
    await expect(variable).to_have_count(0)
    await expect(page.locator("#variables-section")).to_contain_text("No variables yet")
