"""The knowledge-base pages: the organization's knowledge bases (create, delete), and one
knowledge base: its documents (upload, delete) and a search that shows the passages found
with the query's words highlighted.

Reads and small writes go through the router like every page. An uploaded file is sent
as it is to the AI service's upload endpoint (``POST /knowledge-bases/{id}/documents``,
the viewer's token as Bearer), the one way in for files too big to carry as base64 in
GraphQL: the bytes are streamed, never decoded or held whole by the dashboard.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import quote

import httpx
from markupsafe import Markup
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from web.forms import ERROR_FIELDS, ERROR_MESSAGE, Outcome, error_text, outcome
from web.graphql_client import JSON
from web.session import Api, current_token, read_form, token_claims
from web.templating import is_htmx, render
from web.viewer import load_viewer, render_page

# Who may create and delete knowledge bases and documents; viewers only read and search.
EDITOR_ROLES = ("owner", "admin", "editor")
DOCUMENTS_SHOWN = 200
SEARCH_HITS = 8
# A multipart body carries the file plus its boundaries, headers and the CSRF field.
MULTIPART_SLACK = 64 * 1024
UPLOAD_CHUNK = 256 * 1024
# Extracting and embedding a large document takes a while on a CPU.
UPLOAD_TIMEOUT = httpx.Timeout(connect=5.0, read=900.0, write=120.0, pool=5.0)
CONTENT_TYPE_LABELS = {
    "text/plain": "Text",
    "text/markdown": "Markdown",
    "text/html": "HTML",
    "application/pdf": "PDF",
}

LIST_QUERY = """\
query KnowledgeBases {
  knowledgeBases(first: 100) { id name createdAt embeddingModel documentCount }
}
"""

DETAIL_QUERY = """\
query KnowledgeBase($id: ID!, $documents: Int!) {
  knowledgeBase(id: $id) {
    id name createdAt embeddingModel embeddingDimensions documentCount
    documents(first: $documents) {
      id name contentType size status error title chunkCount createdAt
    }
  }
}
"""

NAME_QUERY = "query KnowledgeBaseName($id: ID!) { knowledgeBase(id: $id) { id name } }"

SEARCH_QUERY = f"""\
query SearchKnowledgeBase($id: ID!, $query: String!, $k: Int!) {{
  searchKnowledgeBase(knowledgeBaseId: $id, query: $query, k: $k) {{
    __typename
    ... on KnowledgeSearchResults {{
      model
      hits {{
        chunkId ordinal text heading page score vectorRank similarity textRank textScore
        highlight document {{ id name }}
      }}
    }}
    {ERROR_FIELDS}
  }}
}}
"""

CREATE = f"""\
mutation CreateKnowledgeBase($input: CreateKnowledgeBaseInput!) {{
  createKnowledgeBase(input: $input) {{
    __typename ... on CreateKnowledgeBaseSuccess {{ knowledgeBase {{ id name }} }} {ERROR_FIELDS}
  }}
}}
"""

DELETE = f"""\
mutation DeleteKnowledgeBase($input: DeleteKnowledgeBaseInput!) {{
  deleteKnowledgeBase(input: $input) {{
    __typename ... on DeleteKnowledgeBaseSuccess {{ id }} {ERROR_MESSAGE}
  }}
}}
"""

DELETE_DOCUMENT = f"""\
mutation DeleteDocument($input: DeleteDocumentInput!) {{
  deleteDocument(input: $input) {{
    __typename ... on DeleteDocumentSuccess {{ id }} {ERROR_MESSAGE}
  }}
}}
"""

# What the AI service's highlights are made of: text escaped by html.escape, and <mark>
# elements around the query's words. Anything else is not shown as HTML.
_HIGHLIGHT_PART = re.compile(r"<mark>|</mark>|&(?:amp|lt|gt|quot|#x27|#39);|[^<>&]+")


def safe_highlight(value: object) -> Markup | None:
    """``value`` as markup when it is nothing but escaped text and balanced, unnested
    <mark></mark> pairs; None for anything else (then only its plain text is shown)."""
    if not isinstance(value, str):
        return None
    open_mark = False
    position = 0
    for part in _HIGHLIGHT_PART.finditer(value):
        if part.start() != position:
            return None
        position = part.end()
        token = part.group()
        if token in ("<mark>", "</mark>"):
            if open_mark == (token == "<mark>"):
                return None
            open_mark = not open_mark
    if position != len(value) or open_mark:
        return None
    return Markup(value)  # checked above: escaped text and <mark> pairs only


def human_size(size: object) -> str:
    if not isinstance(size, int):
        return "—"
    if size < 1024:
        return f"{size} B"
    if size < 1024 * 1024:
        return f"{size / 1024:.1f} KB"
    return f"{size / 1024 / 1024:.1f} MB"


def _can_edit(request: Request) -> bool:
    return token_claims(request).get("role") in EDITOR_ROLES


def _done(request: Request, url: str) -> Response:
    if is_htmx(request):
        return Response(status_code=204, headers={"HX-Redirect": url})
    return RedirectResponse(url, status_code=303)


# -- the list --------------------------------------------------------------------------


async def knowledge_bases_page(request: Request) -> Response:
    viewer = await load_viewer(request, required=True)
    return await _render_list(request, {"viewer": viewer})


async def _render_list(request: Request, extra: dict[str, Any]) -> Response:
    response = await Api(request).call(LIST_QUERY)
    context: dict[str, Any] = {
        "nav": "ai",
        "knowledge_bases": (response.data or {}).get("knowledgeBases") or [],
        "load_error": error_text(response) if response.errors else None,
        "can_edit": _can_edit(request),
        "notice": None,
        "create_outcome": Outcome(),
        "create_form": {},
        **extra,
    }
    return await render_page(
        request, "pages/knowledge_bases.html", context, fragment="partials/knowledge_bases.html"
    )


async def create_knowledge_base(request: Request) -> Response:
    form = await read_form(request)
    variables = {"input": {"name": form.get("name", "")}}
    result = outcome(await Api(request).call(CREATE, variables), "createKnowledgeBase")
    if result.ok:
        created = result.get("knowledgeBase") or {}
        return _done(request, str(request.url_for("knowledge_base", kb_id=created["id"]).path))
    return await _render_list(request, {"create_outcome": result, "create_form": form})


async def delete_knowledge_base(request: Request) -> Response:
    await read_form(request)
    kb_id = request.path_params["kb_id"]
    response = await Api(request).call(DELETE, {"input": {"id": kb_id}})
    result = outcome(response, "deleteKnowledgeBase")
    if not result.ok:
        return await _render_detail(request, kb_id, {"notice_error": result.message})
    return _done(request, str(request.url_for("knowledge_bases").path))


# -- one knowledge base ----------------------------------------------------------------


async def _load(request: Request, kb_id: str) -> JSON:
    variables = {"id": kb_id, "documents": DOCUMENTS_SHOWN}
    response = await Api(request).call(DETAIL_QUERY, variables)
    found = (response.data or {}).get("knowledgeBase")
    if not isinstance(found, dict):
        raise HTTPException(404, error_text(response) or "No such knowledge base.")
    return found


def _document_views(documents: list[JSON]) -> list[JSON]:
    return [
        {
            **d,
            "kind": CONTENT_TYPE_LABELS.get(str(d.get("contentType")), d.get("contentType")),
            "size_text": human_size(d.get("size")),
        }
        for d in documents
    ]


async def _render_detail(request: Request, kb_id: str, extra: dict[str, Any]) -> Response:
    """The page, or (for HTMX) the documents section with a notice or the refusal."""
    kb = await _load(request, kb_id)
    context: dict[str, Any] = {
        "nav": "ai",
        "kb": kb,
        "documents": _document_views(kb.get("documents") or []),
        "can_edit": _can_edit(request),
        "max_bytes": request.state.settings.document_max_bytes,
        "max_size_text": human_size(request.state.settings.document_max_bytes),
        "notice": None,
        "notice_error": None,
        "upload_outcome": Outcome(),
        "search": None,
        "facts_oob": is_htmx(request),  # the counts in the page head change too
        **extra,
    }
    return await render_page(
        request, "pages/knowledge_base.html", context, fragment="partials/kb_documents.html"
    )


async def knowledge_base_page(request: Request) -> Response:
    viewer = await load_viewer(request, required=True)
    return await _render_detail(request, request.path_params["kb_id"], {"viewer": viewer})


async def delete_document(request: Request) -> Response:
    await read_form(request)
    kb_id, document_id = request.path_params["kb_id"], request.path_params["document_id"]
    variables = {"input": {"id": document_id}}
    result = outcome(await Api(request).call(DELETE_DOCUMENT, variables), "deleteDocument")
    name = (await request.form()).get("name")
    what = f"“{name}”" if isinstance(name, str) and name else "The document"
    if result.ok:
        return await _render_detail(
            request, kb_id, {"notice": f"{what} and its passages were deleted."}
        )
    return await _render_detail(request, kb_id, {"notice_error": result.message})


# -- upload ----------------------------------------------------------------------------


async def _drain(request: Request) -> None:
    """Read a refused body to its end without keeping it: a browser still sending it
    would see a reset connection instead of our answer."""
    async for _ in request.stream():
        pass


async def _file_parts(upload: UploadFile) -> AsyncIterator[bytes]:
    while part := await upload.read(UPLOAD_CHUNK):
        yield part


def _service_refusal(response: httpx.Response) -> Outcome:
    """The AI service's refusal ``{"message", "fields"}`` as an outcome to show."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if not isinstance(body, dict):
        message = f"The AI service answered HTTP {response.status_code}."
        return Outcome("UploadFailed", message=message)
    fields = {
        str(f.get("path", "")): str(f.get("message", ""))
        for f in body.get("fields") or []
        if isinstance(f, dict)
    }
    kinds = {400: "DocumentRefused", 401: "Unauthorized", 403: "ForbiddenError",
             404: "NotFoundError", 413: "DocumentTooLarge"}  # fmt: skip
    typename = kinds.get(response.status_code, "EmbeddingFailedError")
    message = str(body.get("message") or f"HTTP {response.status_code}")
    return Outcome(typename, body, message=_sentence(message), fields=fields)


def _sentence(message: str) -> str:
    message = message.strip()
    return message[:1].upper() + message[1:] + ("" if message.endswith(".") else ".")


async def _send(request: Request, kb_id: str, upload: UploadFile) -> Outcome:
    settings = request.state.settings
    url = f"{settings.ai_url.rstrip('/')}/knowledge-bases/{quote(kb_id, safe='')}/documents"
    headers = {
        "Authorization": f"Bearer {current_token(request)}",
        "Content-Type": upload.content_type or "application/octet-stream",
        "Content-Length": str(upload.size or 0),
    }
    try:
        response = await request.state.http.post(
            url,
            params={"name": upload.filename or "document"},
            content=_file_parts(upload),
            headers=headers,
            timeout=UPLOAD_TIMEOUT,
        )
    except httpx.ConnectError:
        message = "The AI service cannot be reached; try again in a moment."
        return Outcome("UploadFailed", message=message)
    except httpx.TimeoutException:
        message = "The AI service took too long to read the file; nothing may have been added."
        return Outcome("UploadFailed", message=message)
    except httpx.HTTPError as exc:
        # The service answers an oversized file before reading it and closes the
        # connection: while still sending, we only see the connection go.
        message = (
            f"The AI service closed the connection before answering ({type(exc).__name__}): "
            "the file may be over its size limit."
        )
        return Outcome("UploadFailed", message=message)
    if response.status_code == 201:
        return Outcome("AddDocumentSuccess", response.json())
    return _service_refusal(response)


async def upload_document(request: Request) -> Response:
    kb_id = request.path_params["kb_id"]
    limit: int = request.state.settings.document_max_bytes
    too_big = f"The file is larger than the limit of {human_size(limit)} ({limit:,} bytes)."
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit + MULTIPART_SLACK:
        await _drain(request)
        return await _render_detail(request, kb_id, {"upload_outcome": _too_big(too_big)})
    await read_form(request)
    upload = (await request.form()).get("file")
    if not isinstance(upload, UploadFile) or not upload.filename:
        problem = Outcome("NoFile", message="Choose a file to upload.")
        return await _render_detail(request, kb_id, {"upload_outcome": problem})
    if (upload.size or 0) > limit:
        return await _render_detail(request, kb_id, {"upload_outcome": _too_big(too_big)})
    # Through the router first: the knowledge base is one of ours, and an expired
    # access token is refreshed before the AI service sees it.
    found = await Api(request).call(NAME_QUERY, {"id": kb_id})
    if not isinstance((found.data or {}).get("knowledgeBase"), dict):
        raise HTTPException(404, error_text(found) or "No such knowledge base.")
    result = await _send(request, kb_id, upload)
    if not result.ok:
        return await _render_detail(request, kb_id, {"upload_outcome": result})
    document = result.get("document") or {}
    chunks = document.get("chunkCount", 0)
    notice = (
        f"Added “{document.get('name')}”: {chunks} searchable passage{'s' if chunks != 1 else ''}."
    )
    return await _render_detail(request, kb_id, {"notice": notice})


def _too_big(message: str) -> Outcome:
    return Outcome("DocumentTooLarge", message=message)


# -- search ----------------------------------------------------------------------------


def _hit_view(hit: JSON) -> JSON:
    document = hit.get("document") if isinstance(hit.get("document"), dict) else {}
    return {
        **hit,
        "document_name": (document or {}).get("name") or "a deleted document",
        "highlight_html": safe_highlight(hit.get("highlight")),
    }


async def _search(request: Request, kb_id: str, query: str) -> JSON:
    variables = {"id": kb_id, "query": query, "k": SEARCH_HITS}
    response = await Api(request).call(SEARCH_QUERY, variables)
    found = (response.data or {}).get("searchKnowledgeBase")
    if not isinstance(found, dict):
        return {"query": query, "error": error_text(response) or "The search failed."}
    if found.get("__typename") != "KnowledgeSearchResults":
        problems = [str(f.get("message")) for f in found.get("fields") or [] if isinstance(f, dict)]
        message = str(found.get("message") or "The search was refused.")
        return {"query": query, "error": _sentence(message), "problems": problems}
    hits = [_hit_view(h) for h in found.get("hits") or [] if isinstance(h, dict)]
    return {"query": query, "hits": hits, "model": found.get("model"), "error": None}


async def search_knowledge_base(request: Request) -> Response:
    kb_id = request.path_params["kb_id"]
    query = " ".join(request.query_params.get("q", "").split())
    search = await _search(request, kb_id, query) if query else None
    if is_htmx(request):
        return render(request, "partials/kb_search_results.html", {"search": search})
    viewer = await load_viewer(request, required=True)
    return await _render_detail(request, kb_id, {"viewer": viewer, "search": search})
