"""The AI pages in real headless Chromium, against the real router and AI service: files
chosen in the browser's file input are uploaded, listed, searched (the match highlighted)
and deleted; a described workflow opens in the editor, a refused one lists its reasons,
and a template offered while typing opens as a new workflow. The language model is the
local provider stand-in."""

from __future__ import annotations

import json
import re
import secrets
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from playwright.async_api import Dialog, Page, expect

from klikkflow.platform import Platform
from tests.factories.credentials import create_credential
from tests.factories.designs import DESIGN, broken_design
from tests.factories.documents import pdf
from tests.factories.identity import Account
from tests.factories.llm import LlmStandIn, Reply, llm_stand_in

pytestmark = pytest.mark.browser

POLICY = """# Travel policy

## Trains

Employees travel by train when the journey takes less than five hours. Book second class;
first class only on night trains.

## Expenses

Hotel receipts go to finance within thirty days.
"""


async def accept_dialogs(dialog: Dialog) -> None:
    await dialog.accept()


@pytest.fixture(scope="module")
async def llm() -> AsyncIterator[LlmStandIn]:
    async with llm_stand_in() as stand_in:
        yield stand_in


@pytest.fixture(autouse=True)
def _fresh_script(llm: LlmStandIn) -> None:
    llm.replies.clear()
    llm.sent.clear()


async def sign_up(page: Page, web_url: str) -> None:
    tag = secrets.token_hex(3)
    await page.goto(f"{web_url}/signup")
    await page.fill("#field-email", f"ai-{tag}@example.com")
    await page.fill("#field-name", f"Ada Ai {tag}")
    await page.fill("#field-password", f"{secrets.token_urlsafe(12)}-Ai7!")
    await page.fill("#field-organizationName", f"AI Browser Org {tag}")
    await page.click("#signup-form button[type=submit]")
    await expect(page).to_have_url(f"{web_url}/")


async def model_credential(page: Page, platform: Platform, llm: LlmStandIn) -> str:
    """An openAiApi credential of the signed-in organization, pointing at the stand-in."""
    cookies = {c["name"]: c["value"] for c in await page.context.cookies()}
    account = Account(cookies["kf_token"], "", "", "")
    values = {"apiKey": "sk-browser-test-123456", "baseUrl": llm.openai_url}
    async with httpx.AsyncClient(timeout=15, trust_env=False) as router:
        return await create_credential(
            router, platform.router_url, account, "openAiApi", values, "Stand-in model"
        )


async def test_documents_are_uploaded_searched_and_deleted_in_the_browser(
    page: Page, web_url: str, platform: Platform, tmp_path: Path
) -> None:
    page.on("dialog", accept_dialogs)  # hx-confirm asks before deleting
    await sign_up(page, web_url)
    await page.click(".site-nav a:has-text('AI')")
    await expect(page).to_have_url(f"{web_url}/ai")
    await page.click("[data-hub=knowledge-bases]")
    await page.fill("#field-name", "Company handbook")
    await page.click("#create-kb-form button[type=submit]")
    await expect(page.locator("h1")).to_have_text("Company handbook")

    # Files as a person picks them: the browser names their type from the extension.
    policy = tmp_path / "travel-policy.md"
    policy.write_text(POLICY)
    report = tmp_path / "quarterly-report.pdf"
    report.write_bytes(pdf([["Quarterly report", "", "Revenue grew by twelve percent."]]))
    form = page.locator("#upload-document-form")
    await form.locator("input[type=file]").set_input_files(policy)
    await form.locator("button[type=submit]").click()
    await expect(page.locator("[role=status]")).to_contain_text("Added “travel-policy.md”")
    await form.locator("input[type=file]").set_input_files(report)
    await form.locator("button[type=submit]").click()
    await expect(page.locator("[role=status]")).to_contain_text("Added “quarterly-report.pdf”")
    markdown = page.locator('tr[data-document="travel-policy.md"]')
    await expect(markdown.locator("[data-document-type]")).to_have_text("Markdown")
    await expect(page.locator('tr[data-document="quarterly-report.pdf"]')).to_contain_text("PDF")
    await expect(markdown.locator("[data-chunks]")).to_have_text(re.compile(r"[1-9]\d*"))
    await expect(page.locator("[data-fact=documents]")).to_have_text("2")
    await expect(page.locator("[data-fact=model]")).to_contain_text("dimensions")

    # Typing searches (debounced); the best passage shows its heading and the match marked.
    await page.locator("#kb-search-query").press_sequentially("night trains", delay=20)
    first = page.locator(".kb-hit").first
    await expect(first.locator(".kb-hit-document")).to_have_text("travel-policy.md")
    await expect(first.locator("[data-hit-heading]")).to_have_text("Travel policy > Trains")
    await expect(first.locator("mark", has_text=re.compile("^night$", re.I)).first).to_be_visible()
    await page.locator("#kb-search-query").fill("")
    await page.locator("#kb-search-query").press_sequentially("revenue", delay=20)
    await expect(page.locator(".kb-hit").first).to_contain_text("quarterly-report.pdf")
    await expect(page.locator(".kb-hit").first.locator("[data-hit-page]")).to_have_text("page 1")

    # Delete the Markdown file: gone from the list and from the results.
    await markdown.locator("button:has-text('Delete')").click()
    await expect(markdown).to_have_count(0)
    await expect(page.locator("[role=status]")).to_contain_text("its passages were deleted")
    await expect(page.locator("[data-fact=documents]")).to_have_text("1")
    await page.locator("#kb-search-query").fill("")
    await page.locator("#kb-search-query").press_sequentially("night trains", delay=20)
    await expect(page.locator("#kb-search-results")).not_to_contain_text("travel-policy.md")
    await expect(page.locator("#kb-search-results")).to_contain_text("quarterly-report.pdf")

    # A file that says it is a PDF but is not: the service's reason, nothing added.
    fake = tmp_path / "scan.pdf"
    fake.write_text("only words")
    await form.locator("input[type=file]").set_input_files(fake)
    await form.locator("button[type=submit]").click()
    await expect(page.locator('[data-error="DocumentRefused"]')).to_contain_text("not a PDF")
    await expect(page.locator('tr[data-document="scan.pdf"]')).to_have_count(0)


async def test_a_described_workflow_opens_in_the_editor(
    page: Page, web_url: str, platform: Platform, llm: LlmStandIn
) -> None:
    await sign_up(page, web_url)
    await model_credential(page, platform, llm)
    await page.goto(f"{web_url}/ai")
    await page.click("[data-hub=describe]")
    await expect(page).to_have_url(f"{web_url}/ai/describe")

    llm.script(Reply.say(json.dumps(DESIGN)))
    await page.locator("#describe-description").fill("Greet the team when I start it by hand")
    await page.select_option("#describe-credential", label="Stand-in model (OpenAI-compatible)")
    await page.fill("#describe-model", "gpt-4o-mini")
    await page.click("#describe-form button[type=submit]")

    await expect(page).to_have_url(re.compile(rf"{web_url}/workflows/[0-9a-f]{{24}}$"))
    await expect(page.locator("h1")).to_contain_text("Greet the team")
    await expect(page.locator(".wf-node-name", has_text="Greeting")).to_be_visible()
    [sent] = llm.chats
    assert "Greet the team when I start it by hand" in sent.last_user_text


async def test_a_refused_design_shows_the_reasons(
    page: Page, web_url: str, platform: Platform, llm: LlmStandIn
) -> None:
    await sign_up(page, web_url)
    await model_credential(page, platform, llm)
    await page.goto(f"{web_url}/ai/describe")

    llm.script(*(Reply.say(broken_design()) for _ in range(3)))
    await page.locator("#describe-description").fill("Tell Slack about every new order")
    await page.fill("#describe-model", "gpt-4o-mini")
    await page.click("#describe-form button[type=submit]")

    refusal = page.locator('[data-error="GenerationRefusedError"]')
    await expect(refusal).to_contain_text("still invalid after 3 answers")
    await expect(refusal.locator("[data-reason]", has_text="slackSendMessage")).to_have_count(1)
    await expect(refusal.locator("[data-reason]", has_text="Nowhere")).to_have_count(1)
    await expect(page).to_have_url(f"{web_url}/ai/describe")
    await expect(page.locator("#describe-description")).to_have_value(
        "Tell Slack about every new order"
    )


async def test_a_template_offered_while_typing_opens_as_a_new_workflow(
    page: Page, web_url: str
) -> None:
    await sign_up(page, web_url)
    await page.goto(f"{web_url}/ai/describe")
    await page.locator("#describe-description").press_sequentially(
        "alert me when my website goes down", delay=10
    )
    offered = page.locator("[data-template]")
    await expect(offered.first).to_have_attribute("data-template", "uptime-monitor")
    name = await offered.first.locator("strong").inner_text()
    await offered.first.locator("button:has-text('Use this template')").click()
    await expect(page).to_have_url(re.compile(rf"{web_url}/workflows/[0-9a-f]{{24}}$"))
    await expect(page.locator("h1")).to_contain_text(name)


async def test_the_header_wraps_instead_of_running_off_the_page(page: Page, web_url: str) -> None:
    await sign_up(page, web_url)
    for width in (1200, 760):
        await page.set_viewport_size({"width": width, "height": 800})
        await page.goto(f"{web_url}/ai")
        overflow = await page.evaluate(
            "document.documentElement.scrollWidth - document.documentElement.clientWidth"
        )
        assert overflow == 0, f"{overflow} px wider than a {width} px window"
        header = await page.locator(".site-header").bounding_box()
        assert header
        for item in await page.locator(".site-nav a, .header-account > *").all():
            box = await item.bounding_box()
            assert box
            assert header["y"] <= box["y"]
            assert box["y"] + box["height"] <= header["y"] + header["height"]
            assert box["x"] + box["width"] <= width
