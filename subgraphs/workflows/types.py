from __future__ import annotations

from datetime import datetime
from typing import Annotated

import strawberry

from klikkflow.kit.graphql import ForbiddenError, ValidationError
from subgraphs.workflows.models import WorkflowDocument


@strawberry.federation.type(keys=["id"], description="A user, owned by the identity subgraph.")
class User:
    id: strawberry.ID = strawberry.field(description="The user's id.")

    @strawberry.field(description="Workflows this user owns in your organization, newest first.")
    async def workflows(self, info: strawberry.Info) -> list[Workflow]:
        from subgraphs.workflows.loaders import workflows_by_owner_loader

        found = await workflows_by_owner_loader(info.context).load(str(self.id))
        return [Workflow.from_model(w) for w in found]

    @classmethod
    def resolve_reference(cls, id: strawberry.ID) -> User:
        return cls(id=id)


@strawberry.federation.type(keys=["id"], description="An automation: a graph of nodes.")
class Workflow:
    id: strawberry.ID = strawberry.field(description="Stable identifier.")
    name: str = strawberry.field(description="Display name.")
    owner: User = strawberry.field(description="Who created the workflow.")
    created_at: datetime = strawberry.field(description="When it was created.")
    updated_at: datetime = strawberry.field(description="When it was last saved.")

    @classmethod
    def from_model(cls, m: WorkflowDocument) -> Workflow:
        return cls(
            id=strawberry.ID(str(m.id)),
            name=m.name,
            owner=User(id=strawberry.ID(str(m.owner_id))),
            created_at=m.created_at,
            updated_at=m.updated_at,
        )

    @classmethod
    async def resolve_reference(cls, info: strawberry.Info, id: strawberry.ID) -> Workflow | None:
        from subgraphs.workflows.loaders import workflow_loader

        found = await workflow_loader(info.context).load(str(id))
        return cls.from_model(found) if found else None


@strawberry.input(description="A new workflow.")
class CreateWorkflowInput:
    name: str = strawberry.field(description="Display name, 1 to 200 characters.")


@strawberry.type(description="The workflow was created.")
class CreateWorkflowSuccess:
    workflow: Workflow = strawberry.field(description="The new workflow.")


CreateWorkflowResult = Annotated[
    CreateWorkflowSuccess | ValidationError | ForbiddenError,
    strawberry.union("CreateWorkflowResult", description="Outcome of createWorkflow."),
]
