from __future__ import annotations

from datetime import datetime
from typing import Annotated

import strawberry

from klikkflow.kit.graphql import ForbiddenError, ValidationError
from subgraphs.ai.models import KnowledgeBase as KnowledgeBaseModel


@strawberry.federation.type(keys=["id"], description="A searchable collection of documents.")
class KnowledgeBase:
    id: strawberry.ID = strawberry.field(description="Stable identifier.")
    name: str = strawberry.field(description="Display name.")
    created_at: datetime = strawberry.field(description="When it was created.")

    @classmethod
    def from_model(cls, m: KnowledgeBaseModel) -> KnowledgeBase:
        return cls(id=strawberry.ID(str(m.id)), name=m.name, created_at=m.created_at)

    @classmethod
    async def resolve_reference(
        cls, info: strawberry.Info, id: strawberry.ID
    ) -> KnowledgeBase | None:
        from subgraphs.ai.loaders import knowledge_base_loader

        found = await knowledge_base_loader(info.context).load(str(id))
        return cls.from_model(found) if found else None


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
