from __future__ import annotations

import base64
import binascii
from typing import Any

import strawberry
from sqlalchemy.ext.asyncio import AsyncSession

from klikkflow.ai.documents import DocumentTooLarge
from klikkflow.ai.embeddings import EmbeddingError, EmbeddingProviderError
from klikkflow.kit.asgi import service_health
from klikkflow.kit.auth import Viewer
from klikkflow.kit.errors import InvalidInput, NotAllowed
from klikkflow.kit.graphql import (
    FEDERATION_VERSION,
    ForbiddenError,
    NotFoundError,
    ServiceHealth,
    mask_errors,
    validation_error,
)
from subgraphs.ai.analytics_schema import AnalyticsQuery
from subgraphs.ai.generation_schema import GenerationMutation, GenerationQuery
from subgraphs.ai.loaders import document_loader, knowledge_base_loader
from subgraphs.ai.service import DocumentNotFound, KnowledgeBaseNotFound, search_filter
from subgraphs.ai.service import knowledge_base as knowledge_base_service
from subgraphs.ai.types import (
    AddDocumentInput,
    AddDocumentResult,
    AddDocumentSuccess,
    CreateKnowledgeBaseInput,
    CreateKnowledgeBaseResult,
    CreateKnowledgeBaseSuccess,
    DeleteDocumentInput,
    DeleteDocumentResult,
    DeleteDocumentSuccess,
    DeleteKnowledgeBaseInput,
    DeleteKnowledgeBaseResult,
    DeleteKnowledgeBaseSuccess,
    Document,
    EmbeddingFailedError,
    KnowledgeBase,
    KnowledgeSearchFilter,
    KnowledgeSearchHit,
    KnowledgeSearchResults,
    ReembedKnowledgeBaseInput,
    ReembedKnowledgeBaseResult,
    ReembedKnowledgeBaseSuccess,
    SearchKnowledgeBaseResult,
)


def embedding_failed(exc: EmbeddingError) -> EmbeddingFailedError:
    retryable = isinstance(exc, EmbeddingProviderError) and exc.retryable
    return EmbeddingFailedError(message=f"embedding failed: {exc}", retryable=retryable)


def document_bytes(input: AddDocumentInput, limit: int) -> bytes:
    """The document's bytes from exactly one of `text` and `contentBase64`, refused by size
    before base64 is decoded."""
    if (input.text is None) == (input.content_base64 is None):
        raise InvalidInput({"text": "give the document as text or as contentBase64, not both"})
    if input.text is not None:
        if len(input.text) > limit:  # every character is at least one byte
            raise DocumentTooLarge(limit)
        return input.text.encode()
    encoded = "".join((input.content_base64 or "").split())
    if len(encoded) // 4 * 3 - encoded[-2:].count("=") > limit:
        raise DocumentTooLarge(limit)
    try:
        return base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidInput({"contentBase64": "is not valid base64"}) from None


@strawberry.type
class Query(AnalyticsQuery, GenerationQuery):
    ai_health: ServiceHealth | None = strawberry.field(
        resolver=service_health, description="Health of the AI subgraph and its stores."
    )

    @strawberry.field(description="A knowledge base of your organization, by id.")
    async def knowledge_base(
        self, info: strawberry.Info, id: strawberry.ID
    ) -> KnowledgeBase | None:
        found = await knowledge_base_loader(info.context).load(str(id))
        return KnowledgeBase.from_model(found) if found else None

    @strawberry.field(description="Your organization's knowledge bases, newest first.")
    async def knowledge_bases(self, info: strawberry.Info, first: int = 20) -> list[KnowledgeBase]:
        viewer = info.context.require_viewer()
        async with info.context.state.sessions() as session:
            found = await knowledge_base_service.recent(session, viewer, first)
        return [KnowledgeBase.from_model(kb) for kb in found]

    @strawberry.field(description="A document of one of your organization's knowledge bases.")
    async def document(self, info: strawberry.Info, id: strawberry.ID) -> Document | None:
        found = await document_loader(info.context).load(str(id))
        return Document.from_model(found) if found else None

    @strawberry.field(
        description="Hybrid search in a knowledge base: the passages nearest the query's "
        "meaning (vector similarity, cosine) and those best matching its words (full text, "
        "web-search syntax: quotes, OR, -word), fused by reciprocal rank."
    )
    async def search_knowledge_base(
        self,
        info: strawberry.Info,
        knowledge_base_id: strawberry.ID,
        query: str,
        k: int = 5,
        filter: KnowledgeSearchFilter | None = None,
    ) -> SearchKnowledgeBaseResult:
        viewer = info.context.require_viewer()
        wanted = None
        if filter is not None:
            ids = None if filter.document_ids is None else [str(i) for i in filter.document_ids]
            wanted = search_filter(ids, filter.metadata)
        async with info.context.state.sessions() as session:
            try:
                hits = await knowledge_base_service.search(
                    session, viewer.organization_id, str(knowledge_base_id), query, k, wanted
                )
            except InvalidInput as exc:
                return validation_error(exc, "search refused")
            except KnowledgeBaseNotFound as exc:
                return NotFoundError(message=str(exc), id=knowledge_base_id)
            except EmbeddingError as exc:
                return embedding_failed(exc)
            await session.commit()  # a knowledge base re-embedded for a new model
        return KnowledgeSearchResults(
            hits=[KnowledgeSearchHit.from_hit(h) for h in hits],
            model=knowledge_base_service.embedder.model,
        )


async def _add_document(
    session: AsyncSession, viewer: Viewer, input: AddDocumentInput
) -> AddDocumentResult:
    metadata: Any = input.metadata
    data = document_bytes(input, knowledge_base_service.max_bytes)
    document = await knowledge_base_service.add_document(
        session,
        viewer,
        str(input.knowledge_base_id),
        input.name,
        input.content_type,
        data,
        metadata,
    )
    await session.commit()
    return AddDocumentSuccess(document=Document.from_model(document))


@strawberry.type
class Mutation(GenerationMutation):
    @strawberry.mutation(description="Create an empty knowledge base.")
    async def create_knowledge_base(
        self, info: strawberry.Info, input: CreateKnowledgeBaseInput
    ) -> CreateKnowledgeBaseResult:
        viewer = info.context.require_viewer()
        async with info.context.state.sessions() as session:
            try:
                kb = knowledge_base_service.create(session, viewer, input.name)
            except InvalidInput as exc:
                return validation_error(exc, "knowledge base refused")
            except NotAllowed as exc:
                return ForbiddenError(message=str(exc))
            await session.commit()
            await session.refresh(kb)
            return CreateKnowledgeBaseSuccess(knowledge_base=KnowledgeBase.from_model(kb))

    @strawberry.mutation(
        description="Add a document to a knowledge base: its text is extracted (plain text, "
        "Markdown, HTML, PDF), cut into chunks, embedded and made searchable. Nothing is "
        "kept of a refused document."
    )
    async def add_document(
        self, info: strawberry.Info, input: AddDocumentInput
    ) -> AddDocumentResult:
        viewer = info.context.require_viewer()
        async with info.context.state.sessions() as session:
            try:
                return await _add_document(session, viewer, input)
            except InvalidInput as exc:
                return validation_error(exc, f"document refused: {exc}")
            except NotAllowed as exc:
                return ForbiddenError(message=str(exc))
            except KnowledgeBaseNotFound as exc:
                return NotFoundError(message=str(exc), id=input.knowledge_base_id)
            except EmbeddingError as exc:
                return embedding_failed(exc)

    @strawberry.mutation(description="Delete a document and its chunks.")
    async def delete_document(
        self, info: strawberry.Info, input: DeleteDocumentInput
    ) -> DeleteDocumentResult:
        viewer = info.context.require_viewer()
        async with info.context.state.sessions() as session:
            try:
                document = await knowledge_base_service.delete_document(
                    session, viewer, str(input.id)
                )
            except NotAllowed as exc:
                return ForbiddenError(message=str(exc))
            except DocumentNotFound as exc:
                return NotFoundError(message=str(exc), id=input.id)
            await session.commit()
        return DeleteDocumentSuccess(
            id=input.id, knowledge_base_id=strawberry.ID(str(document.knowledge_base_id))
        )

    @strawberry.mutation(description="Delete a knowledge base with all its documents.")
    async def delete_knowledge_base(
        self, info: strawberry.Info, input: DeleteKnowledgeBaseInput
    ) -> DeleteKnowledgeBaseResult:
        viewer = info.context.require_viewer()
        async with info.context.state.sessions() as session:
            try:
                await knowledge_base_service.delete(session, viewer, str(input.id))
            except NotAllowed as exc:
                return ForbiddenError(message=str(exc))
            except KnowledgeBaseNotFound as exc:
                return NotFoundError(message=str(exc), id=input.id)
            await session.commit()
        return DeleteKnowledgeBaseSuccess(id=input.id)

    @strawberry.mutation(
        description="Embed every chunk of a knowledge base again with the configured model "
        "(searches and new documents also do it when the model changed)."
    )
    async def reembed_knowledge_base(
        self, info: strawberry.Info, input: ReembedKnowledgeBaseInput
    ) -> ReembedKnowledgeBaseResult:
        viewer = info.context.require_viewer()
        async with info.context.state.sessions() as session:
            try:
                kb, count = await knowledge_base_service.reembed(session, viewer, str(input.id))
            except NotAllowed as exc:
                return ForbiddenError(message=str(exc))
            except KnowledgeBaseNotFound as exc:
                return NotFoundError(message=str(exc), id=input.id)
            except EmbeddingError as exc:
                return embedding_failed(exc)
            await session.commit()
        return ReembedKnowledgeBaseSuccess(
            knowledge_base=KnowledgeBase.from_model(kb), chunks=count
        )


schema = strawberry.federation.Schema(
    query=Query,
    mutation=Mutation,
    types=[KnowledgeBase],
    federation_version=FEDERATION_VERSION,
    extensions=[mask_errors],
)
