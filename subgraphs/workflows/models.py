"""Workflows and their immutable versions.

A workflow's definition (nodes, connections, settings, pinned data) is stored as the
canonical JSON text of `klikkflow.engine.workflow.Workflow`: it round-trips exactly
(export gives back what was saved, byte for byte) and node parameters may use any key,
`$` and `.` included, which MongoDB field names may not.

The head (`WorkflowDocument`) carries the latest version's definition as well, so a save
is one conditional update of the head (the optimistic-concurrency check) followed by the
insert of the version; if a process dies between the two, the missing version is
rebuilt from the head on the next read (`ensure_latest_version`)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from beanie import Document, PydanticObjectId
from pydantic import Field
from pymongo import ASCENDING, DESCENDING, IndexModel


def now() -> datetime:
    return datetime.now(UTC)


class WorkflowDocument(Document):
    organization_id: PydanticObjectId
    owner_id: PydanticObjectId
    name: str
    description: str = ""
    tags: list[str] = Field(default_factory=list)
    archived_at: datetime | None = None
    # The latest version: its number, definition and who saved it, when, and why.
    version: int = 1
    definition: str
    saved_by: PydanticObjectId
    saved_at: datetime = Field(default_factory=now)
    message: str = ""
    # The published version: what triggers and production runs use.
    active_version: int | None = None
    # Triggers (webhooks, schedules) of the published version are registered.
    active: bool = False
    credential_ids: list[str] = Field(default_factory=list)
    created_at: datetime = Field(default_factory=now)
    updated_at: datetime = Field(default_factory=now)

    class Settings:
        name = "workflows"
        indexes = [
            IndexModel([("organization_id", ASCENDING), ("_id", DESCENDING)]),
            IndexModel([("organization_id", ASCENDING), ("tags", ASCENDING)]),
            IndexModel([("organization_id", ASCENDING), ("owner_id", ASCENDING)]),
            IndexModel([("organization_id", ASCENDING), ("credential_ids", ASCENDING)]),
        ]


class WorkflowVersionDocument(Document):
    """One saved state of a workflow. Never updated, never deleted with the head alive."""

    organization_id: PydanticObjectId
    workflow_id: PydanticObjectId
    number: int
    name: str
    definition: str
    author_id: PydanticObjectId
    message: str = ""
    created_at: datetime = Field(default_factory=now)

    class Settings:
        name = "workflow_versions"
        indexes = [
            IndexModel([("workflow_id", ASCENDING), ("number", DESCENDING)], unique=True),
        ]


class CredentialDocument(Document):
    """A secret a node uses. Its values are sealed in an envelope (a data key of its own,
    wrapped by the vault's master key) bound to its organization and id; only masked
    hints are kept in the clear."""

    organization_id: PydanticObjectId
    owner_id: PydanticObjectId
    name: str
    type: str
    envelope: dict[str, Any]
    hints: dict[str, str] = Field(default_factory=dict)
    created_at: datetime = Field(default_factory=now)
    updated_at: datetime = Field(default_factory=now)
    updated_by: PydanticObjectId

    class Settings:
        name = "credentials"
        indexes = [
            IndexModel([("organization_id", ASCENDING), ("name", ASCENDING)], unique=True),
        ]


class WebhookRegistration(Document):
    """A webhook path an active workflow listens on: one workflow per organization, path
    and method. The ingress finds the workflow (and the version to run) here."""

    organization_id: PydanticObjectId
    workflow_id: PydanticObjectId
    version: int
    node: str
    path: str
    method: str
    created_at: datetime = Field(default_factory=now)

    class Settings:
        name = "webhook_registrations"
        indexes = [
            IndexModel(
                [("organization_id", ASCENDING), ("path", ASCENDING), ("method", ASCENDING)],
                unique=True,
            ),
            IndexModel([("workflow_id", ASCENDING)]),
        ]


class ScheduleRegistration(Document):
    """A Schedule Trigger of an active workflow; the scheduler fires it at `next_run_at`."""

    organization_id: PydanticObjectId
    workflow_id: PydanticObjectId
    version: int
    node: str
    timezone: str
    next_run_at: datetime
    parameters: dict[str, Any] = Field(default_factory=dict)  # the Schedule Trigger's
    workflow_timezone: str = "UTC"
    created_at: datetime = Field(default_factory=now)

    class Settings:
        name = "schedule_registrations"
        indexes = [
            IndexModel([("next_run_at", ASCENDING)]),
            IndexModel([("workflow_id", ASCENDING)]),
        ]


class VariableDocument(Document):
    """An organization variable, read by expressions as `$vars.<key>`."""

    organization_id: PydanticObjectId
    key: str
    value: str
    updated_at: datetime = Field(default_factory=now)
    updated_by: PydanticObjectId

    class Settings:
        name = "variables"
        indexes = [IndexModel([("organization_id", ASCENDING), ("key", ASCENDING)], unique=True)]


DOCUMENTS = [
    WorkflowDocument,
    WorkflowVersionDocument,
    CredentialDocument,
    WebhookRegistration,
    ScheduleRegistration,
    VariableDocument,
]
