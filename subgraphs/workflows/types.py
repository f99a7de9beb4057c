from __future__ import annotations

import json
from datetime import datetime
from typing import Annotated, Any

import strawberry
from strawberry.scalars import JSON

from klikkflow.engine.diff import Change, WorkflowDiff
from klikkflow.engine.workflow import Connection
from klikkflow.kit.graphql import Error, ForbiddenError, NotFoundError, PageInfo, ValidationError
from klikkflow.nodes.base import NodeType
from klikkflow.nodes.credentials import CredentialType
from subgraphs.workflows.models import (
    CredentialDocument,
    WorkflowDocument,
    WorkflowVersionDocument,
)
from subgraphs.workflows.repository import WorkflowFilter


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


def _user(value: Any) -> User:
    return User(id=strawberry.ID(str(value)))


@strawberry.type(description="One saved state of a workflow. Versions never change.")
class WorkflowVersion:
    number: int = strawberry.field(description="1 for the first save, then one more per save.")
    name: str = strawberry.field(description="The workflow's name in this version.")
    definition: JSON = strawberry.field(
        description="Nodes, connections, settings and pinned data (schemas/workflow.schema.json)."
    )
    author: User = strawberry.field(description="Who saved it.")
    message: str = strawberry.field(description="Why it was saved, in the author's words.")
    created_at: datetime = strawberry.field(description="When it was saved.")
    published: bool = strawberry.field(description="Whether triggers use this version now.")

    @classmethod
    def from_model(cls, m: WorkflowVersionDocument, active: int | None) -> WorkflowVersion:
        return cls(
            number=m.number,
            name=m.name,
            definition=json.loads(m.definition),
            author=_user(m.author_id),
            message=m.message,
            created_at=m.created_at,
            published=m.number == active,
        )


@strawberry.type(description="A version and its cursor.")
class WorkflowVersionEdge:
    cursor: str = strawberry.field(description="Pass as `after` to continue after it.")
    node: WorkflowVersion = strawberry.field(description="The version.")


@strawberry.type(description="A page of versions, newest first.")
class WorkflowVersionConnection:
    edges: list[WorkflowVersionEdge] = strawberry.field(description="The versions of this page.")
    page_info: PageInfo = strawberry.field(description="Where this page ends.")


@strawberry.type(description="A webhook an active workflow listens on.")
class WebhookEndpoint:
    path: str = strawberry.field(description="The path after /webhook/.")
    method: str = strawberry.field(description="The HTTP method it answers.")
    node: str = strawberry.field(description="The Webhook node's name.")
    version: int = strawberry.field(description="The workflow version it runs.")


@strawberry.type(description="A schedule of an active workflow.")
class ScheduleView:
    node: str = strawberry.field(description="The Schedule Trigger node's name.")
    timezone: str = strawberry.field(description="The time zone its cron fields are read in.")
    next_run_at: datetime = strawberry.field(description="Its next tick.")


@strawberry.federation.type(keys=["id"], description="An automation: a graph of nodes.")
class Workflow:
    id: strawberry.ID = strawberry.field(description="Stable identifier.")
    name: str = strawberry.field(description="Display name.")
    description: str = strawberry.field(description="What it is for, for people.")
    tags: list[str] = strawberry.field(description="Lower-case labels to find it by.")
    owner: User = strawberry.field(description="Who created the workflow.")
    version: int = strawberry.field(
        description="Number of the latest version: pass it as `expectedVersion` when saving."
    )
    definition: JSON = strawberry.field(description="The latest version's definition.")
    saved_by: User = strawberry.field(description="Who saved the latest version.")
    active_version: int | None = strawberry.field(
        description="The published version: what triggers and production runs use."
    )
    active: bool = strawberry.field(
        description="Whether the published version's triggers (webhooks, schedules) are on."
    )
    archived: bool = strawberry.field(description="Archived workflows are hidden and never run.")
    archived_at: datetime | None = strawberry.field(description="When it was archived.")
    created_at: datetime = strawberry.field(description="When it was created.")
    updated_at: datetime = strawberry.field(description="When it was last changed.")
    model: strawberry.Private[WorkflowDocument]

    @classmethod
    def from_model(cls, m: WorkflowDocument) -> Workflow:
        return cls(
            id=strawberry.ID(str(m.id)),
            name=m.name,
            description=m.description,
            tags=list(m.tags),
            owner=_user(m.owner_id),
            version=m.version,
            definition=json.loads(m.definition),
            saved_by=_user(m.saved_by),
            active_version=m.active_version,
            active=m.active,
            archived=m.archived_at is not None,
            archived_at=m.archived_at,
            created_at=m.created_at,
            updated_at=m.updated_at,
            model=m,
        )

    @strawberry.field(description="Webhook paths it listens on while active.")
    async def webhooks(self) -> list[WebhookEndpoint]:
        from subgraphs.workflows.triggers import webhooks_of

        assert self.model.id is not None
        found = await webhooks_of(self.model.id)
        return [
            WebhookEndpoint(path=w.path, method=w.method, node=w.node, version=w.version)
            for w in found
        ]

    @strawberry.field(description="Its schedules while active, with the next tick of each.")
    async def schedules(self) -> list[ScheduleView]:
        from subgraphs.workflows.triggers import schedules_of

        assert self.model.id is not None
        found = await schedules_of(self.model.id)
        return [
            ScheduleView(node=s.node, timezone=s.timezone, next_run_at=s.next_run_at) for s in found
        ]

    @strawberry.field(description="Saved versions, newest first.")
    async def versions(
        self, info: strawberry.Info, first: int = 20, after: str | None = None
    ) -> WorkflowVersionConnection:
        from subgraphs.workflows.service import workflow as workflow_service

        viewer = info.context.require_viewer()
        before = int(after) if after and after.isdigit() else None
        found, more = await workflow_service.versions(viewer, self.model, first, before)
        edges = [
            WorkflowVersionEdge(
                cursor=str(v.number),
                node=WorkflowVersion.from_model(v, self.model.active_version),
            )
            for v in found
        ]
        end = edges[-1].cursor if edges else None
        return WorkflowVersionConnection(
            edges=edges, page_info=PageInfo(has_next_page=more, end_cursor=end)
        )

    @classmethod
    async def resolve_reference(cls, info: strawberry.Info, id: strawberry.ID) -> Workflow | None:
        from subgraphs.workflows.loaders import workflow_loader

        found = await workflow_loader(info.context).load(str(id))
        return cls.from_model(found) if found else None


@strawberry.type(description="A workflow and its cursor.")
class WorkflowEdge:
    cursor: str = strawberry.field(description="Pass as `after` to continue after it.")
    node: Workflow = strawberry.field(description="The workflow.")


@strawberry.type(description="A page of workflows, newest first.")
class WorkflowConnection:
    edges: list[WorkflowEdge] = strawberry.field(description="The workflows of this page.")
    page_info: PageInfo = strawberry.field(description="Where this page ends.")

    @classmethod
    def from_page(cls, found: list[WorkflowDocument], more: bool) -> WorkflowConnection:
        edges = [WorkflowEdge(cursor=str(w.id), node=Workflow.from_model(w)) for w in found]
        end = edges[-1].cursor if edges else None
        return cls(edges=edges, page_info=PageInfo(has_next_page=more, end_cursor=end))


@strawberry.input(description="Which workflows to list.")
class WorkflowFilterInput:
    search: str = strawberry.field(default="", description="A part of the name, any case.")
    tags: list[str] = strawberry.field(
        default_factory=list, description="Only workflows with every one of these tags."
    )
    archived: bool = strawberry.field(
        default=False, description="List archived workflows instead of live ones."
    )

    def to_domain(self) -> WorkflowFilter:
        return WorkflowFilter(
            search=self.search.strip(),
            tags=tuple(t.strip().lower() for t in self.tags if t.strip()),
            archived=self.archived,
        )


# ---- diffs ----------------------------------------------------------------------------


@strawberry.type(description="One field that differs between two versions.")
class FieldChange:
    path: str = strawberry.field(description="Dotted path of the field, e.g. parameters.url.")
    before: JSON | None = strawberry.field(description="Its value before (null: absent).")
    after: JSON | None = strawberry.field(description="Its value after (null: removed).")

    @classmethod
    def from_change(cls, c: Change) -> FieldChange:
        return cls(path=c.path, before=c.before, after=c.after)


@strawberry.type(description="A node present in both versions whose fields differ.")
class NodeChange:
    id: str = strawberry.field(description="The node's stable id.")
    name: str = strawberry.field(description="The node's name in the newer version.")
    changes: list[FieldChange] = strawberry.field(description="Every field that differs.")


@strawberry.type(description="A connection from one node's output port to another's input.")
class NodeLink:
    source: str = strawberry.field(description="Name of the node the items leave.")
    source_output: str = strawberry.field(description="Its output port.")
    target: str = strawberry.field(description="Name of the node the items enter.")
    target_input: str = strawberry.field(description="Its input port.")

    @classmethod
    def from_connection(cls, c: Connection) -> NodeLink:
        return cls(
            source=c.source,
            source_output=c.source_output,
            target=c.target,
            target_input=c.target_input,
        )


@strawberry.type(description="What changed from one version of a workflow to another.")
class WorkflowDiffView:
    older: int = strawberry.field(description="The version compared from.")
    newer: int = strawberry.field(description="The version compared to.")
    nodes_added: list[str] = strawberry.field(description="Names of nodes only in `newer`.")
    nodes_removed: list[str] = strawberry.field(description="Names of nodes only in `older`.")
    nodes_changed: list[NodeChange] = strawberry.field(description="Nodes in both that differ.")
    connections_added: list[NodeLink] = strawberry.field(description="Only in `newer`.")
    connections_removed: list[NodeLink] = strawberry.field(description="Only in `older`.")
    settings_changed: list[FieldChange] = strawberry.field(description="Settings that differ.")
    pin_data_changed: list[str] = strawberry.field(description="Nodes whose pinned data differs.")

    @classmethod
    def from_diff(cls, older: int, newer: int, d: WorkflowDiff) -> WorkflowDiffView:
        return cls(
            older=older,
            newer=newer,
            nodes_added=d.nodes_added,
            nodes_removed=d.nodes_removed,
            nodes_changed=[
                NodeChange(
                    id=n.id, name=n.name, changes=[FieldChange.from_change(c) for c in n.changes]
                )
                for n in d.nodes_changed
            ],
            connections_added=[NodeLink.from_connection(c) for c in d.connections_added],
            connections_removed=[NodeLink.from_connection(c) for c in d.connections_removed],
            settings_changed=[FieldChange.from_change(c) for c in d.settings_changed],
            pin_data_changed=d.pin_data_changed,
        )


# ---- node catalog ---------------------------------------------------------------------


@strawberry.type(description="A node type at one version, as the editor and SDKs need it.")
class NodeTypeDescription:
    type: str = strawberry.field(description="The type name used in workflows, e.g. `set`.")
    version: float = strawberry.field(description="The typeVersion.")
    display_name: str = strawberry.field(description="Its name for people.")
    description: str = strawberry.field(description="What it does.")
    category: str = strawberry.field(description="trigger, flow, data, transform, core or ai.")
    trigger: bool = strawberry.field(description="Whether it starts executions.")
    inputs: list[str] = strawberry.field(description="Its input ports.")
    outputs: list[str] = strawberry.field(
        description="Its output ports (some nodes add ports from their parameters)."
    )
    credential_types: list[str] = strawberry.field(description="Credential types it can use.")
    parameters_schema: JSON = strawberry.field(description="JSON Schema of its parameters.")

    @classmethod
    def from_class(cls, version: float, node: type[NodeType]) -> NodeTypeDescription:
        return cls(
            type=node.type,
            version=version,
            display_name=node.display_name,
            description=node.description,
            category=node.category,
            trigger=node.is_trigger,
            inputs=list(node.inputs),
            outputs=list(node.outputs),
            credential_types=list(node.credential_types),
            parameters_schema=node.Params.model_json_schema(by_alias=True),
        )


# ---- inputs, results and errors -------------------------------------------------------


@strawberry.type(description="Someone saved the workflow since the version you last saw.")
class VersionConflictError(Error):
    expected_version: int = strawberry.field(description="The version you said you last saw.")
    current_version: int = strawberry.field(description="The version it is at now.")


@strawberry.type(description="A node of an imported workflow that KlikkFlow cannot run.")
class UnsupportedNode:
    name: str = strawberry.field(description="The node's name in the imported workflow.")
    type: str = strawberry.field(description="Its type there, e.g. n8n-nodes-base.slack.")


@strawberry.type(description="The import has nodes KlikkFlow does not support; nothing saved.")
class UnsupportedNodesError(Error):
    nodes: list[UnsupportedNode] = strawberry.field(description="Every unsupported node.")


@strawberry.input(description="A new workflow.")
class CreateWorkflowInput:
    name: str = strawberry.field(description="Display name, 1 to 200 characters.")
    description: str = strawberry.field(default="", description="What it is for.")
    tags: list[str] = strawberry.field(default_factory=list, description="Labels, at most 20.")
    definition: JSON | None = strawberry.field(
        default=None, description="Nodes, connections and settings; empty when left out."
    )
    message: str = strawberry.field(default="", description="A note on the first version.")


@strawberry.input(description="Save a new version of a workflow.")
class UpdateWorkflowInput:
    id: strawberry.ID = strawberry.field(description="The workflow.")
    expected_version: int = strawberry.field(
        description="The `version` you loaded; the save is refused if it moved on since."
    )
    name: str | None = strawberry.field(default=None, description="A new name.")
    description: str | None = strawberry.field(default=None, description="A new description.")
    tags: list[str] | None = strawberry.field(default=None, description="The new set of tags.")
    definition: JSON | None = strawberry.field(default=None, description="The new definition.")
    message: str = strawberry.field(default="", description="Why you saved, for the history.")


@strawberry.input(description="A workflow by id.")
class WorkflowIdInput:
    id: strawberry.ID = strawberry.field(description="The workflow.")


@strawberry.input(description="Publish a version of a workflow.")
class PublishWorkflowVersionInput:
    id: strawberry.ID = strawberry.field(description="The workflow.")
    version: int = strawberry.field(description="The version triggers should use from now on.")


@strawberry.input(description="Roll a workflow back to an earlier version.")
class RollbackWorkflowInput:
    id: strawberry.ID = strawberry.field(description="The workflow.")
    version: int = strawberry.field(description="The version whose content comes back.")
    expected_version: int = strawberry.field(description="The `version` you loaded.")


@strawberry.input(description="Import a workflow from KlikkFlow or n8n JSON.")
class ImportWorkflowInput:
    document: JSON = strawberry.field(description="The exported JSON document.")
    name: str | None = strawberry.field(default=None, description="Overrides its name.")
    tags: list[str] = strawberry.field(default_factory=list, description="Labels to give it.")


@strawberry.type(description="The workflow was created.")
class CreateWorkflowSuccess:
    workflow: Workflow = strawberry.field(description="The new workflow.")


@strawberry.type(description="The workflow was changed.")
class WorkflowSuccess:
    workflow: Workflow = strawberry.field(description="The workflow as it is now.")


CreateWorkflowResult = Annotated[
    CreateWorkflowSuccess | ValidationError | ForbiddenError,
    strawberry.union("CreateWorkflowResult", description="Outcome of createWorkflow."),
]
UpdateWorkflowResult = Annotated[
    WorkflowSuccess | ValidationError | NotFoundError | VersionConflictError | ForbiddenError,
    strawberry.union("UpdateWorkflowResult", description="Outcome of updateWorkflow."),
]
ChangeWorkflowResult = Annotated[
    WorkflowSuccess | NotFoundError | VersionConflictError | ForbiddenError,
    strawberry.union(
        "ChangeWorkflowResult",
        description="Outcome of archiving, restoring, publishing or rolling back a workflow.",
    ),
]
ImportWorkflowResult = Annotated[
    CreateWorkflowSuccess | ValidationError | UnsupportedNodesError | ForbiddenError,
    strawberry.union("ImportWorkflowResult", description="Outcome of importWorkflow."),
]
WorkflowDiffResult = Annotated[
    WorkflowDiffView | NotFoundError,
    strawberry.union(
        "WorkflowDiffResult", description="The diff of two versions, or why there is none."
    ),
]


# ---- credentials ----------------------------------------------------------------------


@strawberry.type(description="A field of a credential, masked: never the secret itself.")
class CredentialHint:
    field: str = strawberry.field(description="The field's name, e.g. `token`.")
    value: str = strawberry.field(
        description="Non-secret fields as they are; secrets as •••• (plus the last 4 "
        "characters of long ones)."
    )


@strawberry.federation.type(keys=["id"], description="A stored secret nodes can use.")
class Credential:
    id: strawberry.ID = strawberry.field(description="Stable identifier.")
    name: str = strawberry.field(description="Unique in the organization.")
    type: str = strawberry.field(description="Its credential type, e.g. httpHeaderAuth.")
    hints: list[CredentialHint] = strawberry.field(description="Masked field values.")
    owner: User = strawberry.field(description="Who created it.")
    updated_by: User = strawberry.field(description="Who changed it last.")
    created_at: datetime = strawberry.field(description="When it was created.")
    updated_at: datetime = strawberry.field(description="When it was last changed.")

    @classmethod
    def from_model(cls, m: CredentialDocument) -> Credential:
        return cls(
            id=strawberry.ID(str(m.id)),
            name=m.name,
            type=m.type,
            hints=[CredentialHint(field=k, value=v) for k, v in m.hints.items()],
            owner=_user(m.owner_id),
            updated_by=_user(m.updated_by),
            created_at=m.created_at,
            updated_at=m.updated_at,
        )

    @strawberry.field(description="Workflows whose latest version uses this credential.")
    async def used_by(self, info: strawberry.Info) -> list[Workflow]:
        from subgraphs.workflows.credentials import credential as credential_service

        viewer = info.context.require_viewer()
        return [Workflow.from_model(w) for w in await credential_service.used_by(viewer, self.id)]

    @classmethod
    async def resolve_reference(cls, info: strawberry.Info, id: strawberry.ID) -> Credential | None:
        from subgraphs.workflows.loaders import credential_loader

        found = await credential_loader(info.context).load(str(id))
        return cls.from_model(found) if found else None


@strawberry.type(description="A kind of credential nodes declare, with the fields it holds.")
class CredentialTypeDescription:
    name: str = strawberry.field(description="The type name nodes refer to.")
    display_name: str = strawberry.field(description="Its name for people.")
    test: str = strawberry.field(description="What testCredential does with it.")
    secret_fields: list[str] = strawberry.field(description="Fields never shown again.")
    schema: JSON = strawberry.field(description="JSON Schema of its fields (secrets writeOnly).")

    @classmethod
    def from_type(cls, t: CredentialType) -> CredentialTypeDescription:
        return cls(
            name=t.name,
            display_name=t.display_name,
            test=t.test,
            secret_fields=sorted(t.secret_fields),
            schema=t.json_schema(),
        )


@strawberry.input(description="A new credential.")
class CreateCredentialInput:
    name: str = strawberry.field(description="Unique in the organization, 1 to 128 characters.")
    type: str = strawberry.field(description="A credential type from `credentialTypes`.")
    data: JSON = strawberry.field(description="Its fields, as the type's schema says.")


@strawberry.input(description="Change a credential; fields left out of `data` keep their value.")
class UpdateCredentialInput:
    id: strawberry.ID = strawberry.field(description="The credential.")
    name: str | None = strawberry.field(default=None, description="A new name.")
    data: JSON | None = strawberry.field(default=None, description="Fields to change.")


@strawberry.input(description="A credential by id.")
class CredentialIdInput:
    id: strawberry.ID = strawberry.field(description="The credential.")


@strawberry.input(description="Try a credential.")
class TestCredentialInput:
    id: strawberry.ID = strawberry.field(description="The credential.")
    url: str = strawberry.field(
        default="",
        description="Where to send a GET with it (OAuth2 credentials may leave it empty: "
        "a token is fetched).",
    )


@strawberry.type(description="The credential was saved.")
class CredentialSuccess:
    credential: Credential = strawberry.field(description="The credential as it is now.")


@strawberry.type(description="The credential was deleted.")
class DeleteCredentialSuccess:
    id: strawberry.ID = strawberry.field(description="The deleted credential's id.")


@strawberry.type(description="Workflows use the credential: change them first.")
class CredentialInUseError(Error):
    workflows: list[Workflow] = strawberry.field(description="The workflows that use it.")


@strawberry.type(description="What trying the credential showed.")
class CredentialTestResult:
    ok: bool = strawberry.field(description="Whether the credential worked.")
    message: str = strawberry.field(description="What happened, for people.")
    status: int | None = strawberry.field(description="The HTTP status answered, if any.")


SaveCredentialResult = Annotated[
    CredentialSuccess | ValidationError | NotFoundError | ForbiddenError,
    strawberry.union("SaveCredentialResult", description="Outcome of saving a credential."),
]
DeleteCredentialResult = Annotated[
    DeleteCredentialSuccess | CredentialInUseError | NotFoundError | ForbiddenError,
    strawberry.union("DeleteCredentialResult", description="Outcome of deleteCredential."),
]
TestCredentialResult = Annotated[
    CredentialTestResult | NotFoundError | ForbiddenError,
    strawberry.union("TestCredentialResult", description="Outcome of testCredential."),
]


# ---- activation and variables ---------------------------------------------------------


@strawberry.type(description="Another active workflow of your organization holds the path.")
class WebhookPathTakenError(Error):
    path: str = strawberry.field(description="The path asked for.")
    method: str = strawberry.field(description="The HTTP method asked for.")
    workflow_id: strawberry.ID | None = strawberry.field(description="The workflow holding it.")


ActivateWorkflowResult = Annotated[
    WorkflowSuccess | ValidationError | NotFoundError | WebhookPathTakenError | ForbiddenError,
    strawberry.union("ActivateWorkflowResult", description="Outcome of activating a workflow."),
]


@strawberry.type(description="An organization variable: `$vars.<key>` in expressions.")
class Variable:
    key: str = strawberry.field(description="Its name.")
    value: str = strawberry.field(description="Its value.")
    updated_at: datetime = strawberry.field(description="When it was last set.")


@strawberry.input(description="Set an organization variable.")
class SetVariableInput:
    key: str = strawberry.field(description="Letters, digits and _, at most 64 characters.")
    value: str = strawberry.field(description="At most 10,000 characters.")


@strawberry.input(description="An organization variable by key.")
class VariableKeyInput:
    key: str = strawberry.field(description="Its name.")


@strawberry.type(description="The variable was set.")
class SetVariableSuccess:
    variable: Variable = strawberry.field(description="The variable as it is now.")


@strawberry.type(description="The variable was deleted (or did not exist).")
class DeleteVariableSuccess:
    key: str = strawberry.field(description="The key.")
    deleted: bool = strawberry.field(description="Whether it existed.")


SetVariableResult = Annotated[
    SetVariableSuccess | ValidationError | ForbiddenError,
    strawberry.union("SetVariableResult", description="Outcome of setVariable."),
]
DeleteVariableResult = Annotated[
    DeleteVariableSuccess | ForbiddenError,
    strawberry.union("DeleteVariableResult", description="Outcome of deleteVariable."),
]
