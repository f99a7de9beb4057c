"""Document upload over plain HTTP, for files too big to send as base64 in GraphQL.

    POST /knowledge-bases/{id}/documents?name=report.pdf
    Authorization: Bearer <access token or API key>
    Content-Type: application/pdf
    <the file's bytes>

The body is the file itself; `name` is its name and an optional `metadata` parameter a
JSON object. A declared Content-Length over the limit is refused before anything is read,
and a body without one is read only up to the limit. Answers 201 with the document, or
the refusal as `{"message", "fields"}` with 400, 401, 403, 404, 413, 502 or 503.
"""

from __future__ import annotations

import json
from typing import Any

from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse
from starlette.routing import BaseRoute, Route

from klikkflow.ai.documents import DocumentTooLarge, read_limited
from klikkflow.ai.embeddings import EmbeddingError, EmbeddingProviderError
from klikkflow.kit.auth import (
    InvalidToken,
    Viewer,
    check_organization,
    find_organization,
    find_token,
)
from klikkflow.kit.errors import InvalidInput, NotAllowed
from subgraphs.ai.models import Document
from subgraphs.ai.service import KnowledgeBaseNotFound
from subgraphs.ai.service import knowledge_base as knowledge_base_service


class Refused(Exception):
    def __init__(self, status: int, message: str, fields: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.fields = status, fields or {}


def document_json(document: Document) -> dict[str, Any]:
    return {
        "id": str(document.id),
        "knowledgeBaseId": str(document.knowledge_base_id),
        "name": document.name,
        "contentType": document.content_type,
        "size": document.size,
        "sha256": document.sha256,
        "status": document.status,
        "title": document.title,
        "chunkCount": document.chunk_count,
        "metadata": document.meta,
        "createdAt": document.created_at.isoformat(),
    }


async def _viewer(request: Request) -> Viewer:
    token = find_token(request.headers)
    if token is None:
        raise Refused(401, "authentication required")
    verifier = request.app.state.verifier
    try:
        viewer: Viewer = await verifier.verify(token)
        check_organization(viewer, find_organization(request.headers))
    except InvalidToken as exc:
        verifier.report_refusal(str(exc), request.app.state.service_name)
        raise Refused(401, f"invalid token: {exc}") from None
    return viewer


def _metadata(request: Request) -> dict[str, Any] | None:
    raw = request.query_params.get("metadata")
    if raw is None:
        return None
    try:
        value = json.loads(raw)
    except ValueError:
        raise Refused(400, "metadata is not JSON", {"metadata": "is not JSON"}) from None
    if not isinstance(value, dict):
        raise Refused(400, "metadata must be a JSON object", {"metadata": "must be an object"})
    return value


async def _body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise DocumentTooLarge(limit, int(declared))
    try:
        return await read_limited(request.stream(), limit)
    except ClientDisconnect:
        raise Refused(400, "the client went away") from None


async def upload_document(request: Request) -> JSONResponse:
    try:
        viewer = await _viewer(request)
        name = request.query_params.get("name", "")
        metadata = _metadata(request)
        data = await _body(request, knowledge_base_service.max_bytes)
        async with request.app.state.sessions() as session:
            document = await knowledge_base_service.add_document(
                session,
                viewer,
                request.path_params["knowledge_base_id"],
                name,
                request.headers.get("content-type"),
                data,
                metadata,
            )
            await session.commit()
    except Refused as exc:
        return _refusal(exc.status, str(exc), exc.fields)
    except DocumentTooLarge as exc:
        return _refusal(413, str(exc), exc.problems)
    except InvalidInput as exc:
        return _refusal(400, f"document refused: {exc}", exc.problems)
    except NotAllowed as exc:
        return _refusal(403, str(exc))
    except KnowledgeBaseNotFound as exc:
        return _refusal(404, str(exc))
    except EmbeddingError as exc:
        retryable = isinstance(exc, EmbeddingProviderError) and exc.retryable
        return _refusal(503 if retryable else 502, f"embedding failed: {exc}")
    return JSONResponse({"document": document_json(document)}, status_code=201)


def _refusal(status: int, message: str, fields: dict[str, str] | None = None) -> JSONResponse:
    body = {
        "message": message,
        "fields": [{"path": k, "message": v} for k, v in (fields or {}).items()],
    }
    # The body of a refused upload is left unread: the connection cannot be reused.
    return JSONResponse(body, status_code=status, headers={"connection": "close"})


ROUTES: list[BaseRoute] = [
    Route(
        "/knowledge-bases/{knowledge_base_id}/documents",
        upload_document,
        methods=["POST"],
    )
]
