"""Knowledge bases through the router: documents of every kind in, hybrid search out, with
the real local embedding model and the real PostgreSQL + pgvector."""

from __future__ import annotations

import asyncio
import json
import re
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from tests.factories.documents import pdf
from tests.factories.graphql import data, gql
from tests.factories.identity import Account, sign_up
from tests.factories.knowledge import add_document, added, create_knowledge_base, hits, search

LOCAL_MODEL = "all-MiniLM-L6-v2-onnx-int8"
LIMIT = 20 * 1024 * 1024  # KLIKKFLOW_DOCUMENT_MAX_BYTES' default

HANDBOOK = """# Employee handbook

Welcome to Fjordline Logistics. This handbook explains how we work together.

## Refunds

Customers may return unused goods within thirty days of purchase and receive their money
back in full.

## Shipping

Parcels leave our warehouse in Trondheim every weekday; delivery takes two to four days.
"""
PETS = (
    "<html><head><title>Office pets</title><style>.mat { color: red }</style>"
    "<script>stealCookies()</script></head><body><nav>Home | Shop | Login</nav>"
    "<h1>Animals at the office</h1>"
    "<p>The cat sleeps on the mat by the window all afternoon.</p></body></html>"
)
SUPPORT = (
    "Our support line answers phone calls from eight in the morning until five in the "
    "afternoon.\n\nThe access code for the server room is QX-7731."
)
REPORT = pdf(
    [
        ["Annual report 2026", "Revenue grew by twelve percent in the third quarter."],
        ["Outlook", "The board expects steady growth next year."],
    ],
    title="Annual report",
)


@dataclass
class Library:
    account: Account
    knowledge_base: str
    documents: dict[str, dict[str, Any]]


@pytest.fixture(scope="module")
async def library(platform) -> Library:
    async with httpx.AsyncClient(timeout=60, trust_env=False) as client:
        account = await sign_up(client, platform.router_url, "Fjordline")
        kb = await create_knowledge_base(client, platform.router_url, account, "Company")
        url, token = platform.router_url, account.token
        documents = {
            "handbook": await added(
                client, url, token, kb, "handbook.md", text=HANDBOOK, metadata={"team": "ops"}
            ),
            "pets": await added(client, url, token, kb, "pets.html", text=PETS),
            "support": await added(
                client, url, token, kb, "support", text=SUPPORT, content_type="text/plain"
            ),
            "report": await added(
                client, url, token, kb, "report.pdf", content=REPORT, metadata={"team": "finance"}
            ),
        }
    return Library(account, kb, documents)


@pytest.fixture(scope="module")
async def database(platform) -> AsyncIterator[AsyncEngine]:
    engine = create_async_engine(platform.database_url)
    yield engine
    await engine.dispose()


async def chunk_rows(engine: AsyncEngine, column: str, value: str) -> list[dict[str, Any]]:
    async with engine.connect() as conn:
        rows = await conn.execute(
            text(
                "SELECT document_id::text AS document, ordinal, text, model, "
                f"vector_dims(embedding) AS dims FROM chunks WHERE {column} = CAST(:v AS uuid) "
                "ORDER BY document_id, ordinal"
            ),
            {"v": value},
        )
        return [dict(r._mapping) for r in rows]


async def test_text_markdown_html_and_pdf_become_documents(platform, client, library, database):
    docs = library.documents
    assert {k: d["contentType"] for k, d in docs.items()} == {
        "handbook": "text/markdown",  # from the name's extension
        "pets": "text/html",
        "support": "text/plain",
        "report": "application/pdf",
    }
    assert docs["handbook"]["title"] == "Employee handbook"
    assert docs["pets"]["title"] == "Office pets"
    assert docs["report"]["title"] == "Annual report"
    assert docs["handbook"]["chunkCount"] == 3  # one per section: headings are boundaries
    assert all(d["status"] == "ready" and d["chunkCount"] >= 1 for d in docs.values())
    assert docs["report"]["size"] == len(REPORT)
    assert docs["handbook"]["metadata"] == {"team": "ops"}

    listed = data(
        await gql(
            client,
            platform.router_url,
            "query ($id: ID!) { knowledgeBase(id: $id) { embeddingModel embeddingDimensions "
            "documentCount documents { id name chunkCount knowledgeBase { id } } } }",
            {"id": library.knowledge_base},
            library.account.token,
        )
    )["knowledgeBase"]
    assert listed["embeddingModel"] == LOCAL_MODEL
    assert listed["embeddingDimensions"] == 384
    assert listed["documentCount"] == 4
    assert [d["name"] for d in listed["documents"]] == [
        "report.pdf",
        "support",
        "pets.html",
        "handbook.md",
    ]
    assert {d["knowledgeBase"]["id"] for d in listed["documents"]} == {library.knowledge_base}

    stored = await chunk_rows(database, "knowledge_base_id", library.knowledge_base)
    assert {(r["model"], r["dims"]) for r in stored} == {(LOCAL_MODEL, 384)}
    html_text = " ".join(r["text"] for r in stored if r["document"] == docs["pets"]["id"])
    assert html_text == "The cat sleeps on the mat by the window all afternoon."  # no nav, script
    handbook = [r["text"] for r in stored if r["document"] == docs["handbook"]["id"]]
    assert handbook[2].startswith("Parcels leave our warehouse")


async def test_a_question_finds_the_passage_by_meaning_without_shared_words(
    platform, client, library
):
    found = await hits(
        client, platform.router_url, library.account.token, library.knowledge_base,
        "feline napping on a rug",
    )  # fmt: skip
    best = found[0]
    assert best["document"]["name"] == "pets.html"
    assert best["vectorRank"] == 1
    assert best["textRank"] is None  # no word of the query is in it
    assert best["similarity"] > 0.4
    assert best["heading"] == "Animals at the office"

    found = await hits(
        client, platform.router_url, library.account.token, library.knowledge_base,
        "Can shoppers be reimbursed?",
    )  # fmt: skip
    assert found[0]["heading"] == "Employee handbook > Refunds"
    assert found[0]["text"].startswith("Customers may return unused goods")


async def test_an_exact_keyword_is_ranked_by_full_text_and_highlighted(platform, client, library):
    found = await hits(
        client, platform.router_url, library.account.token, library.knowledge_base, "QX-7731"
    )
    best = found[0]
    assert best["document"]["name"] == "support"
    assert best["textRank"] == 1
    assert best["textScore"] > 0
    assert "<mark>QX-7731</mark>" in best["highlight"]
    assert best["score"] > found[1]["score"]  # ranked first by both: fused above the rest

    found = await hits(
        client, platform.router_url, library.account.token, library.knowledge_base, "Trondheim"
    )
    assert found[0]["heading"] == "Employee handbook > Shipping"
    assert "<mark>Trondheim</mark>" in found[0]["highlight"]
    start, end = found[0]["metadata"]["start"], found[0]["metadata"]["end"]
    assert end - start == len(found[0]["text"])


async def test_pdf_passages_know_their_pages(platform, client, library):
    found = await hits(
        client, platform.router_url, library.account.token, library.knowledge_base,
        "financial results", k=1,
    )  # fmt: skip
    assert len(found) == 1
    assert found[0]["document"]["name"] == "report.pdf"
    assert found[0]["page"] == 1
    assert found[0]["metadata"]["lastPage"] == 2
    assert "board expects steady growth" in found[0]["text"]


async def test_highlights_are_safe_html(platform, client, library):
    kb = await create_knowledge_base(client, platform.router_url, library.account, "Escaping")
    await added(
        client, platform.router_url, library.account.token, kb, "tags.txt",
        text="Tom and Jerry <img src=x onerror=alert(1)> ride the zebra home & back.",
    )  # fmt: skip
    found = await hits(client, platform.router_url, library.account.token, kb, "zebra")
    highlight = found[0]["highlight"]
    assert "&lt;img src=x onerror=alert(1)&gt; ride the <mark>zebra</mark> home &amp;" in highlight
    assert set(re.findall(r"<[^>]*>", highlight)) == {"<mark>", "</mark>"}


async def test_filters_narrow_the_search_to_documents(platform, client, library):
    token, kb = library.account.token, library.knowledge_base
    report = library.documents["report"]["id"]
    only = await hits(
        client, platform.router_url, token, kb, "Trondheim", filter={"documentIds": [report]}
    )
    assert {h["document"]["id"] for h in only} == {report}
    by_team = await hits(
        client, platform.router_url, token, kb, "Trondheim", filter={"metadata": {"team": "ops"}}
    )
    assert {h["document"]["name"] for h in by_team} == {"handbook.md"}
    nothing = await hits(
        client, platform.router_url, token, kb, "Trondheim",
        filter={"metadata": {"team": "nobody"}},
    )  # fmt: skip
    assert nothing == []


async def test_adding_the_same_content_again_adds_nothing(platform, client, library):
    again = await added(
        client, platform.router_url, library.account.token, library.knowledge_base,
        "handbook-copy.md", text=HANDBOOK,
    )  # fmt: skip
    assert again["id"] == library.documents["handbook"]["id"]
    assert again["name"] == "handbook.md"


async def test_the_same_content_added_twice_at_once_is_stored_once(
    platform, client, library, database
):
    kb = await create_knowledge_base(client, platform.router_url, library.account, "Racing")
    twice = await asyncio.gather(
        *(
            added(client, platform.router_url, library.account.token, kb, name, text=HANDBOOK)
            for name in ("first.md", "second.md")
        )
    )
    assert twice[0]["id"] == twice[1]["id"]
    assert await counts(database, kb) == (1, 3)


async def test_deleting_a_document_removes_its_chunks(platform, client, library, database):
    token = library.account.token
    kb = await create_knowledge_base(client, platform.router_url, library.account, "Short-lived")
    keep = await added(client, platform.router_url, token, kb, "keep.txt", text=SUPPORT)
    gone = await added(client, platform.router_url, token, kb, "gone.md", text=HANDBOOK)
    assert len(await chunk_rows(database, "document_id", gone["id"])) == 3

    deleted = data(
        await gql(
            client,
            platform.router_url,
            "mutation ($id: ID!) { deleteDocument(input: {id: $id}) { __typename "
            "... on DeleteDocumentSuccess { id knowledgeBaseId } } }",
            {"id": gone["id"]},
            token,
        )
    )["deleteDocument"]
    assert deleted == {
        "__typename": "DeleteDocumentSuccess",
        "id": gone["id"],
        "knowledgeBaseId": kb,
    }
    assert await chunk_rows(database, "document_id", gone["id"]) == []
    assert len(await chunk_rows(database, "document_id", keep["id"])) == 1
    found = await hits(client, platform.router_url, token, kb, "Trondheim", k=10)
    assert {h["document"]["id"] for h in found} == {keep["id"]}
    again = data(
        await gql(
            client,
            platform.router_url,
            "mutation ($id: ID!) { deleteDocument(input: {id: $id}) { __typename } }",
            {"id": gone["id"]},
            token,
        )
    )
    assert again["deleteDocument"]["__typename"] == "NotFoundError"


async def test_deleting_a_knowledge_base_removes_everything_in_it(
    platform, client, library, database
):
    token = library.account.token
    kb = await create_knowledge_base(client, platform.router_url, library.account, "Doomed")
    await added(client, platform.router_url, token, kb, "doomed.md", text=HANDBOOK)
    query = "mutation ($id: ID!) { deleteKnowledgeBase(input: {id: $id}) { __typename } }"
    result = data(await gql(client, platform.router_url, query, {"id": kb}, token))
    assert result["deleteKnowledgeBase"]["__typename"] == "DeleteKnowledgeBaseSuccess"
    assert await chunk_rows(database, "knowledge_base_id", kb) == []
    async with database.connect() as conn:
        left = await conn.scalar(
            text("SELECT count(*) FROM documents WHERE knowledge_base_id = CAST(:kb AS uuid)"),
            {"kb": kb},
        )
    assert left == 0
    searched = await search(client, platform.router_url, token, kb, "Trondheim")
    assert searched["__typename"] == "NotFoundError"


async def test_another_organization_can_neither_see_nor_search_them(platform, client, library):
    stranger = await sign_up(client, platform.router_url, "Snoopers")
    theirs = await search(
        client, platform.router_url, stranger.token, library.knowledge_base, "Trondheim"
    )
    assert theirs["__typename"] == "NotFoundError"
    own = await create_knowledge_base(client, platform.router_url, stranger, "Own")
    await added(client, platform.router_url, stranger.token, own, "mine.txt", text="Trondheim")
    handbook = library.documents["handbook"]["id"]
    found = await hits(
        client, platform.router_url, stranger.token, own, "Trondheim",
        filter={"documentIds": [handbook]},
    )  # fmt: skip
    assert found == []
    into_theirs = await add_document(
        client, platform.router_url, stranger.token, library.knowledge_base, "x.txt", text="hi"
    )
    assert into_theirs["__typename"] == "NotFoundError"
    seen = data(
        await gql(
            client,
            platform.router_url,
            "query ($id: ID!) { document(id: $id) { id } }",
            {"id": handbook},
            stranger.token,
        )
    )
    assert seen["document"] is None


async def test_viewers_search_but_cannot_change_documents(platform, client, library):
    key = data(
        await gql(
            client,
            platform.router_url,
            'mutation { createApiKey(input: {name: "reader", role: "viewer"}) {'
            " ... on CreateApiKeySuccess { secret } } }",
            token=library.account.token,
        )
    )["createApiKey"]["secret"]
    found = await hits(client, platform.router_url, key, library.knowledge_base, "Trondheim")
    assert found[0]["document"]["name"] == "handbook.md"
    refused = await add_document(
        client, platform.router_url, key, library.knowledge_base, "x.txt", text="hello"
    )
    assert refused["__typename"] == "ForbiddenError"
    upload = await client.post(
        f"{ai_base(platform)}/knowledge-bases/{library.knowledge_base}/documents",
        params={"name": "x.txt"},
        content=b"hello",
        headers={"authorization": f"Bearer {key}", "content-type": "text/plain"},
    )
    assert upload.status_code == 403


# ---- refusals leave nothing behind ----------------------------------------------------------


async def counts(engine: AsyncEngine, kb: str) -> tuple[int, int]:
    async with engine.connect() as conn:
        documents = await conn.scalar(
            text("SELECT count(*) FROM documents WHERE knowledge_base_id = CAST(:kb AS uuid)"),
            {"kb": kb},
        )
        chunks = await conn.scalar(
            text("SELECT count(*) FROM chunks WHERE knowledge_base_id = CAST(:kb AS uuid)"),
            {"kb": kb},
        )
    return int(documents or 0), int(chunks or 0)


@pytest.mark.parametrize(
    ("name", "given", "expected"),
    [
        ("empty.txt", {"text": ""}, "the document is empty"),
        ("blank.md", {"text": "   \n\n  "}, "the document holds no text"),
        (
            "fake.pdf",
            {"content": b"<html>I am not a PDF</html>", "content_type": "application/pdf"},
            "the document is not a PDF",
        ),
        (
            "broken.pdf",
            {"content": b"%PDF-1.4\n1 0 obj garbage", "content_type": "application/pdf"},
            "the PDF cannot be read",
        ),
        ("image.png", {"content": b"\x89PNG\r\n", "content_type": "image/png"}, "unsupported"),
        ("binary.txt", {"content": b"\xff\xfe\x00\x01"}, "not UTF-8 text"),
        ("big.txt", {"text": "x" * (LIMIT + 1)}, "larger than the limit of 20,971,520 bytes"),
    ],
)
async def test_bad_documents_are_refused_with_the_reason(
    platform, client, library, database, name, given, expected
):
    before = await counts(database, library.knowledge_base)
    refused = await add_document(
        client, platform.router_url, library.account.token, library.knowledge_base, name, **given
    )
    assert refused["__typename"] == "ValidationError", refused
    assert expected in refused["message"]
    assert expected in refused["fields"][0]["message"]
    assert await counts(database, library.knowledge_base) == before


def ai_base(platform) -> str:
    return platform.urls["ai"].removesuffix("/graphql")


async def test_files_upload_over_http(platform, client, library, database):
    kb = await create_knowledge_base(client, platform.router_url, library.account, "Uploads")
    url = f"{ai_base(platform)}/knowledge-bases/{kb}/documents"
    auth = {"authorization": f"Bearer {library.account.token}"}
    answer = await client.post(
        url,
        params={"name": "report.pdf", "metadata": json.dumps({"year": 2026})},
        content=REPORT,
        headers={**auth, "content-type": "application/pdf"},
    )
    assert answer.status_code == 201, answer.text
    document = answer.json()["document"]
    assert document["chunkCount"] == 1
    assert document["metadata"] == {"year": 2026}
    found = await hits(client, platform.router_url, library.account.token, kb, "revenue")
    assert found[0]["document"]["id"] == document["id"]

    anonymous = await client.post(url, params={"name": "a.txt"}, content=b"hello")
    assert anonymous.status_code == 401
    fake = await client.post(
        url,
        params={"name": "fake.pdf"},
        content=b"hello",
        headers={**auth, "content-type": "application/pdf"},
    )
    assert fake.status_code == 400
    assert "not a PDF" in fake.json()["message"]
    elsewhere = await client.post(
        f"{ai_base(platform)}/knowledge-bases/00000000-0000-0000-0000-000000000000/documents",
        params={"name": "a.txt"},
        content=b"hello",
        headers={**auth, "content-type": "text/plain"},
    )
    assert elsewhere.status_code == 404
    assert await counts(database, kb) == (1, 1)


async def _whole_response(reader: asyncio.StreamReader) -> bytes:
    """Headers and body (the body may come in a later segment than the headers)."""
    answer = b""
    while True:
        head, found, body = answer.partition(b"\r\n\r\n")
        if found:
            length = next(
                int(line.split(b":", 1)[1])
                for line in head.split(b"\r\n")
                if line.lower().startswith(b"content-length:")
            )
            if len(body) >= length:
                return answer
        chunk = await reader.read(65536)
        if not chunk:
            return answer
        answer += chunk


async def test_a_50_mb_upload_is_refused_before_it_is_read(platform, library, database):
    """The refusal comes while 49 of the declared 50 MB were never sent."""
    kb = library.knowledge_base
    before = await counts(database, kb)
    host, port = ai_base(platform).removeprefix("http://").rsplit(":", 1)
    reader, writer = await asyncio.open_connection(host, int(port))
    head = (
        f"POST /knowledge-bases/{kb}/documents?name=huge.txt HTTP/1.1\r\n"
        f"Host: {host}\r\nAuthorization: Bearer {library.account.token}\r\n"
        f"Content-Type: text/plain\r\nContent-Length: {50 * 1024 * 1024}\r\n\r\n"
    )
    writer.write(head.encode() + b"x" * (1024 * 1024))
    await writer.drain()
    answer = await asyncio.wait_for(_whole_response(reader), 10)
    writer.close()
    status_line, _, rest = answer.decode().partition("\r\n")
    assert status_line == "HTTP/1.1 413 Request Entity Too Large"
    assert "larger than the limit of 20,971,520 bytes (52,428,800 bytes)" in rest
    assert await counts(database, kb) == before


async def test_an_oversized_upload_without_a_length_is_cut_at_the_limit(
    platform, library, database
):
    """A chunked upload (no Content-Length) is refused once it passes the limit. The answer
    is read while the body is still being sent: the server stops reading at the limit, and
    a client that only reads after sending everything may find the connection reset."""
    kb = library.knowledge_base
    before = await counts(database, kb)
    host, port = ai_base(platform).removeprefix("http://").rsplit(":", 1)
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(
        f"POST /knowledge-bases/{kb}/documents?name=huge.txt HTTP/1.1\r\n"
        f"Host: {host}\r\nAuthorization: Bearer {library.account.token}\r\n"
        "Content-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n".encode()
    )
    answer = asyncio.create_task(_whole_response(reader))
    chunk = b"y" * (1024 * 1024)
    try:
        for _ in range(21):
            if answer.done():
                break
            writer.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            await writer.drain()
        else:
            writer.write(b"0\r\n\r\n")
            await writer.drain()
    except OSError:
        pass  # the server stopped reading: its answer says why
    status_line, _, rest = (await asyncio.wait_for(answer, 10)).decode().partition("\r\n")
    writer.close()
    assert status_line == "HTTP/1.1 413 Request Entity Too Large"
    assert "larger than the limit" in rest
    assert await counts(database, kb) == before


# ---- the HNSW index ------------------------------------------------------------------------


async def test_vector_searches_use_the_models_hnsw_index(platform, client, library, database):
    """With enough chunks for an index to pay off, the planner takes the local model's
    HNSW index for the very query the service runs."""
    from subgraphs.ai.models import KnowledgeBase, vector_index_name
    from subgraphs.ai.repository import SearchFilter, search_sql

    token = library.account.token
    kb = await create_knowledge_base(client, platform.router_url, library.account, "Many")
    document = await added(client, platform.router_url, token, kb, "seed.txt", text=SUPPORT)
    async with database.begin() as conn:
        await conn.execute(
            text(
                "INSERT INTO chunks (organization_id, knowledge_base_id, document_id, ordinal, "
                "text, model, embedding) "
                "SELECT :org, CAST(:kb AS uuid), CAST(:doc AS uuid), g, 'filler ' || g, :model, "
                "CAST(ARRAY(SELECT random() - 0.5 + g * 0 FROM generate_series(1, 384)) "
                "AS vector) FROM generate_series(1, 2000) g"
            ),
            {
                "org": library.account.organization_id,
                "kb": kb,
                "doc": document["id"],
                "model": LOCAL_MODEL,
            },
        )
        await conn.execute(text("ANALYZE chunks"))
    model = KnowledgeBase(
        organization_id=library.account.organization_id,
        name="Many",
        embedding_model=LOCAL_MODEL,
        embedding_dimensions=384,
    )
    model.id = uuid.UUID(kb)
    sql, params = search_sql(model, SearchFilter())
    async with database.connect() as conn:
        plan = await conn.execute(
            text("EXPLAIN " + sql).bindparams(*params),
            {
                "org": library.account.organization_id,
                "kb": model.id,
                "query": "server room",
                "vector": "[" + ",".join(["0.05"] * 384) + "]",
                "candidates": 40,
                "k": 5,
            },
        )
        lines = "\n".join(r[0] for r in plan)
    assert f"Index Scan using {vector_index_name(LOCAL_MODEL, 384)} on chunks" in lines, lines
    found = await hits(client, platform.router_url, token, kb, "QX-7731")
    assert found[0]["document"]["id"] == document["id"]
    assert found[0]["ordinal"] == 0
