"""The knowledge-base pages over plain HTTP, against the real router and AI service:
create a knowledge base, upload documents (their refusals told as the service words
them), search with highlighted passages that never let a document's markup through, and
delete; plus the check that decides which highlights may be shown as HTML."""

from __future__ import annotations

import html
import re
import secrets
from collections.abc import AsyncIterator

import httpx
import pytest

from klikkflow.kit.settings import WebSettings
from klikkflow.platform import Platform
from tests.factories.documents import pdf
from tests.web.conftest import ai_service_url, closed_port_url, serve
from tests.web.test_credential_pages import _join_as as join_as
from web.app import create_app
from web.knowledge import safe_highlight

HTMX = {"HX-Request": "true"}

MARKDOWN = b"""# Travel policy

## Trains

Employees travel by train when the journey takes less than five hours. Book second class;
first class only on night trains.

## Expenses

Hotel receipts go to finance within thirty days, scanned as PDF.
"""


async def _signed_up(client: httpx.AsyncClient) -> None:
    await client.get("/signup")
    tag = secrets.token_hex(4)
    account = {
        "email": f"knowledge-{tag}@example.com",
        "name": f"Kim Knowledge {tag}",
        "password": f"{secrets.token_urlsafe(12)}-Kb7!",
        "organizationName": f"Knowledge Org {tag}",
        "csrf_token": client.cookies["kf_csrf"],
    }
    response = await client.post("/signup", data=account)
    assert response.status_code == 303, response.text


@pytest.fixture
async def signed_in(web_url: str) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=web_url, trust_env=False, timeout=60) as client:
        await _signed_up(client)
        yield client


def csrf(client: httpx.AsyncClient) -> dict[str, str]:
    return {"csrf_token": client.cookies["kf_csrf"]}


def visible(markup: str) -> str:
    main = markup.split("<main", 1)[-1]
    main = re.sub(r"<(script|style|title)[^>]*>.*?</\1>", " ", main, flags=re.S)
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", main)).split())


async def new_knowledge_base(client: httpx.AsyncClient, name: str = "Handbook") -> str:
    """The new knowledge base's page path."""
    response = await client.post("/knowledge-bases", data={"name": name, **csrf(client)})
    assert response.status_code == 303, response.text
    location = response.headers["location"]
    assert re.fullmatch(r"/knowledge-bases/[0-9a-f-]{36}", location), location
    return str(location)


async def upload(
    client: httpx.AsyncClient, kb: str, name: str, content: bytes, content_type: str
) -> httpx.Response:
    response = await client.post(
        f"{kb}/documents",
        data=csrf(client),
        files={"file": (name, content, content_type)},
        headers=HTMX,
    )
    assert response.status_code == 200, response.text
    assert response.text.lstrip().startswith("<section")  # the documents fragment
    return response


def document_row(markup: str, name: str) -> str:
    start = markup.index(f'<tr data-document="{name}"')
    return markup[start : markup.index("</tr>", start)]


# -- the highlight check -------------------------------------------------------------------


@pytest.mark.parametrize(
    "highlight",
    [
        "plain words",
        "a <mark>train</mark> and a <mark>night</mark> … &lt;b&gt; &amp; &quot;x&quot; &#x27;y",
        "",
    ],
)
def test_escaped_text_with_mark_pairs_is_shown_as_html(highlight: str) -> None:
    assert safe_highlight(highlight) == highlight


@pytest.mark.parametrize(
    "highlight",
    [
        "<script>alert(1)</script>",
        '<mark onclick="x()">a</mark>',
        "<mark>open",
        "closed</mark>",
        "<mark><mark>nested</mark></mark>",
        "<b>bold</b>",
        "a & b",  # html.escape never leaves a bare ampersand
        "&lt;img src=x onerror=alert(1)&gt",  # an entity without its semicolon
        None,
    ],
)
def test_anything_else_is_not_shown_as_html(highlight: str | None) -> None:
    assert safe_highlight(highlight) is None


# -- pages ---------------------------------------------------------------------------------


async def test_the_knowledge_base_pages_need_a_session(web_url: str) -> None:
    async with httpx.AsyncClient(base_url=web_url, trust_env=False) as client:
        response = await client.get("/knowledge-bases")
    assert response.status_code == 303
    assert response.headers["location"] == "/login?next=%2Fknowledge-bases"


async def test_a_knowledge_base_is_created_and_listed(signed_in: httpx.AsyncClient) -> None:
    empty = await signed_in.get("/knowledge-bases")
    assert "No knowledge bases yet" in visible(empty.text)
    assert 'aria-current="page">AI</a>' in empty.text

    refused = await signed_in.post(
        "/knowledge-bases", data={"name": "", **csrf(signed_in)}, headers=HTMX
    )
    assert 'data-field-error="name"' in refused.text
    assert "1 to 200 characters" in visible(refused.text)

    kb = await new_knowledge_base(signed_in, "Support handbook")
    page = await signed_in.get(kb)
    assert "Support handbook" in visible(page.text)
    assert "No documents yet" in visible(page.text)
    listed = await signed_in.get("/knowledge-bases")
    row = listed.text[listed.text.index('<tr data-knowledge-base="Support handbook"') :]
    assert f'href="{kb}"' in row.split("</tr>")[0]
    assert re.search(r"data-document-count>0<", row)


async def test_documents_are_uploaded_listed_searched_and_deleted(
    signed_in: httpx.AsyncClient,
) -> None:
    kb = await new_knowledge_base(signed_in)
    added = await upload(signed_in, kb, "travel.md", MARKDOWN, "text/markdown")
    assert "Added “travel.md”" in visible(added.text)
    row = document_row(added.text, "travel.md")
    assert "Markdown" in row
    assert re.search(r"data-chunks>[1-9]", row)

    paper = pdf([["Quarterly report", "", "Revenue grew by twelve percent in the north."]])
    added = await upload(signed_in, kb, "report.pdf", paper, "application/pdf")
    row = document_row(added.text, "report.pdf")
    assert "PDF" in row
    assert f"{len(paper)} B" in row
    assert len(paper) < 1024

    found = await signed_in.get(f"{kb}/search", params={"q": "night trains"}, headers=HTMX)
    assert found.text.lstrip().startswith('<div id="kb-search-results"')
    first = found.text[found.text.index('class="kb-hit"') :]
    assert "travel.md" in first.split("</li>")[0]
    assert "Travel policy &gt; Trains" in first.split("</li>")[0]
    assert "<mark>night</mark>" in first.split("</li>")[0]

    on_page = await signed_in.get(f"{kb}/search", params={"q": "revenue north"})
    assert 'value="revenue north"' in on_page.text  # the whole page, query kept
    hit = on_page.text[on_page.text.index('class="kb-hit"') :].split("</li>")[0]
    assert "report.pdf" in hit
    assert "page 1" in visible(hit)
    assert "<mark>Revenue</mark>" in hit

    document_id = re.search(
        r"/documents/([0-9a-f-]{36})/delete", document_row(added.text, "travel.md")
    )
    assert document_id
    deleted = await signed_in.post(
        f"{kb}/documents/{document_id.group(1)}/delete",
        data={"name": "travel.md", **csrf(signed_in)},
        headers=HTMX,
    )
    assert "“travel.md” and its passages were deleted" in visible(deleted.text)
    assert 'data-document="travel.md"' not in deleted.text
    again = await signed_in.get(f"{kb}/search", params={"q": "night trains"}, headers=HTMX)
    assert "travel.md" not in again.text


async def test_a_documents_markup_never_reaches_the_page_as_markup(
    signed_in: httpx.AsyncClient,
) -> None:
    kb = await new_knowledge_base(signed_in)
    hostile = b"The unicorn <script>alert('kb')</script> policy says <b>unicorn</b> rides are free."
    await upload(signed_in, kb, "hostile.txt", hostile, "text/plain")
    found = await signed_in.get(f"{kb}/search", params={"q": "unicorn"}, headers=HTMX)
    hit = found.text[found.text.index('class="kb-hit"') :].split("</li>")[0]
    assert "<mark>unicorn</mark>" in hit
    assert "<script" not in hit
    assert "<b>" not in hit
    # The service's escaping arrives as it is: neither undone nor done twice.
    assert "alert(&#x27;kb&#x27;)" in hit


@pytest.mark.parametrize(
    ("name", "content", "content_type", "message"),
    [
        ("empty.md", b"", "text/markdown", "Document refused: the document is empty."),
        ("scan.pdf", b"just some words", "application/pdf", "not a PDF"),
        ("picture.png", b"\x89PNG\r\n", "image/png", "unsupported content type 'image/png'"),
    ],
)
async def test_refused_documents_are_told_as_the_service_words_them(
    signed_in: httpx.AsyncClient, name: str, content: bytes, content_type: str, message: str
) -> None:
    kb = await new_knowledge_base(signed_in)
    refused = await upload(signed_in, kb, name, content, content_type)
    banner = refused.text[refused.text.index('role="alert" data-error="DocumentRefused"') :]
    assert message in visible(banner.split("</div>")[0])
    assert "No documents yet" in visible(refused.text)


async def test_a_file_over_the_limit_is_refused_before_it_is_sent(platform: Platform) -> None:
    settings = WebSettings(
        router_url=platform.router_url, ai_url=ai_service_url(platform), document_max_bytes=1000
    )
    async with (
        serve(create_app(settings)) as base_url,
        httpx.AsyncClient(base_url=base_url, trust_env=False, timeout=30) as client,
    ):
        await _signed_up(client)
        kb = await new_knowledge_base(client)
        for size in (1001, 200_000):  # over the limit; over it with the form around it too
            refused = await upload(client, kb, "big.txt", b"x" * size, "text/plain")
            banner = refused.text[refused.text.index('data-error="DocumentTooLarge"') :]
            assert "larger than the limit of 1000 B (1,000 bytes)" in visible(banner)
            assert "No documents yet" in visible(refused.text)


async def test_a_forged_upload_without_the_csrf_token_is_refused(
    signed_in: httpx.AsyncClient,
) -> None:
    kb = await new_knowledge_base(signed_in)
    forged = await signed_in.post(
        f"{kb}/documents", files={"file": ("a.txt", b"hello", "text/plain")}
    )
    assert forged.status_code == 403
    page = await signed_in.get(kb)
    assert "No documents yet" in visible(page.text)


async def test_an_unreachable_ai_service_is_told_and_nothing_is_added(platform: Platform) -> None:
    nowhere = closed_port_url().removesuffix("/graphql")
    settings = WebSettings(router_url=platform.router_url, ai_url=nowhere)
    async with (
        serve(create_app(settings)) as base_url,
        httpx.AsyncClient(base_url=base_url, trust_env=False, timeout=30) as client,
    ):
        await _signed_up(client)
        kb = await new_knowledge_base(client)
        refused = await upload(client, kb, "notes.txt", b"some notes", "text/plain")
        banner = refused.text[refused.text.index('data-error="UploadFailed"') :]
        assert "The AI service cannot be reached" in visible(banner)
        assert "No documents yet" in visible(refused.text)


async def test_a_viewer_searches_but_may_not_add_or_delete(
    signed_in: httpx.AsyncClient, web_url: str, platform: Platform, mailbox: object
) -> None:
    kb = await new_knowledge_base(signed_in)
    await upload(signed_in, kb, "travel.md", MARKDOWN, "text/markdown")
    viewer = await join_as(signed_in, platform, mailbox, "viewer")
    async with httpx.AsyncClient(base_url=web_url, trust_env=False, timeout=30) as client:
        client.cookies.update(viewer)
        listed = await client.get("/knowledge-bases")
        page = await client.get(kb)
        found = await client.get(f"{kb}/search", params={"q": "night trains"}, headers=HTMX)
        refused = await upload(client, kb, "mine.txt", b"my own notes", "text/plain")
        creating = await client.post(
            "/knowledge-bases", data={"name": "Mine", **csrf(client)}, headers=HTMX
        )

    assert 'id="create-kb-form"' not in listed.text
    assert "Only editors, admins and owners can" in visible(listed.text)
    assert 'data-document="travel.md"' in page.text
    assert 'id="upload-document-form"' not in page.text
    assert "/delete" not in page.text
    assert "<mark>night</mark>" in found.text
    assert 'data-error="ForbiddenError"' in refused.text
    assert 'data-document="mine.txt"' not in refused.text
    assert 'data-error="ForbiddenError"' in creating.text
    assert 'data-knowledge-base="Mine"' not in creating.text
