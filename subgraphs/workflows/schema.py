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
from subgraphs.workflows.loaders import workflow_loader
from subgraphs.workflows.service import workflow as workflow_service
from subgraphs.workflows.types import (
    CreateWorkflowInput,
    CreateWorkflowResult,
    CreateWorkflowSuccess,
    User,
    Workflow,
)


@strawberry.type
class Query:
    workflows_health: ServiceHealth | None = strawberry.field(
        resolver=service_health, description="Health of the workflows subgraph and its stores."
    )

    @strawberry.field(description="A workflow of your organization, by id.")
    async def workflow(self, info: strawberry.Info, id: strawberry.ID) -> Workflow | None:
        found = await workflow_loader(info.context).load(str(id))
        return Workflow.from_model(found) if found else None

    @strawberry.field(description="Your organization's workflows, newest first.")
    async def workflows(self, info: strawberry.Info, first: int = 20) -> list[Workflow]:
        viewer = info.context.require_viewer()
        return [Workflow.from_model(w) for w in await workflow_service.recent(viewer, first)]


@strawberry.type
class Mutation:
    @strawberry.mutation(description="Create a workflow owned by you.")
    async def create_workflow(
        self, info: strawberry.Info, input: CreateWorkflowInput
    ) -> CreateWorkflowResult:
        viewer = info.context.require_viewer()
        try:
            created = await workflow_service.create(viewer, input.name)
        except InvalidInput as exc:
            return validation_error(exc, "workflow refused")
        except NotAllowed as exc:
            return ForbiddenError(message=str(exc))
        return CreateWorkflowSuccess(workflow=Workflow.from_model(created))


schema = strawberry.federation.Schema(
    query=Query,
    mutation=Mutation,
    types=[User, Workflow],
    federation_version=FEDERATION_VERSION,
    extensions=[mask_errors],
)
