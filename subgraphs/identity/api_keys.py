"""API keys: scoped to one organization and a role, stored hashed, shown once.

A key reads `kf_<prefix>_<secret>`; the prefix is visible in lists so people can tell
keys apart, the whole key is stored only as a SHA-256 digest (keys are random, 256 bits:
a slow hash adds nothing)."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated

from beanie import Document, Indexed, PydanticObjectId
from pydantic import Field
from pymongo import ASCENDING, IndexModel

from klikkflow.kit.auth import API_KEY_PREFIX, ROLES, Viewer
from klikkflow.kit.crypto import token_digest
from klikkflow.kit.errors import InvalidInput
from klikkflow.kit.permissions import allowed
from klikkflow.kit.settings import AuthSettings
from subgraphs.identity.audit import audit_log

MAX_LIFETIME_DAYS = 3650
LAST_USED_RESOLUTION = timedelta(seconds=60)


def _now() -> datetime:
    return datetime.now(UTC)


class ApiKeyDocument(Document):
    organization_id: PydanticObjectId
    created_by: PydanticObjectId
    name: str
    role: str
    prefix: str
    key_hash: Annotated[str, Indexed(unique=True)]
    created_at: datetime = Field(default_factory=_now)
    expires_at: datetime | None = None
    last_used_at: datetime | None = None
    revoked_at: datetime | None = None

    class Settings:
        name = "api_keys"
        indexes = [IndexModel([("organization_id", ASCENDING), ("created_at", ASCENDING)])]


class ApiKeysForbidden(Exception):
    pass


@dataclass(frozen=True)
class Introspection:
    active: bool
    user_id: str = ""
    organization_id: str = ""
    role: str = ""


def _may_grant(granter: str, role: str) -> bool:
    """Nobody hands out more than they hold (ROLES runs from most to least powerful)."""
    return ROLES.index(role) >= ROLES.index(granter)


class ApiKeyService:
    async def create(
        self,
        settings: AuthSettings,
        viewer: Viewer,
        name: str,
        role: str,
        expires_in_days: int | None,
    ) -> tuple[ApiKeyDocument, str]:
        if not allowed(viewer, "api_key.manage") or "api_key" in viewer.scopes:
            raise ApiKeysForbidden("only owners and admins, signed in, can create API keys")
        problems = {}
        if not name.strip() or len(name) > 100:
            problems["name"] = "must have 1 to 100 characters"
        if role not in ROLES:
            problems["role"] = f"must be one of {', '.join(ROLES)}"
        elif not _may_grant(viewer.role, role):
            problems["role"] = f"an {viewer.role} cannot grant {role}"
        if expires_in_days is not None and not 1 <= expires_in_days <= MAX_LIFETIME_DAYS:
            problems["expiresInDays"] = f"must be between 1 and {MAX_LIFETIME_DAYS}"
        if problems:
            raise InvalidInput(problems)
        prefix = secrets.token_hex(4)
        key = f"{API_KEY_PREFIX}{prefix}_{secrets.token_urlsafe(32)}"
        document = ApiKeyDocument(
            organization_id=PydanticObjectId(viewer.organization_id),
            created_by=PydanticObjectId(viewer.user_id),
            name=name.strip(),
            role=role,
            prefix=f"{API_KEY_PREFIX}{prefix}",
            key_hash=token_digest(key),
            expires_at=_now() + timedelta(days=expires_in_days) if expires_in_days else None,
        )
        await document.insert()
        await audit_log(settings).append(
            organization_id=viewer.organization_id,
            action="api_key.created",
            actor_kind="user",
            actor_id=viewer.user_id,
            target_kind="api_key",
            target_id=str(document.id),
            data={"name": document.name, "role": role},
        )
        return document, key

    async def list(self, viewer: Viewer) -> list[ApiKeyDocument]:
        if not allowed(viewer, "api_key.manage"):
            raise ApiKeysForbidden("only owners and admins can see API keys")
        return (
            await ApiKeyDocument.find(
                ApiKeyDocument.organization_id == PydanticObjectId(viewer.organization_id)
            )
            .sort("-created_at")
            .to_list()
        )

    async def revoke(self, settings: AuthSettings, viewer: Viewer, key_id: str) -> bool:
        if not allowed(viewer, "api_key.manage"):
            raise ApiKeysForbidden("only owners and admins can revoke API keys")
        if not PydanticObjectId.is_valid(key_id):
            return False
        document = await ApiKeyDocument.find_one(
            ApiKeyDocument.id == PydanticObjectId(key_id),
            ApiKeyDocument.organization_id == PydanticObjectId(viewer.organization_id),
        )
        if document is None:
            return False
        if document.revoked_at is None:
            document.revoked_at = _now()
            await document.save()
            await audit_log(settings).append(
                organization_id=viewer.organization_id,
                action="api_key.revoked",
                actor_kind="user",
                actor_id=viewer.user_id,
                target_kind="api_key",
                target_id=key_id,
            )
        return True

    async def introspect(self, key: str) -> Introspection:
        document = await ApiKeyDocument.find_one(ApiKeyDocument.key_hash == token_digest(key))
        now = _now()
        if (
            document is None
            or document.revoked_at is not None
            or (document.expires_at and document.expires_at.replace(tzinfo=UTC) <= now)
        ):
            return Introspection(active=False)
        last = document.last_used_at.replace(tzinfo=UTC) if document.last_used_at else None
        if last is None or now - last > LAST_USED_RESOLUTION:
            await document.set({"last_used_at": now})
        return Introspection(
            active=True,
            user_id=str(document.created_by),
            organization_id=str(document.organization_id),
            role=document.role,
        )


api_keys = ApiKeyService()
