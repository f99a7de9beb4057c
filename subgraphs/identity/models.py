from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from beanie import Document, Indexed, PydanticObjectId
from pydantic import Field
from pymongo import ASCENDING, IndexModel


def _now() -> datetime:
    return datetime.now(UTC)


class OrganizationDocument(Document):
    name: str
    slug: Annotated[str, Indexed(unique=True)]
    created_at: datetime = Field(default_factory=_now)

    class Settings:
        name = "organizations"


class UserDocument(Document):
    email: Annotated[str, Indexed(unique=True)]
    name: str
    password_hash: str
    created_at: datetime = Field(default_factory=_now)

    class Settings:
        name = "users"


class MembershipDocument(Document):
    user_id: PydanticObjectId
    organization_id: PydanticObjectId
    role: str
    created_at: datetime = Field(default_factory=_now)

    class Settings:
        name = "memberships"
        indexes = [
            IndexModel([("organization_id", ASCENDING), ("user_id", ASCENDING)], unique=True),
            IndexModel([("user_id", ASCENDING)]),
        ]


DOCUMENTS = [OrganizationDocument, UserDocument, MembershipDocument]
