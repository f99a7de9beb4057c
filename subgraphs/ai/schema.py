from __future__ import annotations

import strawberry

from klikkflow.kit.asgi import service_health
from klikkflow.kit.errors import InvalidInput, NotAllowed
from klikkflow.kit.graphql import (
    FEDERATION_VERSION,
    ForbiddenError,
    ServiceHealth,
    mask_errors,
    validation_error,
)
from subgraphs.ai.loaders import knowledge_base_loader
from subgraphs.ai.service import knowledge_base as knowledge_base_service
from subgraphs.ai.types import (
    CreateKnowledgeBaseInput,
    CreateKnowledgeBaseResult,
    CreateKnowledgeBaseSuccess,
    KnowledgeBase,
)


@strawberry.type
class Query:
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


@strawberry.type
class Mutation:
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


schema = strawberry.federation.Schema(
    query=Query,
    mutation=Mutation,
    types=[KnowledgeBase],
    federation_version=FEDERATION_VERSION,
    extensions=[mask_errors],
)
