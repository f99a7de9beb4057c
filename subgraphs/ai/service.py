"""Knowledge bases: documents in, chunks with vectors, hybrid search out.

`ingest` and `search` need only an organization id, so the workers' AI nodes call them as
the GraphQL API does. Every vector records its model and a knowledge base records the
model of all its vectors: when the configured embedder is another model, the knowledge
base's chunks are re-embedded (under a lock on it) before anything else is written to or
searched in it, so vectors of two models are never compared. Nothing here commits: the
request or job boundary does, which also makes a refused document leave nothing behind.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import uuid
from collections.abc import Sequence
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from klikkflow.ai.documents import (
    check_size,
    chunk,
    content_type_of,
    embedding_text,
    extract,
)
from klikkflow.ai.embeddings import Embedder
from klikkflow.kit.auth import Viewer
from klikkflow.kit.errors import InvalidInput
from klikkflow.kit.permissions import require
from subgraphs.ai.models import Document, DocumentStatus, KnowledgeBase
from subgraphs.ai.repository import Hit, SearchFilter, parse_uuid, repository

log = logging.getLogger("klikkflow.ai")

MAX_NAME_LENGTH = 200
MAX_DOCUMENT_NAME_LENGTH = 300
MAX_PAGE = 100
MAX_METADATA_BYTES = 16 * 1024
MAX_QUERY_LENGTH = 1000
MAX_K = 50
MAX_FILTER_DOCUMENTS = 1000
#: HNSW indexes `vector` columns of at most this many dimensions (pgvector).
HNSW_MAX_DIMENSIONS = 2000
REEMBED_BATCH = 256


class KnowledgeBaseNotFound(Exception):
    def __init__(self, knowledge_base_id: str) -> None:
        super().__init__(f"knowledge base {knowledge_base_id} not found")
        self.knowledge_base_id = knowledge_base_id


class DocumentNotFound(Exception):
    def __init__(self, document_id: str) -> None:
        super().__init__(f"document {document_id} not found")
        self.document_id = document_id


class KnowledgeBaseService:
    def __init__(self) -> None:
        self._embedder: Embedder | None = None
        self.max_bytes = 20 * 1024 * 1024
        self._unindexed: set[str] = set()

    def configure(self, embedder: Embedder, max_bytes: int) -> None:
        """Called once by each process that uses the service (the AI subgraph, a worker)."""
        self._embedder, self.max_bytes = embedder, max_bytes

    @property
    def embedder(self) -> Embedder:
        if self._embedder is None:
            raise RuntimeError("knowledge_base.configure(embedder, max_bytes) was not called")
        return self._embedder

    # ---- knowledge bases ------------------------------------------------------------------

    def create(self, session: AsyncSession, viewer: Viewer, name: str) -> KnowledgeBase:
        """Adds to the session; the request boundary commits."""
        require(viewer, "knowledge_base.create")
        name = name.strip()
        if not name or len(name) > MAX_NAME_LENGTH:
            raise InvalidInput({"name": f"must have 1 to {MAX_NAME_LENGTH} characters"})
        kb = KnowledgeBase(
            organization_id=viewer.organization_id,
            name=name,
            embedding_model=self.embedder.model,
            embedding_dimensions=self.embedder.dimensions,
        )
        session.add(kb)
        return kb

    async def get_many(
        self, session: AsyncSession, viewer: Viewer, ids: list[str]
    ) -> list[KnowledgeBase | None]:
        found = await repository.by_ids(session, viewer.organization_id, ids)
        return [found.get(i) for i in ids]

    async def recent(
        self, session: AsyncSession, viewer: Viewer, first: int
    ) -> list[KnowledgeBase]:
        return await repository.recent(
            session, viewer.organization_id, max(1, min(first, MAX_PAGE))
        )

    async def delete(self, session: AsyncSession, viewer: Viewer, id: str) -> KnowledgeBase:
        """Deletes the knowledge base with its documents and chunks."""
        require(viewer, "knowledge_base.delete")
        kb = await repository.get(session, viewer.organization_id, id, lock=True)
        if kb is None:
            raise KnowledgeBaseNotFound(id)
        await repository.delete(session, kb)
        return kb

    async def reembed(
        self, session: AsyncSession, viewer: Viewer, id: str
    ) -> tuple[KnowledgeBase, int]:
        """Embeds every chunk again with the configured model; answers how many."""
        require(viewer, "knowledge_base.update")
        kb = await repository.get(session, viewer.organization_id, id, lock=True)
        if kb is None:
            raise KnowledgeBaseNotFound(id)
        count = await self._reembed(session, kb, self.embedder)
        return kb, count

    # ---- documents ------------------------------------------------------------------------

    async def add_document(
        self,
        session: AsyncSession,
        viewer: Viewer,
        knowledge_base_id: str,
        name: str,
        content_type: str | None,
        data: bytes,
        metadata: dict[str, Any] | None = None,
    ) -> Document:
        require(viewer, "knowledge_base.update")
        return await self.ingest(
            session, viewer.organization_id, knowledge_base_id, name, content_type, data, metadata
        )

    async def ingest(
        self,
        session: AsyncSession,
        organization_id: str,
        knowledge_base_id: str,
        name: str,
        content_type: str | None,
        data: bytes,
        metadata: dict[str, Any] | None = None,
    ) -> Document:
        """Extract, chunk, embed and store a document (in this session: commit it).

        The same content added to the same knowledge base again answers the document
        already there (so a retried job adds nothing). Refusals raise DocumentRefused or
        InvalidInput, an unknown knowledge base KnowledgeBaseNotFound, a failing embedding
        model klikkflow.ai.embeddings.EmbeddingError; none of them writes anything.
        """
        name = _document_name(name)
        meta = _metadata(metadata)
        kind = content_type_of(content_type, name)
        check_size(len(data), self.max_bytes)
        kb = await repository.get(session, organization_id, knowledge_base_id)
        if kb is None:
            raise KnowledgeBaseNotFound(knowledge_base_id)
        digest = hashlib.sha256(data).hexdigest()
        existing = await repository.document_with_content(session, kb, digest)
        if existing is not None:
            return existing
        extracted = await asyncio.to_thread(extract, data, kind, self.max_bytes)
        chunks = chunk(extracted)
        embedder = self.embedder
        vectors = await embedder.embed([c.embedding_text() for c in chunks])
        # Under the knowledge base's lock from here: its model cannot change meanwhile.
        kb = await repository.get(session, organization_id, knowledge_base_id, lock=True)
        if kb is None:
            raise KnowledgeBaseNotFound(knowledge_base_id)
        existing = await repository.document_with_content(session, kb, digest)
        if existing is not None:
            return existing
        await self._use_model(session, kb, embedder)
        document = Document(
            organization_id=organization_id,
            knowledge_base_id=kb.id,
            name=name,
            content_type=kind,
            size=len(data),
            sha256=digest,
            status=DocumentStatus.READY,
            title=extracted.title,
            chunk_count=len(chunks),
            meta=meta,
        )
        session.add(document)
        await session.flush()
        rows = [
            {
                "organization_id": organization_id,
                "knowledge_base_id": kb.id,
                "document_id": document.id,
                "ordinal": c.ordinal,
                "text": c.text,
                "meta": c.metadata(),
                "model": embedder.model,
                "embedding": vector,
            }
            for c, vector in zip(chunks, vectors, strict=True)
        ]
        await repository.insert_chunks(session, rows)
        return document

    async def delete_document(self, session: AsyncSession, viewer: Viewer, id: str) -> Document:
        """Deletes the document and its chunks."""
        require(viewer, "knowledge_base.update")
        found = await repository.documents_by_ids(session, viewer.organization_id, [id])
        document = found.get(id)
        if document is None:
            raise DocumentNotFound(id)
        await repository.delete_document(session, document)
        return document

    async def documents(
        self, session: AsyncSession, viewer: Viewer, ids: list[str]
    ) -> list[Document | None]:
        found = await repository.documents_by_ids(session, viewer.organization_id, ids)
        return [found.get(i) for i in ids]

    async def documents_of(
        self, session: AsyncSession, viewer: Viewer, kb_ids: list[str], first: int
    ) -> list[list[Document]]:
        uuids = [parse_uuid(i) for i in kb_ids]
        known = [u for u in uuids if u is not None]
        found = await repository.documents_of(
            session, viewer.organization_id, known, max(1, min(first, 1000))
        )
        return [found.get(u, []) if u is not None else [] for u in uuids]

    async def document_counts(
        self, session: AsyncSession, viewer: Viewer, kb_ids: list[str]
    ) -> list[int]:
        uuids = [parse_uuid(i) for i in kb_ids]
        known = [u for u in uuids if u is not None]
        counts = await repository.document_counts(session, viewer.organization_id, known)
        return [counts.get(u, 0) if u is not None else 0 for u in uuids]

    # ---- search ---------------------------------------------------------------------------

    async def search(
        self,
        session: AsyncSession,
        organization_id: str,
        knowledge_base_id: str,
        query: str,
        k: int = 5,
        filter: SearchFilter | None = None,
    ) -> list[Hit]:
        """The k chunks that best answer the query, by vector similarity and full-text
        rank fused. Re-embeds the knowledge base first if the configured model changed
        (in this session: commit it)."""
        query = query.strip()
        if not query or len(query) > MAX_QUERY_LENGTH:
            raise InvalidInput({"query": f"must have 1 to {MAX_QUERY_LENGTH} characters"})
        if not 1 <= k <= MAX_K:
            raise InvalidInput({"k": f"must be between 1 and {MAX_K}"})
        filter = _search_filter(filter)
        kb = await repository.get(session, organization_id, knowledge_base_id)
        if kb is None:
            raise KnowledgeBaseNotFound(knowledge_base_id)
        embedder = self.embedder
        if not _uses(kb, embedder):
            kb = await repository.get(session, organization_id, knowledge_base_id, lock=True)
            if kb is None:
                raise KnowledgeBaseNotFound(knowledge_base_id)
            await self._use_model(session, kb, embedder)
        (vector,) = await embedder.embed([query])
        return await repository.search(session, kb, query, vector, k, filter)

    # ---- models ---------------------------------------------------------------------------

    async def _use_model(
        self, session: AsyncSession, kb: KnowledgeBase, embedder: Embedder
    ) -> None:
        """Make the (locked) knowledge base's vectors the embedder's, re-embedding its
        chunks if they come from another model (after its index exists: see
        repository.ensure_vector_index)."""
        await self._ensure_index(session, embedder.model, embedder.dimensions)
        if not _uses(kb, embedder):
            await self._reembed(session, kb, embedder)

    async def _reembed(self, session: AsyncSession, kb: KnowledgeBase, embedder: Embedder) -> int:
        previous, count = kb.embedding_model, 0
        async for batch in repository.chunks_to_embed(session, kb, REEMBED_BATCH):
            texts = [embedding_text(text, meta.get("heading")) for _, text, meta in batch]
            vectors = await embedder.embed(texts)
            ids = [chunk_id for chunk_id, _, _ in batch]
            await repository.set_embeddings(
                session, kb, embedder.model, dict(zip(ids, vectors, strict=True))
            )
            count += len(batch)
        kb.embedding_model, kb.embedding_dimensions = embedder.model, embedder.dimensions
        session.add(kb)
        await session.flush()
        log.info(
            "knowledge base %s: %d chunks re-embedded (%s -> %s)",
            kb.id,
            count,
            previous,
            embedder.model,
        )
        return count

    async def _ensure_index(self, session: AsyncSession, model: str, dimensions: int) -> None:
        """The model's HNSW index (the local model's comes with the migrations)."""
        if dimensions <= HNSW_MAX_DIMENSIONS:
            await repository.ensure_vector_index(session, model, dimensions)
        elif model not in self._unindexed:
            log.warning("model %r has %d dimensions: searched without an index", model, dimensions)
            self._unindexed.add(model)


def _uses(kb: KnowledgeBase, embedder: Embedder) -> bool:
    return kb.embedding_model == embedder.model and kb.embedding_dimensions == embedder.dimensions


def _document_name(name: str) -> str:
    name = name.strip()
    if not name or len(name) > MAX_DOCUMENT_NAME_LENGTH:
        raise InvalidInput({"name": f"must have 1 to {MAX_DOCUMENT_NAME_LENGTH} characters"})
    return name


def _metadata(metadata: dict[str, Any] | None) -> dict[str, Any]:
    if metadata is None:
        return {}
    if not isinstance(metadata, dict):
        raise InvalidInput({"metadata": "must be a JSON object"})
    try:
        size = len(json.dumps(metadata))
    except (TypeError, ValueError):
        raise InvalidInput({"metadata": "must be a JSON object"}) from None
    if size > MAX_METADATA_BYTES:
        raise InvalidInput({"metadata": f"must be at most {MAX_METADATA_BYTES:,} bytes as JSON"})
    return metadata


def _search_filter(filter: SearchFilter | None) -> SearchFilter:
    if filter is None:
        return SearchFilter()
    if filter.document_ids is not None and len(filter.document_ids) > MAX_FILTER_DOCUMENTS:
        raise InvalidInput({"filter.documentIds": f"at most {MAX_FILTER_DOCUMENTS} ids"})
    if filter.metadata is not None:
        _metadata(filter.metadata)
    return filter


def search_filter(
    document_ids: Sequence[str] | None, metadata: dict[str, Any] | None
) -> SearchFilter:
    """A filter from ids as given (ids that are no UUID match nothing)."""
    ids = None
    if document_ids is not None:
        ids = [u for u in (parse_uuid(i) for i in document_ids) if u is not None]
        if document_ids and not ids:
            ids = [uuid.UUID(int=0)]  # only unknown ids: nothing may match
    return SearchFilter(document_ids=ids, metadata=metadata)


knowledge_base = KnowledgeBaseService()
