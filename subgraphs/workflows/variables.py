"""Organization variables: `$vars.<key>` in expressions. Any member reads them; admins
and owners set and delete them."""

from __future__ import annotations

import re

from beanie import PydanticObjectId
from pymongo import ReturnDocument

from klikkflow.kit.auth import Viewer
from klikkflow.kit.errors import InvalidInput
from klikkflow.kit.permissions import require
from klikkflow.kit.stores import object_id
from subgraphs.workflows.definition import check_text
from subgraphs.workflows.models import VariableDocument, now

KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
MAX_VALUE = 10_000
MAX_VARIABLES = 500


class VariableService:
    async def all(self, viewer: Viewer) -> list[VariableDocument]:
        org = object_id(viewer.organization_id)
        return await VariableDocument.find({"organization_id": org}).sort("key").to_list()

    async def values_for_run(self, organization_id: str) -> dict[str, str]:
        """What `$vars` holds in an execution of `organization_id`."""
        found = VariableDocument.find({"organization_id": object_id(organization_id)})
        return {v.key: v.value async for v in found}

    async def set(self, viewer: Viewer, key: str, value: str) -> VariableDocument:
        require(viewer, "variable.manage")
        problems: dict[str, str] = {}
        if not KEY.match(key):
            problems["key"] = "letters, digits and _, not starting with a digit, at most 64"
        if len(value) > MAX_VALUE:
            problems["value"] = f"at most {MAX_VALUE} characters"
        check_text(problems, "value", value)
        if problems:
            raise InvalidInput(problems)
        org = PydanticObjectId(viewer.organization_id)
        if await VariableDocument.find({"organization_id": org}).count() >= MAX_VARIABLES:
            existing = await VariableDocument.find_one({"organization_id": org, "key": key})
            if existing is None:
                raise InvalidInput({"key": f"an organization has at most {MAX_VARIABLES}"})
        raw = await VariableDocument.get_pymongo_collection().find_one_and_update(
            {"organization_id": org, "key": key},
            {
                "$set": {
                    "value": value,
                    "updated_at": now(),
                    "updated_by": PydanticObjectId(viewer.user_id),
                }
            },
            upsert=True,
            return_document=ReturnDocument.AFTER,
        )
        return VariableDocument.model_validate(raw)

    async def delete(self, viewer: Viewer, key: str) -> bool:
        require(viewer, "variable.manage")
        org = object_id(viewer.organization_id)
        gone = await VariableDocument.find({"organization_id": org, "key": key}).delete()
        return bool(gone and gone.deleted_count)


variables = VariableService()
