"""Workflows: create, save (optimistic concurrency), archive and restore; immutable
versions with diff, publish and rollback; import and export (KlikkFlow and n8n JSON)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from beanie import PydanticObjectId

from klikkflow.engine import n8n
from klikkflow.engine.diff import WorkflowDiff, diff
from klikkflow.engine.workflow import Workflow
from klikkflow.kit.auth import Viewer
from klikkflow.kit.errors import InvalidInput
from klikkflow.kit.permissions import require
from klikkflow.nodes.registry import default_registry
from subgraphs.workflows import definition, triggers
from subgraphs.workflows.models import WorkflowDocument, WorkflowVersionDocument, now
from subgraphs.workflows.repository import WorkflowFilter, repository

MAX_NAME_LENGTH = 200
MAX_DESCRIPTION = 10_000
MAX_MESSAGE = 1_000
MAX_TAGS = 20
MAX_TAG_LENGTH = 40
MAX_PAGE = 100
EMPTY: dict[str, Any] = {"nodes": [], "connections": []}


class WorkflowNotFound(Exception):
    def __init__(self, workflow_id: str) -> None:
        super().__init__(f"workflow {workflow_id} not found")
        self.workflow_id = workflow_id


class VersionNotFound(Exception):
    def __init__(self, workflow_id: str, number: int) -> None:
        super().__init__(f"workflow {workflow_id} has no version {number}")
        self.workflow_id, self.number = workflow_id, number


class VersionConflict(Exception):
    """The workflow was saved by someone else since the version the client last saw."""

    def __init__(self, workflow_id: str, expected: int, current: int) -> None:
        super().__init__(
            f"workflow {workflow_id} is at version {current}, not {expected}: "
            "reload it, re-apply your change and save again"
        )
        self.workflow_id, self.expected, self.current = workflow_id, expected, current


class UnsupportedNodes(Exception):
    def __init__(self, nodes: list[tuple[str, str]]) -> None:
        super().__init__(n8n.UnsupportedNodes(nodes).args[0])
        self.nodes = nodes


@dataclass(frozen=True)
class Changes:
    """What a save may change; None leaves a field as it is."""

    name: str | None = None
    description: str | None = None
    tags: list[str] | None = None
    definition: Any = None
    message: str = ""


def _clean_name(name: str, problems: dict[str, str]) -> str:
    name = name.strip()
    if not name or len(name) > MAX_NAME_LENGTH:
        problems["name"] = f"must have 1 to {MAX_NAME_LENGTH} characters"
    definition.check_text(problems, "name", name)
    return name


def _clean_tags(tags: list[str], problems: dict[str, str]) -> list[str]:
    cleaned = sorted({t.strip().lower() for t in tags if t.strip()})
    if len(cleaned) > MAX_TAGS:
        problems["tags"] = f"at most {MAX_TAGS} tags"
    for tag in cleaned:
        if len(tag) > MAX_TAG_LENGTH:
            problems["tags"] = f"a tag has at most {MAX_TAG_LENGTH} characters"
        definition.check_text(problems, "tags", tag)
    return cleaned


def _clean_text(value: str, field: str, limit: int, problems: dict[str, str]) -> str:
    if len(value) > limit:
        problems[field] = f"at most {limit} characters"
    definition.check_text(problems, field, value)
    return value.strip()


def _version_of(head: WorkflowDocument) -> WorkflowVersionDocument:
    assert head.id is not None
    return WorkflowVersionDocument(
        organization_id=head.organization_id,
        workflow_id=head.id,
        number=head.version,
        name=head.name,
        definition=head.definition,
        author_id=head.saved_by,
        message=head.message,
        created_at=head.saved_at,
    )


class WorkflowService:
    # ---- reading -------------------------------------------------------------------

    async def get(self, viewer: Viewer, workflow_id: str) -> WorkflowDocument | None:
        return (await repository.by_ids(viewer, [workflow_id])).get(workflow_id)

    async def get_many(self, viewer: Viewer, ids: list[str]) -> list[WorkflowDocument | None]:
        found = await repository.by_ids(viewer, ids)
        return [found.get(i) for i in ids]

    async def _require(self, viewer: Viewer, workflow_id: str) -> WorkflowDocument:
        found = await self.get(viewer, workflow_id)
        if found is None:
            raise WorkflowNotFound(workflow_id)
        return found

    async def page(
        self, viewer: Viewer, filter: WorkflowFilter, first: int, after: str | None
    ) -> tuple[list[WorkflowDocument], bool]:
        """A page of workflows, newest first, and whether another page follows."""
        limit = max(1, min(first, MAX_PAGE))
        found = await repository.page(viewer, filter, after, limit + 1)
        return found[:limit], len(found) > limit

    async def by_owners(
        self, viewer: Viewer, owner_ids: list[str], first: int
    ) -> list[list[WorkflowDocument]]:
        found = await repository.by_owners(viewer, owner_ids, max(1, min(first, MAX_PAGE)))
        return [found[i] for i in owner_ids]

    async def tags(self, viewer: Viewer) -> list[str]:
        return await repository.tags(viewer)

    async def using_credentials(
        self, viewer: Viewer, credential_ids: list[str]
    ) -> list[WorkflowDocument]:
        return await repository.using_credentials(viewer, credential_ids)

    # ---- saving --------------------------------------------------------------------

    async def create(
        self,
        viewer: Viewer,
        name: str,
        *,
        description: str = "",
        tags: list[str] | None = None,
        document: Any = None,
        message: str = "",
    ) -> WorkflowDocument:
        require(viewer, "workflow.create")
        problems: dict[str, str] = {}
        name = _clean_name(name, problems)
        description = _clean_text(description, "description", MAX_DESCRIPTION, problems)
        message = _clean_text(message, "message", MAX_MESSAGE, problems)
        cleaned_tags = _clean_tags(tags or [], problems)
        if problems:
            raise InvalidInput(problems)
        workflow = definition.check(EMPTY if document is None else document, name)
        author = PydanticObjectId(viewer.user_id)
        head = WorkflowDocument(
            organization_id=PydanticObjectId(viewer.organization_id),
            owner_id=author,
            name=name,
            description=description,
            tags=cleaned_tags,
            definition=definition.canonical(workflow),
            saved_by=author,
            message=message or "Created",
            credential_ids=definition.credential_ids(workflow),
        )
        await head.insert()
        await repository.insert_version(_version_of(head))
        return head

    async def save(
        self, viewer: Viewer, workflow_id: str, expected_version: int, changes: Changes
    ) -> WorkflowDocument:
        """Save a new version if the workflow is still at `expected_version`; a save from
        a stale copy raises VersionConflict and overwrites nothing."""
        require(viewer, "workflow.update")
        head = await self._require(viewer, workflow_id)
        problems: dict[str, str] = {}
        name = _clean_name(changes.name, problems) if changes.name is not None else head.name
        fields: dict[str, Any] = {"name": name}
        if changes.description is not None:
            fields["description"] = _clean_text(
                changes.description, "description", MAX_DESCRIPTION, problems
            )
        if changes.tags is not None:
            fields["tags"] = _clean_tags(changes.tags, problems)
        message = _clean_text(changes.message, "message", MAX_MESSAGE, problems)
        if problems:
            raise InvalidInput(problems)
        document = (
            changes.definition if changes.definition is not None else json.loads(head.definition)
        )
        workflow = definition.check(document, name)
        return await self._save_version(viewer, head, expected_version, workflow, message, fields)

    async def _save_version(
        self,
        viewer: Viewer,
        head: WorkflowDocument,
        expected: int,
        workflow: Workflow,
        message: str,
        fields: dict[str, Any] | None = None,
        publish: bool = False,
    ) -> WorkflowDocument:
        assert head.id is not None
        if head.version != expected:
            raise VersionConflict(str(head.id), expected, head.version)
        at = now()
        update = {
            **(fields or {}),
            "name": workflow.name,
            "version": expected + 1,
            "definition": definition.canonical(workflow),
            "credential_ids": definition.credential_ids(workflow),
            "saved_by": PydanticObjectId(viewer.user_id),
            "saved_at": at,
            "message": message,
            "updated_at": at,
        }
        if publish:
            update["active_version"] = expected + 1
        saved = await repository.save_head(viewer, head.id, expected, update)
        if saved is None:
            current = await self._require(viewer, str(head.id))
            raise VersionConflict(str(head.id), expected, current.version)
        await repository.insert_version(_version_of(saved))
        return saved

    async def archive(self, viewer: Viewer, workflow_id: str, archived: bool) -> WorkflowDocument:
        """Archive (hidden from lists, triggers off) or restore a workflow."""
        require(viewer, "workflow.update")
        head = await self._require(viewer, workflow_id)
        assert head.id is not None
        changes: dict[str, Any] = {"archived_at": now() if archived else None}
        if archived:
            changes["active"] = False
            await triggers.unregister(head.id)
        updated = await repository.set_fields(viewer, head.id, changes)
        if updated is None:
            raise WorkflowNotFound(workflow_id)
        return updated

    # ---- triggers ------------------------------------------------------------------

    async def activate(self, viewer: Viewer, workflow_id: str) -> WorkflowDocument:
        """Turn on the published version's triggers (publishing the latest version if
        none is). A webhook path held by another active workflow is refused whole."""
        require(viewer, "workflow.publish")
        head = await self._require(viewer, workflow_id)
        assert head.id is not None
        if head.archived_at is not None:
            raise InvalidInput({"id": "an archived workflow cannot be activated: restore it"})
        number = head.active_version or head.version
        found = await self.version(viewer, workflow_id, number)
        await triggers.register(head, number, definition.load(found.definition))
        changes = {"active": True, "active_version": number, "updated_at": now()}
        updated = await repository.set_fields(viewer, head.id, changes)
        if updated is None:
            raise WorkflowNotFound(workflow_id)
        return updated

    async def deactivate(self, viewer: Viewer, workflow_id: str) -> WorkflowDocument:
        require(viewer, "workflow.publish")
        head = await self._require(viewer, workflow_id)
        assert head.id is not None
        updated = await repository.set_fields(
            viewer, head.id, {"active": False, "updated_at": now()}
        )
        await triggers.unregister(head.id)
        if updated is None:
            raise WorkflowNotFound(workflow_id)
        return updated

    # ---- versions ------------------------------------------------------------------

    async def versions(
        self, viewer: Viewer, head: WorkflowDocument, first: int, before: int | None
    ) -> tuple[list[WorkflowVersionDocument], bool]:
        """Versions newest first (below `before`), and whether more follow."""
        assert head.id is not None
        await self.ensure_latest_version(head)
        limit = max(1, min(first, MAX_PAGE))
        found = await repository.versions(viewer, head.id, before, limit + 1)
        return found[:limit], len(found) > limit

    async def ensure_latest_version(self, head: WorkflowDocument) -> None:
        """A save whose process died between head and version left the version missing:
        rebuild it from the head, which holds the same content."""
        assert head.id is not None
        viewer = Viewer(str(head.saved_by), str(head.organization_id), "viewer")
        if await repository.version(viewer, head.id, head.version) is None:
            await repository.insert_version(_version_of(head))

    async def version(
        self, viewer: Viewer, workflow_id: str, number: int
    ) -> WorkflowVersionDocument:
        head = await self._require(viewer, workflow_id)
        assert head.id is not None
        if number == head.version:
            return _version_of(head)
        found = await repository.version(viewer, head.id, number)
        if found is None:
            raise VersionNotFound(workflow_id, number)
        return found

    async def for_run(self, viewer: Viewer, workflow_id: str, number: int | None) -> Workflow:
        """The definition of version `number` (the latest when None), ready to compile."""
        head = await self._require(viewer, workflow_id)
        found = await self.version(viewer, workflow_id, number or head.version)
        workflow = definition.load(found.definition)
        workflow.id = workflow_id
        return workflow

    async def diff(self, viewer: Viewer, workflow_id: str, older: int, newer: int) -> WorkflowDiff:
        a = await self.version(viewer, workflow_id, older)
        b = await self.version(viewer, workflow_id, newer)
        return diff(definition.load(a.definition), definition.load(b.definition))

    async def publish(self, viewer: Viewer, workflow_id: str, number: int) -> WorkflowDocument:
        """Make version `number` the one triggers and production runs use."""
        require(viewer, "workflow.publish")
        found = await self.version(viewer, workflow_id, number)
        head = await self._require(viewer, workflow_id)
        if head.active:  # the new version's triggers must be free before it goes live
            await triggers.register(head, number, definition.load(found.definition))
        updated = await repository.set_fields(
            viewer, found.workflow_id, {"active_version": number, "updated_at": now()}
        )
        if updated is None:
            raise WorkflowNotFound(workflow_id)
        return updated

    async def rollback(
        self, viewer: Viewer, workflow_id: str, number: int, expected_version: int
    ) -> WorkflowDocument:
        """Save version `number`'s content as a new version and publish it: history only
        grows, and what runs is what was chosen."""
        require(viewer, "workflow.publish")
        head = await self._require(viewer, workflow_id)
        old = await self.version(viewer, workflow_id, number)
        workflow = definition.load(old.definition)
        if head.active:
            await triggers.register(head, expected_version + 1, workflow)
        return await self._save_version(
            viewer,
            head,
            expected_version,
            workflow,
            f"Rolled back to version {number}",
            publish=True,
        )

    # ---- import and export ---------------------------------------------------------

    async def export(self, viewer: Viewer, workflow_id: str, number: int | None) -> dict[str, Any]:
        """KlikkFlow JSON of a version (the latest by default); importing it gives back
        the same document."""
        head = await self._require(viewer, workflow_id)
        found = await self.version(viewer, workflow_id, number or head.version)
        document: dict[str, Any] = json.loads(found.definition)
        return document

    async def import_document(
        self, viewer: Viewer, document: Any, name: str | None, tags: list[str] | None
    ) -> WorkflowDocument:
        """A workflow from KlikkFlow or n8n JSON (told apart by the shape of
        `connections`). n8n nodes we do not support are listed, never dropped."""
        if not isinstance(document, dict):
            raise InvalidInput({"document": "must be a JSON object"})
        message = "Imported"
        if n8n.is_n8n(document):
            try:
                document = n8n.from_n8n(document, default_registry()).model_dump(
                    by_alias=True, mode="json", exclude={"id"}
                )
            except n8n.UnsupportedNodes as exc:
                raise UnsupportedNodes(exc.nodes) from None
            except (KeyError, TypeError, ValueError) as exc:
                raise InvalidInput({"document": f"is not a readable n8n workflow: {exc}"}) from None
            message = "Imported from n8n"
        chosen = name or str(document.get("name") or "Imported workflow")
        return await self.create(
            viewer, chosen[:MAX_NAME_LENGTH], tags=tags, document=document, message=message
        )


workflow = WorkflowService()
