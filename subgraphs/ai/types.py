from __future__ import annotations

import html
from datetime import datetime
from typing import Annotated, Any

import strawberry
from strawberry.scalars import JSON

from klikkflow.kit.graphql import Error, ForbiddenError, NotFoundError, ValidationError
from subgraphs.ai.models import Document as DocumentModel
from subgraphs.ai.models import KnowledgeBase as KnowledgeBaseModel
from subgraphs.ai.repository import MARK_END, MARK_START, Hit

MAX_DOCUMENTS_PAGE = 1000


@strawberry.federation.type(keys=["id"], description="A searchable collection of documents.")
class KnowledgeBase:
    id: strawberry.ID = strawberry.field(description="Stable identifier.")
    name: str = strawberry.field(description="Display name.")
    created_at: datetime = strawberry.field(description="When it was created.")
    embedding_model: str | None = strawberry.field(
        description="The model all its vectors come from; searches compare only these. "
        "When the configured model changes, its chunks are embedded again."
    )
    embedding_dimensions: int | None = strawberry.field(
        description="How many numbers each of its vectors has."
    )

    @classmethod
    def from_model(cls, m: KnowledgeBaseModel) -> KnowledgeBase:
        return cls(
            id=strawberry.ID(str(m.id)),
            name=m.name,
            created_at=m.created_at,
            embedding_model=m.embedding_model,
            embedding_dimensions=m.embedding_dimensions,
        )

    @strawberry.field(description="Its documents, newest first.")
    async def documents(self, info: strawberry.Info, first: int = 100) -> list[Document]:
        from subgraphs.ai.loaders import documents_of_loader

        first = max(1, min(first, MAX_DOCUMENTS_PAGE))
        found = await documents_of_loader(info.context, first).load(str(self.id))
        return [Document.from_model(d) for d in found]

    @strawberry.field(description="How many documents it holds.")
    async def document_count(self, info: strawberry.Info) -> int:
        from subgraphs.ai.loaders import document_count_loader

        return await document_count_loader(info.context).load(str(self.id))

    @classmethod
    async def resolve_reference(
        cls, info: strawberry.Info, id: strawberry.ID
    ) -> KnowledgeBase | None:
        from subgraphs.ai.loaders import knowledge_base_loader

        found = await knowledge_base_loader(info.context).load(str(id))
        return cls.from_model(found) if found else None


@strawberry.type(description="A document of a knowledge base, extracted, chunked and embedded.")
class Document:
    id: strawberry.ID = strawberry.field(description="Stable identifier.")
    name: str = strawberry.field(description="Its name, e.g. the uploaded file's.")
    content_type: str = strawberry.field(
        description="text/plain, text/markdown, text/html or application/pdf."
    )
    size: int = strawberry.field(description="Its size in bytes, as uploaded.")
    sha256: str = strawberry.field(description="Hex SHA-256 of its bytes.")
    status: str = strawberry.field(description="ready: its chunks are searchable.")
    error: str | None = strawberry.field(description="Why it could not be used, if so.")
    title: str | None = strawberry.field(
        description="The title found inside it (HTML <title>, PDF title, first # heading)."
    )
    chunk_count: int = strawberry.field(description="How many searchable chunks it became.")
    metadata: JSON = strawberry.field(
        description="What was given with it; searches can filter on it."
    )
    created_at: datetime = strawberry.field(description="When it was added.")
    knowledge_base_id: strawberry.Private[str]

    @classmethod
    def from_model(cls, m: DocumentModel) -> Document:
        return cls(
            id=strawberry.ID(str(m.id)),
            name=m.name,
            content_type=m.content_type,
            size=m.size,
            sha256=m.sha256,
            status=m.status,
            error=m.error,
            title=m.title,
            chunk_count=m.chunk_count,
            metadata=m.meta,
            created_at=m.created_at,
            knowledge_base_id=str(m.knowledge_base_id),
        )

    @strawberry.field(description="The knowledge base it belongs to.")
    async def knowledge_base(self, info: strawberry.Info) -> KnowledgeBase | None:
        from subgraphs.ai.loaders import knowledge_base_loader

        found = await knowledge_base_loader(info.context).load(self.knowledge_base_id)
        return KnowledgeBase.from_model(found) if found else None


@strawberry.type(description="A passage that answers a search, and why it was chosen.")
class KnowledgeSearchHit:
    chunk_id: strawberry.ID = strawberry.field(description="The passage's (chunk's) id.")
    ordinal: int = strawberry.field(description="Its place in its document, from 0.")
    text: str = strawberry.field(description="The passage's text.")
    heading: str | None = strawberry.field(
        description="The headings above it in its document, joined by ' > '."
    )
    page: int | None = strawberry.field(description="The PDF page it starts on.")
    metadata: JSON = strawberry.field(
        description="Where it lies: start and end offsets in the document's text, headings, pages."
    )
    score: float = strawberry.field(
        description="Reciprocal rank fusion of both rankings: the sum of 1 / (60 + rank)."
    )
    vector_rank: int | None = strawberry.field(
        description="Its rank by vector similarity (1 is the nearest), if among the "
        "nearest candidates."
    )
    similarity: float | None = strawberry.field(
        description="Cosine similarity of its vector to the query's, when ranked by it."
    )
    text_rank: int | None = strawberry.field(
        description="Its rank by full-text relevance (1 is the best), if the query's words "
        "occur in it."
    )
    text_score: float | None = strawberry.field(
        description="Its full-text relevance (ts_rank_cd, scaled to 0..1)."
    )
    highlight: str = strawberry.field(
        description="HTML: the passage's best fragments, escaped, with the query's words "
        "in <mark> elements."
    )
    document_id: strawberry.Private[str]

    @classmethod
    def from_hit(cls, hit: Hit) -> KnowledgeSearchHit:
        meta: dict[str, Any] = hit.metadata or {}
        return cls(
            chunk_id=strawberry.ID(str(hit.chunk_id)),
            ordinal=hit.ordinal,
            text=hit.text,
            heading=meta.get("heading"),
            page=meta.get("page"),
            metadata=meta,
            score=hit.score,
            vector_rank=hit.vector_rank,
            similarity=hit.similarity,
            text_rank=hit.text_rank,
            text_score=hit.text_score,
            highlight=highlight_html(hit.headline),
            document_id=str(hit.document_id),
        )

    @strawberry.field(description="The document it comes from.")
    async def document(self, info: strawberry.Info) -> Document | None:
        from subgraphs.ai.loaders import document_loader

        found = await document_loader(info.context).load(self.document_id)
        return Document.from_model(found) if found else None


def highlight_html(headline: str) -> str:
    """ts_headline's answer as safe HTML; marks of adjacent parts of one word (QX-7731
    is QX and -7731) are joined."""
    marked = html.escape(headline).replace(MARK_END + MARK_START, "")
    return marked.replace(MARK_START, "<mark>").replace(MARK_END, "</mark>")


@strawberry.type(description="What a search found, best first.")
class KnowledgeSearchResults:
    hits: list[KnowledgeSearchHit] = strawberry.field(description="The passages, best first.")
    model: str = strawberry.field(description="The embedding model the query was compared in.")


@strawberry.type(description="The embedding model failed; nothing was written.")
class EmbeddingFailedError(Error):
    retryable: bool = strawberry.field(description="Whether trying again later may help.")


@strawberry.input(description="A new knowledge base.")
class CreateKnowledgeBaseInput:
    name: str = strawberry.field(description="Display name, 1 to 200 characters.")


@strawberry.type(description="The knowledge base was created.")
class CreateKnowledgeBaseSuccess:
    knowledge_base: KnowledgeBase = strawberry.field(description="The new knowledge base.")


CreateKnowledgeBaseResult = Annotated[
    CreateKnowledgeBaseSuccess | ValidationError | ForbiddenError,
    strawberry.union("CreateKnowledgeBaseResult", description="Outcome of createKnowledgeBase."),
]


@strawberry.input(
    description="A document to add: its text, or its bytes in base64 (for PDF). Larger "
    "files go to the AI service's POST /knowledge-bases/{id}/documents."
)
class AddDocumentInput:
    knowledge_base_id: strawberry.ID = strawberry.field(description="Where to add it.")
    name: str = strawberry.field(description="Its name, 1 to 300 characters (a file name).")
    content_type: str | None = strawberry.field(
        default=None,
        description="text/plain, text/markdown, text/html or application/pdf; "
        "omitted: from the name's extension.",
    )
    text: str | None = strawberry.field(default=None, description="The document as text.")
    content_base64: str | None = strawberry.field(
        default=None, description="The document's bytes, base64-encoded."
    )
    metadata: JSON | None = strawberry.field(
        default=None, description="A JSON object kept with it, for search filters."
    )


@strawberry.type(description="The document is searchable.")
class AddDocumentSuccess:
    document: Document = strawberry.field(
        description="The document (the one already there if the same content was added before)."
    )


AddDocumentResult = Annotated[
    AddDocumentSuccess | ValidationError | NotFoundError | ForbiddenError | EmbeddingFailedError,
    strawberry.union("AddDocumentResult", description="Outcome of addDocument."),
]


@strawberry.input(description="Which document to delete.")
class DeleteDocumentInput:
    id: strawberry.ID = strawberry.field(description="The document's id.")


@strawberry.type(description="The document and its chunks are gone.")
class DeleteDocumentSuccess:
    id: strawberry.ID = strawberry.field(description="The deleted document's id.")
    knowledge_base_id: strawberry.ID = strawberry.field(description="The knowledge base it was in.")


DeleteDocumentResult = Annotated[
    DeleteDocumentSuccess | NotFoundError | ForbiddenError,
    strawberry.union("DeleteDocumentResult", description="Outcome of deleteDocument."),
]


@strawberry.input(description="Which knowledge base to delete.")
class DeleteKnowledgeBaseInput:
    id: strawberry.ID = strawberry.field(description="The knowledge base's id.")


@strawberry.type(description="The knowledge base, its documents and chunks are gone.")
class DeleteKnowledgeBaseSuccess:
    id: strawberry.ID = strawberry.field(description="The deleted knowledge base's id.")


DeleteKnowledgeBaseResult = Annotated[
    DeleteKnowledgeBaseSuccess | NotFoundError | ForbiddenError,
    strawberry.union("DeleteKnowledgeBaseResult", description="Outcome of deleteKnowledgeBase."),
]


@strawberry.input(description="Which knowledge base to embed again.")
class ReembedKnowledgeBaseInput:
    id: strawberry.ID = strawberry.field(description="The knowledge base's id.")


@strawberry.type(description="Every chunk now has a vector of the configured model.")
class ReembedKnowledgeBaseSuccess:
    knowledge_base: KnowledgeBase = strawberry.field(description="The knowledge base.")
    chunks: int = strawberry.field(description="How many chunks were embedded.")


ReembedKnowledgeBaseResult = Annotated[
    ReembedKnowledgeBaseSuccess | NotFoundError | ForbiddenError | EmbeddingFailedError,
    strawberry.union("ReembedKnowledgeBaseResult", description="Outcome of reembedKnowledgeBase."),
]


@strawberry.input(description="Which documents a search looks in.")
class KnowledgeSearchFilter:
    document_ids: list[strawberry.ID] | None = strawberry.field(
        default=None, description="Only these documents."
    )
    metadata: JSON | None = strawberry.field(
        default=None,
        description="Only documents whose metadata contains this JSON object "
        '(e.g. {"lang": "en"}).',
    )


SearchKnowledgeBaseResult = Annotated[
    KnowledgeSearchResults | ValidationError | NotFoundError | EmbeddingFailedError,
    strawberry.union("SearchKnowledgeBaseResult", description="Outcome of searchKnowledgeBase."),
]
