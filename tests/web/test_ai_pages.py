"""The AI hub and "describe a workflow" over plain HTTP, against the real router and AI
service; the language model is the local provider stand-in speaking the OpenAI protocol.
A valid design opens the new draft in the editor; a refused one lists the model's
problems; templates close to the description are offered and import as new workflows."""

from __future__ import annotations

import html
import json
import re
import secrets
from collections.abc import AsyncIterator

import httpx
import pytest

from klikkflow.platform import Platform
from tests.factories.credentials import create_credential
from tests.factories.designs import DESIGN, broken_design
from tests.factories.identity import Account
from tests.factories.llm import LlmStandIn, Reply, llm_stand_in

HTMX = {"HX-Request": "true"}


@pytest.fixture(scope="module")
async def llm() -> AsyncIterator[LlmStandIn]:
    async with llm_stand_in() as stand_in:
        yield stand_in


@pytest.fixture(autouse=True)
def _fresh_script(llm: LlmStandIn) -> None:
    llm.replies.clear()
    llm.sent.clear()


async def _signed_up(client: httpx.AsyncClient) -> None:
    await client.get("/signup")
    tag = secrets.token_hex(4)
    account = {
        "email": f"describe-{tag}@example.com",
        "name": f"Dana Describer {tag}",
        "password": f"{secrets.token_urlsafe(12)}-Ds4!",
        "organizationName": f"Describe Org {tag}",
        "csrf_token": client.cookies["kf_csrf"],
    }
    response = await client.post("/signup", data=account)
    assert response.status_code == 303, response.text


@pytest.fixture
async def signed_in(web_url: str) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=web_url, trust_env=False, timeout=60) as client:
        await _signed_up(client)
        yield client


async def model_credential(
    client: httpx.AsyncClient, platform: Platform, llm: LlmStandIn, name: str = "Stand-in"
) -> str:
    """An openAiApi credential of the signed-in organization pointing at the stand-in."""
    async with httpx.AsyncClient(timeout=15, trust_env=False) as router:
        account = Account(client.cookies["kf_token"], "", "", "")
        values = {"apiKey": "sk-describe-test-123456", "baseUrl": llm.openai_url}
        return await create_credential(
            router, platform.router_url, account, "openAiApi", values, name
        )


def csrf(client: httpx.AsyncClient) -> dict[str, str]:
    return {"csrf_token": client.cookies["kf_csrf"]}


def visible(markup: str) -> str:
    main = markup.split("<main", 1)[-1]
    main = re.sub(r"<(script|style|title)[^>]*>.*?</\1>", " ", main, flags=re.S)
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", main)).split())


async def describe(
    client: httpx.AsyncClient, credential: str, description: str = "Greet the team by hand"
) -> httpx.Response:
    form = {"description": description, "credentialId": credential, "model": "gpt-4o-mini"}
    return await client.post("/ai/describe", data={**form, **csrf(client)})


async def test_the_hub_links_the_ai_pages_and_counts_what_is_there(
    signed_in: httpx.AsyncClient, platform: Platform, llm: LlmStandIn
) -> None:
    hub = await signed_in.get("/ai")
    assert hub.status_code == 200
    assert 'aria-current="page">AI</a>' in hub.text
    assert 'href="/ai/describe"' in hub.text
    assert 'href="/knowledge-bases"' in hub.text
    assert "0 knowledge bases, 0 documents" in visible(hub.text)
    assert "Needs an OpenAI-compatible or Anthropic credential" in visible(hub.text)

    await model_credential(signed_in, platform, llm)
    await signed_in.post("/knowledge-bases", data={"name": "Notes", **csrf(signed_in)})
    hub = await signed_in.get("/ai")
    assert "1 knowledge base, 0 documents" in visible(hub.text)
    assert "1 language-model credential" in visible(hub.text)


async def test_without_a_model_credential_the_page_says_where_to_add_one(
    signed_in: httpx.AsyncClient,
) -> None:
    page = await signed_in.get("/ai/describe")
    assert 'data-note="no-credential"' in page.text
    assert 'href="/credentials"' in page.text
    assert "Design the workflow" not in page.text


async def test_a_valid_design_opens_in_the_workflow_editor(
    signed_in: httpx.AsyncClient, platform: Platform, llm: LlmStandIn
) -> None:
    credential = await model_credential(signed_in, platform, llm, "Team OpenAI")
    page = await signed_in.get("/ai/describe")
    assert f'<option value="{credential}"' in page.text
    assert "Team OpenAI (OpenAI-compatible)" in visible(page.text)

    llm.script(Reply.say(json.dumps(DESIGN)))
    response = await describe(signed_in, credential, "Greet the team when I start it by hand")

    assert response.status_code == 303, response.text
    location = response.headers["location"]
    assert re.fullmatch(r"/workflows/[0-9a-f]{24}", location), location
    [sent] = llm.chats
    assert sent.model == "gpt-4o-mini"
    assert "Greet the team when I start it by hand" in sent.last_user_text
    editor = await signed_in.get(location)
    assert "Greet the team" in visible(editor.text)
    assert 'id="node-' in editor.text  # the editor's node forms
    assert "Greeting" in visible(editor.text)


async def test_htmx_is_sent_to_the_editor_with_hx_redirect(
    signed_in: httpx.AsyncClient, platform: Platform, llm: LlmStandIn
) -> None:
    credential = await model_credential(signed_in, platform, llm)
    llm.script(Reply.say(json.dumps(DESIGN)))
    form = {"description": "Greet the team", "credentialId": credential, "model": "m"}
    response = await signed_in.post("/ai/describe", data={**form, **csrf(signed_in)}, headers=HTMX)
    assert response.status_code == 204
    assert re.fullmatch(r"/workflows/[0-9a-f]{24}", response.headers["hx-redirect"])


async def test_a_refused_design_lists_the_reasons_and_keeps_the_form(
    signed_in: httpx.AsyncClient, platform: Platform, llm: LlmStandIn
) -> None:
    credential = await model_credential(signed_in, platform, llm)
    llm.script(*(Reply.say(broken_design()) for _ in range(3)))
    response = await signed_in.post(
        "/ai/describe",
        data={
            "description": "Tell Slack about new orders",
            "credentialId": credential,
            "model": "gpt-4o-mini",
            **csrf(signed_in),
        },
        headers=HTMX,
    )
    assert response.status_code == 200
    assert response.text.lstrip().startswith('<form class="card form" id="describe-form"')
    banner = response.text[response.text.index('data-error="GenerationRefusedError"') :]
    text = visible(banner.split("</div>")[0])
    assert "still invalid after 3 answers" in text
    reasons = re.findall(r"<li data-reason>(.*?)</li>", banner)
    assert any("slackSendMessage" in html.unescape(r) for r in reasons), reasons
    assert any("Nowhere" in html.unescape(r) for r in reasons), reasons
    assert "Tell Slack about new orders</textarea>" in response.text  # what was typed stays
    assert 'value="gpt-4o-mini"' in response.text
    assert len(llm.chats) == 3


async def test_a_provider_failure_is_told_with_what_to_check(
    signed_in: httpx.AsyncClient, platform: Platform, llm: LlmStandIn
) -> None:
    credential = await model_credential(signed_in, platform, llm)
    llm.script(Reply.failure(401, "invalid api key"))
    response = await describe(signed_in, credential)
    assert response.status_code == 200
    banner = response.text[response.text.index('data-error="LanguageModelError"') :]
    assert "Check the credential's key, base URL and the model's name." in visible(banner)


async def test_matching_templates_are_offered_and_one_imports_as_a_new_workflow(
    signed_in: httpx.AsyncClient,
) -> None:
    description = "send a message when a form is submitted"
    offered = await signed_in.get(
        "/ai/templates", params={"description": description}, headers=HTMX
    )
    assert offered.text.lstrip().startswith('<section id="template-suggestions"')
    ids = re.findall(r'data-template="([a-z0-9-]+)"', offered.text)
    assert ids[0] == "form-submission-notify", ids
    assert len(ids) == 4
    assert "% match" in visible(offered.text)
    blank = await signed_in.get("/ai/templates", params={"description": "  "}, headers=HTMX)
    assert "data-template=" not in blank.text

    used = await signed_in.post(
        "/ai/templates/form-submission-notify/use",
        data={"description": description, **csrf(signed_in)},
    )
    assert used.status_code == 303, used.text
    editor = await signed_in.get(used.headers["location"])
    name = re.search(r"<strong>(.*?)</strong>", offered.text)
    assert name
    assert html.unescape(name.group(1)) in visible(editor.text)

    missing = await signed_in.post("/ai/templates/no-such-template/use", data=csrf(signed_in))
    assert missing.status_code == 404
