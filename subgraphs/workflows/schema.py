from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import strawberry
from strawberry.scalars import JSON

from klikkflow.kit.asgi import service_health
from klikkflow.kit.errors import InvalidInput, NotAllowed
from klikkflow.kit.graphql import (
    FEDERATION_VERSION,
    ForbiddenError,
    NotFoundError,
    ServiceHealth,
    mask_errors,
    validation_error,
)
from klikkflow.nodes.credentials import credential_types
from klikkflow.nodes.registry import default_registry
from subgraphs.workflows.credentials import CredentialInUse, CredentialNotFound
from subgraphs.workflows.credentials import credential as credential_service
from subgraphs.workflows.loaders import credential_loader, workflow_loader
from subgraphs.workflows.models import CredentialDocument, WorkflowDocument
from subgraphs.workflows.service import (
    Changes,
    UnsupportedNodes,
    VersionConflict,
    VersionNotFound,
    WorkflowNotFound,
)
from subgraphs.workflows.service import workflow as workflow_service
from subgraphs.workflows.triggers import WebhookPathTaken
from subgraphs.workflows.types import (
    ActivateWorkflowResult,
    ChangeWorkflowResult,
    CreateCredentialInput,
    CreateWorkflowInput,
    CreateWorkflowResult,
    CreateWorkflowSuccess,
    Credential,
    CredentialIdInput,
    CredentialInUseError,
    CredentialSuccess,
    CredentialTestResult,
    CredentialTypeDescription,
    DeleteCredentialResult,
    DeleteCredentialSuccess,
    DeleteVariableResult,
    DeleteVariableSuccess,
    ImportWorkflowInput,
    ImportWorkflowResult,
    NodeTypeDescription,
    PublishWorkflowVersionInput,
    RollbackWorkflowInput,
    SaveCredentialResult,
    SetVariableInput,
    SetVariableResult,
    SetVariableSuccess,
    TestCredentialInput,
    TestCredentialResult,
    UnsupportedNode,
    UnsupportedNodesError,
    UpdateCredentialInput,
    UpdateWorkflowInput,
    UpdateWorkflowResult,
    User,
    Variable,
    VariableKeyInput,
    VersionConflictError,
    WebhookPathTakenError,
    Workflow,
    WorkflowConnection,
    WorkflowDiffResult,
    WorkflowDiffView,
    WorkflowFilterInput,
    WorkflowIdInput,
    WorkflowSuccess,
)
from subgraphs.workflows.variables import variables as variable_service


async def _render(call: Awaitable[WorkflowDocument], workflow_id: str) -> Any:
    """One place turns the service's domain errors into the schema's error types."""
    try:
        return WorkflowSuccess(workflow=Workflow.from_model(await call))
    except InvalidInput as exc:
        return validation_error(exc, "workflow refused")
    except NotAllowed as exc:
        return ForbiddenError(message=str(exc))
    except (WorkflowNotFound, VersionNotFound) as exc:
        return NotFoundError(message=str(exc), id=strawberry.ID(workflow_id))
    except VersionConflict as exc:
        return VersionConflictError(
            message=str(exc), expected_version=exc.expected, current_version=exc.current
        )


def _viewer(info: strawberry.Info) -> Any:
    return info.context.require_viewer()


@strawberry.type
class Query:
    workflows_health: ServiceHealth | None = strawberry.field(
        resolver=service_health, description="Health of the workflows subgraph and its stores."
    )

    @strawberry.field(description="A workflow of your organization, by id.")
    async def workflow(self, info: strawberry.Info, id: strawberry.ID) -> Workflow | None:
        found = await workflow_loader(info.context).load(str(id))
        return Workflow.from_model(found) if found else None

    @strawberry.field(description="Your organization's workflows, newest first (Relay paging).")
    async def workflows(
        self,
        info: strawberry.Info,
        first: int = 20,
        after: str | None = None,
        filter: WorkflowFilterInput | None = None,
    ) -> WorkflowConnection:
        domain = (filter or WorkflowFilterInput()).to_domain()
        found, more = await workflow_service.page(_viewer(info), domain, first, after)
        return WorkflowConnection.from_page(found, more)

    @strawberry.field(description="Every tag used by your organization's live workflows.")
    async def workflow_tags(self, info: strawberry.Info) -> list[str]:
        return await workflow_service.tags(_viewer(info))

    @strawberry.field(description="What changed between two versions of a workflow.")
    async def workflow_diff(
        self, info: strawberry.Info, workflow_id: strawberry.ID, older: int, newer: int
    ) -> WorkflowDiffResult:
        try:
            found = await workflow_service.diff(_viewer(info), str(workflow_id), older, newer)
        except (WorkflowNotFound, VersionNotFound) as exc:
            return NotFoundError(message=str(exc), id=workflow_id)
        return WorkflowDiffView.from_diff(older, newer, found)

    @strawberry.field(
        description="A version of a workflow (the latest by default) as KlikkFlow JSON; "
        "importWorkflow takes it back unchanged. Null when there is no such workflow."
    )
    async def export_workflow(
        self, info: strawberry.Info, id: strawberry.ID, version: int | None = None
    ) -> JSON | None:
        try:
            return await workflow_service.export(_viewer(info), str(id), version)
        except (WorkflowNotFound, VersionNotFound):
            return None

    @strawberry.field(description="Your organization's credentials (masked), by name.")
    async def credentials(self, info: strawberry.Info, type: str | None = None) -> list[Credential]:
        found = await credential_service.in_organization(_viewer(info), type)
        return [Credential.from_model(c) for c in found]

    @strawberry.field(description="A credential of your organization (masked), by id.")
    async def credential(self, info: strawberry.Info, id: strawberry.ID) -> Credential | None:
        found = await credential_loader(info.context).load(str(id))
        return Credential.from_model(found) if found else None

    @strawberry.field(description="Every credential type nodes declare, with its fields.")
    def credential_types(self) -> list[CredentialTypeDescription]:
        return [CredentialTypeDescription.from_type(t) for t in credential_types().values()]

    @strawberry.field(description="Your organization's variables (`$vars`), by key.")
    async def variables(self, info: strawberry.Info) -> list[Variable]:
        found = await variable_service.all(_viewer(info))
        return [Variable(key=v.key, value=v.value, updated_at=v.updated_at) for v in found]

    @strawberry.field(description="Every node type and version this platform runs.")
    def node_types(self) -> list[NodeTypeDescription]:
        return [
            NodeTypeDescription.from_class(version, cls)
            for _, version, cls in default_registry().all()
        ]


def _import_result(exc: UnsupportedNodes) -> UnsupportedNodesError:
    return UnsupportedNodesError(
        message=str(exc),
        nodes=[UnsupportedNode(name=name, type=kind) for name, kind in exc.nodes],
    )


async def _created(call: Callable[[], Awaitable[WorkflowDocument]]) -> Any:
    try:
        return CreateWorkflowSuccess(workflow=Workflow.from_model(await call()))
    except InvalidInput as exc:
        return validation_error(exc, "workflow refused")
    except NotAllowed as exc:
        return ForbiddenError(message=str(exc))
    except UnsupportedNodes as exc:
        return _import_result(exc)


@strawberry.type
class WorkflowMutation:
    @strawberry.mutation(description="Create a workflow owned by you (its version 1).")
    async def create_workflow(
        self, info: strawberry.Info, input: CreateWorkflowInput
    ) -> CreateWorkflowResult:
        viewer = _viewer(info)
        result: CreateWorkflowResult = await _created(
            lambda: workflow_service.create(
                viewer,
                input.name,
                description=input.description,
                tags=input.tags,
                document=input.definition,
                message=input.message,
            )
        )
        return result

    @strawberry.mutation(
        description="Save a new version. Refused with VersionConflictError when someone "
        "saved since `expectedVersion`: nothing is overwritten."
    )
    async def update_workflow(
        self, info: strawberry.Info, input: UpdateWorkflowInput
    ) -> UpdateWorkflowResult:
        changes = Changes(
            name=input.name,
            description=input.description,
            tags=input.tags,
            definition=input.definition,
            message=input.message,
        )
        call = workflow_service.save(_viewer(info), str(input.id), input.expected_version, changes)
        result: UpdateWorkflowResult = await _render(call, str(input.id))
        return result

    @strawberry.mutation(description="Archive a workflow: hidden from lists, triggers off.")
    async def archive_workflow(
        self, info: strawberry.Info, input: WorkflowIdInput
    ) -> ChangeWorkflowResult:
        call = workflow_service.archive(_viewer(info), str(input.id), True)
        result: ChangeWorkflowResult = await _render(call, str(input.id))
        return result

    @strawberry.mutation(description="Bring an archived workflow back.")
    async def restore_workflow(
        self, info: strawberry.Info, input: WorkflowIdInput
    ) -> ChangeWorkflowResult:
        call = workflow_service.archive(_viewer(info), str(input.id), False)
        result: ChangeWorkflowResult = await _render(call, str(input.id))
        return result

    @strawberry.mutation(description="Make a version the one triggers and production runs use.")
    async def publish_workflow_version(
        self, info: strawberry.Info, input: PublishWorkflowVersionInput
    ) -> ChangeWorkflowResult:
        call = workflow_service.publish(_viewer(info), str(input.id), input.version)
        result: ChangeWorkflowResult = await _render(call, str(input.id))
        return result

    @strawberry.mutation(
        description="Save an earlier version's content as a new version and publish it."
    )
    async def rollback_workflow(
        self, info: strawberry.Info, input: RollbackWorkflowInput
    ) -> ChangeWorkflowResult:
        call = workflow_service.rollback(
            _viewer(info), str(input.id), input.version, input.expected_version
        )
        result: ChangeWorkflowResult = await _render(call, str(input.id))
        return result

    @strawberry.mutation(
        description="Create a workflow from KlikkFlow or n8n JSON. n8n nodes KlikkFlow does "
        "not run are listed in UnsupportedNodesError; nothing is saved then."
    )
    async def import_workflow(
        self, info: strawberry.Info, input: ImportWorkflowInput
    ) -> ImportWorkflowResult:
        viewer = _viewer(info)
        result: ImportWorkflowResult = await _created(
            lambda: workflow_service.import_document(viewer, input.document, input.name, input.tags)
        )
        return result


async def _credential(call: Awaitable[CredentialDocument], credential_id: str) -> Any:
    try:
        return CredentialSuccess(credential=Credential.from_model(await call))
    except InvalidInput as exc:
        return validation_error(exc, "credential refused")
    except NotAllowed as exc:
        return ForbiddenError(message=str(exc))
    except CredentialNotFound as exc:
        return NotFoundError(message=str(exc), id=strawberry.ID(credential_id))


@strawberry.type
class CredentialMutation:
    @strawberry.mutation(description="Store a credential, sealed; its values are never shown.")
    async def create_credential(
        self, info: strawberry.Info, input: CreateCredentialInput
    ) -> SaveCredentialResult:
        call = credential_service.create(_viewer(info), input.name, input.type, input.data)
        result: SaveCredentialResult = await _credential(call, "")
        return result

    @strawberry.mutation(description="Rename a credential or change some of its values.")
    async def update_credential(
        self, info: strawberry.Info, input: UpdateCredentialInput
    ) -> SaveCredentialResult:
        call = credential_service.update(_viewer(info), str(input.id), input.name, input.data)
        result: SaveCredentialResult = await _credential(call, str(input.id))
        return result

    @strawberry.mutation(description="Delete a credential that no workflow uses.")
    async def delete_credential(
        self, info: strawberry.Info, input: CredentialIdInput
    ) -> DeleteCredentialResult:
        try:
            gone = await credential_service.delete(_viewer(info), str(input.id))
        except NotAllowed as exc:
            return ForbiddenError(message=str(exc))
        except CredentialNotFound as exc:
            return NotFoundError(message=str(exc), id=input.id)
        except CredentialInUse as exc:
            return CredentialInUseError(
                message=str(exc), workflows=[Workflow.from_model(w) for w in exc.workflows]
            )
        return DeleteCredentialSuccess(id=strawberry.ID(gone))

    @strawberry.mutation(
        description="Try an HTTP credential: a GET to `url` with it, or an OAuth2 token fetch."
    )
    async def test_credential(
        self, info: strawberry.Info, input: TestCredentialInput
    ) -> TestCredentialResult:
        try:
            probe = await credential_service.test(_viewer(info), str(input.id), input.url)
        except NotAllowed as exc:
            return ForbiddenError(message=str(exc))
        except CredentialNotFound as exc:
            return NotFoundError(message=str(exc), id=input.id)
        return CredentialTestResult(ok=probe.ok, message=probe.message, status=probe.status)


async def _activation(call: Awaitable[WorkflowDocument], workflow_id: str) -> Any:
    try:
        return await _render(call, workflow_id)
    except WebhookPathTaken as exc:
        taker = strawberry.ID(exc.workflow_id) if exc.workflow_id else None
        return WebhookPathTakenError(
            message=str(exc), path=exc.path, method=exc.method, workflow_id=taker
        )


@strawberry.type
class TriggerMutation:
    @strawberry.mutation(
        description="Turn on the published version's webhooks and schedules (publishing the "
        "latest version if none is)."
    )
    async def activate_workflow(
        self, info: strawberry.Info, input: WorkflowIdInput
    ) -> ActivateWorkflowResult:
        call = workflow_service.activate(_viewer(info), str(input.id))
        result: ActivateWorkflowResult = await _activation(call, str(input.id))
        return result

    @strawberry.mutation(description="Turn off a workflow's webhooks and schedules.")
    async def deactivate_workflow(
        self, info: strawberry.Info, input: WorkflowIdInput
    ) -> ChangeWorkflowResult:
        call = workflow_service.deactivate(_viewer(info), str(input.id))
        result: ChangeWorkflowResult = await _render(call, str(input.id))
        return result

    @strawberry.mutation(description="Create or change an organization variable.")
    async def set_variable(
        self, info: strawberry.Info, input: SetVariableInput
    ) -> SetVariableResult:
        try:
            v = await variable_service.set(_viewer(info), input.key, input.value)
        except InvalidInput as exc:
            return validation_error(exc, "variable refused")
        except NotAllowed as exc:
            return ForbiddenError(message=str(exc))
        return SetVariableSuccess(
            variable=Variable(key=v.key, value=v.value, updated_at=v.updated_at)
        )

    @strawberry.mutation(description="Delete an organization variable.")
    async def delete_variable(
        self, info: strawberry.Info, input: VariableKeyInput
    ) -> DeleteVariableResult:
        try:
            deleted = await variable_service.delete(_viewer(info), input.key)
        except NotAllowed as exc:
            return ForbiddenError(message=str(exc))
        return DeleteVariableSuccess(key=input.key, deleted=deleted)


@strawberry.type
class Mutation(WorkflowMutation, CredentialMutation, TriggerMutation):
    pass


schema = strawberry.federation.Schema(
    query=Query,
    mutation=Mutation,
    types=[User, Workflow, Credential],
    federation_version=FEDERATION_VERSION,
    extensions=[mask_errors],
)
