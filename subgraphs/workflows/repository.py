"""Every workflow query, always scoped by the viewer's organization."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from beanie import PydanticObjectId
from pymongo import ReturnDocument
from pymongo.errors import DuplicateKeyError

from klikkflow.kit.auth import Viewer
from klikkflow.kit.stores import object_id
from subgraphs.workflows.models import WorkflowDocument, WorkflowVersionDocument


@dataclass(frozen=True)
class WorkflowFilter:
    search: str = ""  # a part of the name, any case
    tags: tuple[str, ...] = ()  # every one of these tags
    archived: bool = False  # archived workflows instead of live ones


def _org(viewer: Viewer) -> PydanticObjectId | None:
    return object_id(viewer.organization_id)


def _page_query(org: PydanticObjectId, filter: WorkflowFilter) -> dict[str, Any]:
    query: dict[str, Any] = {
        "organization_id": org,
        "archived_at": {"$ne": None} if filter.archived else None,
    }
    if filter.search:
        query["name"] = {"$regex": re.escape(filter.search), "$options": "i"}
    if filter.tags:
        query["tags"] = {"$all": list(filter.tags)}
    return query


class WorkflowRepository:
    async def by_ids(self, viewer: Viewer, ids: Sequence[str]) -> dict[str, WorkflowDocument]:
        oids = [i for i in (object_id(x) for x in ids) if i is not None]
        org = _org(viewer)
        if not oids or org is None:
            return {}
        found = await WorkflowDocument.find(
            {"_id": {"$in": oids}, "organization_id": org}
        ).to_list()
        return {str(w.id): w for w in found}

    async def by_owners(
        self, viewer: Viewer, owner_ids: Sequence[str], limit: int
    ) -> dict[str, list[WorkflowDocument]]:
        oids = [i for i in (object_id(x) for x in owner_ids) if i is not None]
        org = _org(viewer)
        result: dict[str, list[WorkflowDocument]] = {x: [] for x in owner_ids}
        if not oids or org is None:
            return result
        found = (
            await WorkflowDocument.find(
                {"organization_id": org, "owner_id": {"$in": oids}, "archived_at": None}
            )
            .sort("-_id")
            .to_list()
        )
        for w in found:
            bucket = result[str(w.owner_id)]
            if len(bucket) < limit:
                bucket.append(w)
        return result

    async def page(
        self, viewer: Viewer, filter: WorkflowFilter, after: str | None, limit: int
    ) -> list[WorkflowDocument]:
        """Up to `limit` workflows, newest first, after the workflow id `after`."""
        org = _org(viewer)
        if org is None:
            return []
        query = _page_query(org, filter)
        if after is not None:
            cursor = object_id(after)
            if cursor is None:
                return []
            query["_id"] = {"$lt": cursor}
        return await WorkflowDocument.find(query).sort("-_id").limit(limit).to_list()

    async def using_credentials(
        self, viewer: Viewer, credential_ids: Sequence[str]
    ) -> list[WorkflowDocument]:
        org = _org(viewer)
        if org is None or not credential_ids:
            return []
        return (
            await WorkflowDocument.find(
                {"organization_id": org, "credential_ids": {"$in": list(credential_ids)}}
            )
            .sort("-_id")
            .to_list()
        )

    async def save_head(
        self, viewer: Viewer, workflow_id: PydanticObjectId, expected: int, changes: dict[str, Any]
    ) -> WorkflowDocument | None:
        """Apply `changes` if the head is still at version `expected` (else None)."""
        raw = await WorkflowDocument.get_pymongo_collection().find_one_and_update(
            {"_id": workflow_id, "organization_id": _org(viewer), "version": expected},
            {"$set": changes},
            return_document=ReturnDocument.AFTER,
        )
        return WorkflowDocument.model_validate(raw) if raw else None

    async def set_fields(
        self, viewer: Viewer, workflow_id: PydanticObjectId, changes: dict[str, Any]
    ) -> WorkflowDocument | None:
        raw = await WorkflowDocument.get_pymongo_collection().find_one_and_update(
            {"_id": workflow_id, "organization_id": _org(viewer)},
            {"$set": changes},
            return_document=ReturnDocument.AFTER,
        )
        return WorkflowDocument.model_validate(raw) if raw else None

    async def insert_version(self, version: WorkflowVersionDocument) -> None:
        """Insert a version; one that is already there (a retried save) is left as it is."""
        with contextlib.suppress(DuplicateKeyError):
            await version.insert()

    async def versions(
        self, viewer: Viewer, workflow_id: PydanticObjectId, before: int | None, limit: int
    ) -> list[WorkflowVersionDocument]:
        query: dict[str, Any] = {"workflow_id": workflow_id, "organization_id": _org(viewer)}
        if before is not None:
            query["number"] = {"$lt": before}
        return await WorkflowVersionDocument.find(query).sort("-number").limit(limit).to_list()

    async def version(
        self, viewer: Viewer, workflow_id: PydanticObjectId, number: int
    ) -> WorkflowVersionDocument | None:
        return await WorkflowVersionDocument.find_one(
            {"workflow_id": workflow_id, "organization_id": _org(viewer), "number": number}
        )

    async def tags(self, viewer: Viewer) -> list[str]:
        org = _org(viewer)
        if org is None:
            return []
        found = await WorkflowDocument.get_pymongo_collection().distinct(
            "tags", {"organization_id": org, "archived_at": None}
        )
        return sorted(str(t) for t in found)


repository = WorkflowRepository()
