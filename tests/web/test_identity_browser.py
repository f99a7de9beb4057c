"""The identity pages in real headless Chromium, against the real router and subgraphs:
sign-up, log-in (with MFA), invitations by real mail, roles, API keys and the audit log."""

from __future__ import annotations

import asyncio
import re
import secrets
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage

import httpx
import pytest
from playwright.async_api import Browser, Dialog, Page, expect

from subgraphs.identity.mfa import code_at
from tests.conftest import Mailbox

pytestmark = pytest.mark.browser

MAIL_BASE = "http://dashboard.test"


def password() -> str:
    return f"{secrets.token_urlsafe(12)}-Qz7!"


async def mail_link(mailbox: Mailbox, address: str, path: str, web_url: str) -> str:
    """The ``path`` link in the newest mail to ``address``, pointing at this dashboard."""
    pattern = re.compile(re.escape(MAIL_BASE) + re.escape(path) + r"[A-Za-z0-9_\-.~%]+")
    for _ in range(100):
        for message in reversed(mailbox.to(address)):
            found = pattern.search(_text(message))
            if found:
                return web_url + found.group(0).removeprefix(MAIL_BASE)
        await asyncio.sleep(0.1)
    raise AssertionError(f"no {path} link mailed to {address}")


def _text(message: EmailMessage) -> str:
    body = message.get_body(preferencelist=("plain", "html"))
    return body.get_content() if body is not None else ""


async def accept_dialogs(dialog: Dialog) -> None:
    await dialog.accept()


async def log_in(page: Page, web_url: str, email: str, secret_password: str) -> None:
    await page.goto(f"{web_url}/login")
    await page.fill("#field-email", email)
    await page.fill("#field-password", secret_password)
    await page.click("#login-form button[type=submit]")


async def test_identity_pages_end_to_end(
    page: Page,
    browser: Browser,
    web_url: str,
    platform: object,
    mailbox: tuple[Mailbox, int],
) -> None:
    box, _port = mailbox
    tag = secrets.token_hex(3)
    owner = {
        "email": f"owner-{tag}@example.com",
        "name": f"Olivia Owner {tag}",
        "password": password(),
        "org": f"Browser Org {tag}",
    }
    page.on("dialog", accept_dialogs)  # hx-confirm asks before changing roles and revoking

    # Sign up: lands on the status page, signed in, the organization in the header.
    await page.goto(f"{web_url}/signup")
    await page.fill("#field-email", owner["email"])
    await page.fill("#field-name", owner["name"])
    await page.fill("#field-password", owner["password"])
    await page.fill("#field-organizationName", owner["org"])
    await page.click("#signup-form button[type=submit]")
    await expect(page).to_have_url(f"{web_url}/")
    await expect(page.locator(".header-org")).to_have_text(owner["org"])
    await expect(page.locator(".header-user")).to_have_text(owner["name"])
    nav = page.locator(".site-nav a")
    await expect(nav).to_have_text(
        [
            "Status",
            "Workflows",
            "Executions",
            "AI",
            "Credentials",
            "Variables",
            "Members",
            "API keys",
            "Audit",
            "SSO",
            "Profile",
        ]
    )

    # Log out, a wrong password, then in again.
    await page.click("button:has-text('Log out')")
    await expect(page).to_have_url(f"{web_url}/login")
    await expect(page.locator(".header-user")).to_have_count(0)
    await log_in(page, web_url, owner["email"], "not-" + owner["password"])
    await expect(page.locator(".banner-error")).to_contain_text("Wrong e-mail address or password")
    await log_in(page, web_url, owner["email"], owner["password"])
    await expect(page).to_have_url(f"{web_url}/")
    await expect(page.locator(".header-org")).to_have_text(owner["org"])

    # Invite someone; they accept from the mailed link in a browser of their own.
    invitee = {"email": f"invitee-{tag}@example.com", "name": f"Ian Invitee {tag}"}
    await page.click(".site-nav a:has-text('Members')")
    await expect(page.locator(f'tr[data-member="{owner["email"]}"]')).to_contain_text("you")
    await page.fill("#invite-form #field-email", invitee["email"])
    await page.select_option("#invite-form select[name=role]", "editor")
    await page.click("#invite-form button[type=submit]")
    await expect(page.locator("#members-section .banner-ok")).to_contain_text(
        f"Invitation sent to {invitee['email']} as editor"
    )
    pending = page.locator(f'tr[data-invitation="{invitee["email"]}"]')
    await expect(pending).to_have_attribute("data-role", "editor")
    await expect(pending.locator("time")).to_have_count(1)  # its expiry
    link = await mail_link(box, invitee["email"], "/invitations/", web_url)
    other = await browser.new_context()
    try:
        invitee_page = await other.new_page()
        await invitee_page.goto(link)
        await invitee_page.fill("#field-name", invitee["name"])
        await invitee_page.fill("#field-password", password())
        await invitee_page.click("#invitation-form button[type=submit]")
        await expect(invitee_page).to_have_url(f"{web_url}/")
        await expect(invitee_page.locator(".header-user")).to_have_text(invitee["name"])
        await expect(invitee_page.locator(".header-org")).to_have_text(owner["org"])
    finally:
        await other.close()

    # The new member is listed; make them a viewer.
    await page.reload()
    await expect(pending).to_have_count(0)  # accepted: no longer pending
    row = page.locator(f'tr[data-member="{invitee["email"]}"]')
    await expect(row).to_have_attribute("data-role", "editor")
    await row.locator("select[name=role]").select_option("viewer")
    await row.locator("button:has-text('Change role')").click()
    await expect(page.locator("#members-section .banner-ok")).to_contain_text("is now viewer")
    await expect(row).to_have_attribute("data-role", "viewer")

    # Invite someone else, then think better of it: the pending invitation is revoked.
    second = f"second-{tag}@example.com"
    await page.fill("#invite-form #field-email", second)
    await page.select_option("#invite-form select[name=role]", "viewer")
    await page.click("#invite-form button[type=submit]")
    withdrawn = page.locator(f'tr[data-invitation="{second}"]')
    await expect(withdrawn).to_have_attribute("data-role", "viewer")
    await withdrawn.locator("button:has-text('Revoke')").click()
    await expect(page.locator("#members-section .banner-ok")).to_contain_text("revoked")
    await expect(withdrawn).to_have_count(0)
    await page.reload()
    await expect(withdrawn).to_have_count(0)

    # An API key: its secret is shown once and works against the router; then revoke it.
    await page.click(".site-nav a:has-text('API keys')")
    await page.fill("#create-api-key-form #field-name", f"ci-{tag}")
    await page.select_option("#create-api-key-form select[name=role]", "viewer")
    await page.click("#create-api-key-form button[type=submit]")
    secret = await page.locator("#api-key-secret").input_value()
    assert secret.startswith("kf_"), secret
    async with httpx.AsyncClient(trust_env=False, timeout=10) as http:
        answer = await http.post(
            platform.router_url,  # type: ignore[attr-defined]
            json={"query": "{ me { id } }"},
            headers={"Authorization": f"Bearer {secret}"},
        )
    assert answer.status_code == 200
    assert "errors" not in answer.json(), answer.json()
    key_row = page.locator(f'tr[data-api-key="ci-{tag}"]')
    await expect(key_row).to_have_attribute("data-revoked", "false")
    await page.reload()
    await expect(page.locator("#api-key-secret")).to_have_count(0)  # shown once only
    await key_row.locator("button:has-text('Revoke')").click()
    await expect(key_row).to_have_attribute("data-revoked", "true")

    # Two-factor authentication: enrol from the page's secret, keep the recovery codes.
    await page.click(".site-nav a:has-text('Profile')")
    await expect(page.locator('#sessions-section tr[data-current="true"]')).to_have_count(1)
    await page.click("#mfa-start")
    totp_secret = (await page.locator("#mfa-secret").inner_text()).strip()
    qr = page.locator("#mfa-enrolment img.qr")
    assert (await qr.get_attribute("src") or "").startswith("data:image/svg+xml;base64,")
    assert await qr.evaluate("img => img.complete && img.naturalWidth > 0")
    await page.fill("#mfa-confirm-form #field-code", code_at(totp_secret, datetime.now(UTC)))
    await page.click("#mfa-confirm-form button[type=submit]")
    await expect(page.locator("#recovery-codes li")).to_have_count(10)

    # Log in again: the password, then a code of the next time step.
    await page.click("button:has-text('Log out')")
    await log_in(page, web_url, owner["email"], owner["password"])
    await expect(page.locator("#mfa-form")).to_be_visible()
    next_code = code_at(totp_secret, datetime.now(UTC) + timedelta(seconds=30))
    await page.fill("#mfa-form #field-code", next_code)
    await page.click("#mfa-form button[type=submit]")
    await expect(page).to_have_url(f"{web_url}/")
    await expect(page.locator(".header-user")).to_have_text(owner["name"])

    # The audit log shows the log-ins.
    await page.click(".site-nav a:has-text('Audit')")
    await expect(
        page.locator('#audit-log tr[data-action="auth.login.succeeded"]').first
    ).to_be_visible()
    await page.fill("#audit-action", "member.role_changed")
    await page.click(".filter-bar button[type=submit]")
    await expect(page.locator("#audit-log tr[data-action]")).to_have_count(1)
    await page.screenshot(path="/tmp/kf-identity-audit.png", full_page=True)
