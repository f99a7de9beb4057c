from __future__ import annotations

from datetime import UTC, datetime

from beanie import Document, PydanticObjectId
from pydantic import Field
from pymongo import ASCENDING, DESCENDING, IndexModel


def _now() -> datetime:
    return datetime.now(UTC)


class WorkflowDocument(Document):
    organization_id: PydanticObjectId
    owner_id: PydanticObjectId
    name: str
    created_at: datetime = Field(default_factory=_now)
    updated_at: datetime = Field(default_factory=_now)

    class Settings:
        name = "workflows"
        indexes = [
            IndexModel([("organization_id", ASCENDING), ("created_at", DESCENDING)]),
            IndexModel([("organization_id", ASCENDING), ("owner_id", ASCENDING)]),
        ]


DOCUMENTS = [WorkflowDocument]
