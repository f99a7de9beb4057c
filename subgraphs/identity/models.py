from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from beanie import Document, Indexed, PydanticObjectId
from pydantic import Field
from pymongo import ASCENDING, IndexModel

from subgraphs.identity.api_keys import ApiKeyDocument
from subgraphs.identity.audit import AuditEntryDocument
from subgraphs.identity.mfa import MfaState
from subgraphs.identity.saml import SamlConfigDocument, SamlRequestDocument
from subgraphs.identity.sso import OidcConfigDocument, OidcStateDocument


def _now() -> datetime:
    return datetime.now(UTC)


class OrganizationDocument(Document):
    name: str
    slug: Annotated[str, Indexed(unique=True)]
    created_at: datetime = Field(default_factory=_now)
    require_mfa: bool = False

    class Settings:
        name = "organizations"


class UserDocument(Document):
    email: Annotated[str, Indexed(unique=True)]
    name: str
    password_hash: str
    created_at: datetime = Field(default_factory=_now)
    mfa: MfaState = Field(default_factory=MfaState)
    email_verified_at: datetime | None = None

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


class SigningKeyDocument(Document):
    """A token signing key; the private half sealed with a key derived from the secret."""

    kid: Annotated[str, Indexed(unique=True)]
    private_sealed: str
    public_jwk: dict[str, str]
    created_at: datetime = Field(default_factory=_now)
    # Signing stops at retired_at; the key stays published until tokens it signed expire.
    retired_at: datetime | None = None

    class Settings:
        name = "signing_keys"


class MfaChallengeDocument(Document):
    """A log-in that passed the password and waits for its second factor."""

    token_hash: Annotated[str, Indexed(unique=True)]
    user_id: PydanticObjectId
    organization_id: PydanticObjectId
    role: str
    expires_at: datetime
    attempts: int = 0

    class Settings:
        name = "mfa_challenges"
        indexes = [IndexModel([("expires_at", ASCENDING)], expireAfterSeconds=0)]


class SessionDocument(Document):
    """One signed-in device: a family of rotating refresh tokens."""

    user_id: PydanticObjectId
    organization_id: PydanticObjectId
    created_at: datetime = Field(default_factory=_now)
    last_used_at: datetime = Field(default_factory=_now)
    expires_at: datetime
    revoked_at: datetime | None = None
    revoked_reason: str | None = None
    user_agent: str = ""
    ip: str = ""

    class Settings:
        name = "sessions"
        indexes = [IndexModel([("user_id", ASCENDING), ("created_at", ASCENDING)])]


class RefreshTokenDocument(Document):
    token_hash: Annotated[str, Indexed(unique=True)]
    session_id: PydanticObjectId
    issued_at: datetime = Field(default_factory=_now)
    expires_at: datetime
    used_at: datetime | None = None

    class Settings:
        name = "refresh_tokens"
        indexes = [
            IndexModel([("session_id", ASCENDING)]),
            IndexModel([("expires_at", ASCENDING)], expireAfterSeconds=86_400),
        ]


class InvitationDocument(Document):
    organization_id: PydanticObjectId
    email: str
    role: str
    invited_by: PydanticObjectId
    token_hash: Annotated[str, Indexed(unique=True)]
    created_at: datetime = Field(default_factory=_now)
    expires_at: datetime
    accepted_at: datetime | None = None
    revoked_at: datetime | None = None

    class Settings:
        name = "invitations"
        indexes = [IndexModel([("organization_id", ASCENDING), ("created_at", ASCENDING)])]


class EmailTokenDocument(Document):
    """A single-use link sent by mail: reset a password or confirm an address."""

    purpose: str  # "password_reset" | "email_verification"
    token_hash: Annotated[str, Indexed(unique=True)]
    user_id: PydanticObjectId
    email: str
    expires_at: datetime
    used_at: datetime | None = None

    class Settings:
        name = "email_tokens"
        indexes = [IndexModel([("expires_at", ASCENDING)], expireAfterSeconds=86_400)]


DOCUMENTS = [
    OrganizationDocument,
    UserDocument,
    MembershipDocument,
    SigningKeyDocument,
    SessionDocument,
    RefreshTokenDocument,
    MfaChallengeDocument,
    AuditEntryDocument,
    ApiKeyDocument,
    InvitationDocument,
    EmailTokenDocument,
    OidcConfigDocument,
    OidcStateDocument,
    SamlConfigDocument,
    SamlRequestDocument,
]
