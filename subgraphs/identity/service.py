"""Accounts and organizations: sign up and log in (the identity issue grows this)."""

from __future__ import annotations

import asyncio
import re
import secrets
from dataclasses import dataclass

from argon2 import PasswordHasher
from argon2.exceptions import VerificationError
from pymongo.errors import DuplicateKeyError

from klikkflow.kit.auth import Viewer, issue_access_token
from klikkflow.kit.settings import AuthSettings
from subgraphs.identity.models import MembershipDocument, OrganizationDocument, UserDocument
from subgraphs.identity.repository import repository

MIN_PASSWORD_LENGTH = 10
EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_hasher = PasswordHasher()  # argon2id with the library's current recommended parameters
# Verified against when an e-mail is unknown, so both answers take the same time.
_DUMMY_HASH = _hasher.hash(secrets.token_hex(16))


class InvalidInput(Exception):
    def __init__(self, problems: dict[str, str]) -> None:
        super().__init__("; ".join(f"{k}: {v}" for k, v in problems.items()))
        self.problems = problems


class InvalidCredentials(Exception):
    pass


@dataclass(frozen=True)
class Session:
    user: UserDocument
    organization: OrganizationDocument
    role: str
    access_token: str


def _slugify(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[:48] or "org"


class IdentityService:
    def _check_sign_up(self, email: str, name: str, password: str, org_name: str) -> None:
        problems: dict[str, str] = {}
        if not EMAIL_RE.match(email):
            problems["email"] = "is not an e-mail address"
        if not name.strip():
            problems["name"] = "must not be empty"
        if len(password) < MIN_PASSWORD_LENGTH:
            problems["password"] = f"must have at least {MIN_PASSWORD_LENGTH} characters"
        if not org_name.strip():
            problems["organizationName"] = "must not be empty"
        if problems:
            raise InvalidInput(problems)

    async def sign_up(
        self, settings: AuthSettings, email: str, name: str, password: str, org_name: str
    ) -> Session:
        email = email.strip().lower()
        self._check_sign_up(email, name, password, org_name)
        if await repository.user_by_email(email) is not None:
            raise InvalidInput({"email": "is already registered"})
        password_hash = await asyncio.to_thread(_hasher.hash, password)
        slug = _slugify(org_name)
        if await repository.slug_taken(slug):
            slug = f"{slug}-{secrets.token_hex(3)}"
        user = UserDocument(email=email, name=name.strip(), password_hash=password_hash)
        try:
            await user.insert()
        except DuplicateKeyError as exc:
            raise InvalidInput({"email": "is already registered"}) from exc
        organization = OrganizationDocument(name=org_name.strip(), slug=slug)
        try:
            await organization.insert()
            await MembershipDocument(
                user_id=user.id, organization_id=organization.id, role="owner"
            ).insert()
        except Exception:
            # No transactions on a standalone MongoDB: undo by hand, leave nothing half-made.
            await user.delete()
            if organization.id is not None:
                await organization.delete()
            raise
        return self._session(settings, user, organization, "owner")

    async def log_in(self, settings: AuthSettings, email: str, password: str) -> Session:
        user = await repository.user_by_email(email.strip().lower())
        try:
            await asyncio.to_thread(
                _hasher.verify, user.password_hash if user else _DUMMY_HASH, password
            )
        except VerificationError as exc:
            raise InvalidCredentials() from exc
        if user is None:
            raise InvalidCredentials()
        membership = await repository.first_membership(user.id)  # type: ignore[arg-type]
        organization = (
            await repository.organization(str(membership.organization_id)) if membership else None
        )
        if membership is None or organization is None:
            raise InvalidCredentials()
        return self._session(settings, user, organization, membership.role)

    def _session(
        self, settings: AuthSettings, user: UserDocument, org: OrganizationDocument, role: str
    ) -> Session:
        token = issue_access_token(settings, str(user.id), str(org.id), role)
        return Session(user, org, role, token)

    async def users(self, viewer: Viewer, user_ids: list[str]) -> list[UserDocument | None]:
        found = await repository.users_in_organization(viewer.organization_id, user_ids)
        return [found.get(i) for i in user_ids]

    async def organization(
        self, viewer: Viewer, organization_id: str
    ) -> OrganizationDocument | None:
        if organization_id != viewer.organization_id:
            return None
        return await repository.organization(organization_id)


identity = IdentityService()
