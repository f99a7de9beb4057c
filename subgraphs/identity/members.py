"""Organization membership: invitations by e-mail, roles, removal, switching.

Roles rank owner > admin > editor > viewer. Owners and admins manage members; nobody
grants a role above their own; only owners touch owners; an organization always keeps
at least one owner."""

from __future__ import annotations

import asyncio
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from argon2.exceptions import VerificationError
from beanie import PydanticObjectId

from klikkflow.kit.auth import ROLES, Viewer
from klikkflow.kit.crypto import token_digest
from klikkflow.kit.errors import InvalidInput, NotAllowed
from klikkflow.kit.mail import send_mail
from klikkflow.kit.passwords import check_password
from klikkflow.kit.permissions import require
from klikkflow.kit.settings import SubgraphSettings
from klikkflow.kit.stores import object_id
from subgraphs.identity.audit import audit_log
from subgraphs.identity.models import (
    InvitationDocument,
    MembershipDocument,
    OrganizationDocument,
    SessionDocument,
    UserDocument,
)
from subgraphs.identity.service import EMAIL_RE, Client, Session, _hasher
from subgraphs.identity.service import identity as identity_service
from subgraphs.identity.sso import SsoIdentity

INVITATION_DAYS = 7


def _now() -> datetime:
    return datetime.now(UTC)


class InvitationInvalid(Exception):
    """Unknown, expired, revoked or already used: one answer for all."""


@dataclass(frozen=True)
class Member:
    user: UserDocument
    role: str
    joined_at: datetime


def _outranks(granter: str, role: str) -> bool:
    return ROLES.index(role) >= ROLES.index(granter)


def _as_object_id(value: str, field: str) -> PydanticObjectId:
    found = object_id(value)
    if found is None:
        raise InvalidInput({field: "is not an id"})
    return found


class MemberService:
    async def invite(
        self, settings: SubgraphSettings, viewer: Viewer, email: str, role: str
    ) -> tuple[InvitationDocument, str]:
        require(viewer, "member.invite")
        email = email.strip().lower()
        problems = {}
        if not EMAIL_RE.match(email):
            problems["email"] = "is not an e-mail address"
        if role not in ROLES:
            problems["role"] = f"must be one of {', '.join(ROLES)}"
        elif not _outranks(viewer.role, role):
            problems["role"] = f"an {viewer.role} cannot grant {role}"
        if problems:
            raise InvalidInput(problems)
        org = PydanticObjectId(viewer.organization_id)
        existing = await UserDocument.find_one(UserDocument.email == email)
        if existing and await MembershipDocument.find_one(
            MembershipDocument.organization_id == org, MembershipDocument.user_id == existing.id
        ):
            raise InvalidInput({"email": "is already a member"})
        token = f"inv_{secrets.token_urlsafe(32)}"
        invitation = InvitationDocument(
            organization_id=org,
            email=email,
            role=role,
            invited_by=PydanticObjectId(viewer.user_id),
            token_hash=token_digest(token),
            expires_at=_now() + timedelta(days=INVITATION_DAYS),
        )
        await invitation.insert()
        organization = await OrganizationDocument.get(org)
        org_name = organization.name if organization else "an organization"
        link = f"{settings.public_url.rstrip('/')}/invitations/{token}"
        await send_mail(
            settings,
            email,
            f"You are invited to {org_name} on KlikkFlow",
            f"You have been invited to join {org_name} as {role}.\n\n"
            f"Accept within {INVITATION_DAYS} days: {link}\n\n"
            "If you did not expect this, ignore this mail.\n",
        )
        await audit_log(settings).append(
            organization_id=viewer.organization_id,
            action="member.invited",
            actor_kind="user",
            actor_id=viewer.user_id,
            target_kind="invitation",
            target_id=str(invitation.id),
            data={"email": email, "role": role},
        )
        return invitation, token

    async def pending_invitations(self, viewer: Viewer) -> list[InvitationDocument]:
        require(viewer, "member.invite")
        return (
            await InvitationDocument.find(
                InvitationDocument.organization_id == PydanticObjectId(viewer.organization_id),
                InvitationDocument.accepted_at == None,  # noqa: E711 - a MongoDB query
                InvitationDocument.revoked_at == None,  # noqa: E711
                InvitationDocument.expires_at > _now(),
            )
            .sort("-created_at")
            .to_list()
        )

    async def revoke_invitation(
        self, settings: SubgraphSettings, viewer: Viewer, invitation_id: str
    ) -> bool:
        require(viewer, "member.invite")
        if not PydanticObjectId.is_valid(invitation_id):
            return False
        result = await InvitationDocument.find_one(
            InvitationDocument.id == PydanticObjectId(invitation_id),
            InvitationDocument.organization_id == PydanticObjectId(viewer.organization_id),
            InvitationDocument.accepted_at == None,  # noqa: E711
            InvitationDocument.revoked_at == None,  # noqa: E711
        ).update({"$set": {"revoked_at": _now()}})
        if getattr(result, "modified_count", 0) != 1:
            return False
        await audit_log(settings).append(
            organization_id=viewer.organization_id,
            action="member.invitation_revoked",
            actor_kind="user",
            actor_id=viewer.user_id,
            target_kind="invitation",
            target_id=invitation_id,
        )
        return True

    async def accept(
        self, settings: SubgraphSettings, token: str, name: str, password: str, client: Client
    ) -> Session:
        """Join with the invited address: an existing account proves itself with its
        password; a new one is created with the name and password given."""
        invitation = await InvitationDocument.find_one(
            InvitationDocument.token_hash == token_digest(token)
        )
        now = _now()
        if (
            invitation is None
            or invitation.accepted_at is not None
            or invitation.revoked_at is not None
            or invitation.expires_at.replace(tzinfo=UTC) <= now
        ):
            raise InvitationInvalid()
        user = await UserDocument.find_one(UserDocument.email == invitation.email)
        if user is None:
            problems = {}
            if not name.strip():
                problems["name"] = "must not be empty"
            weaknesses = check_password(password, email=invitation.email, name=name)
            if weaknesses:
                problems["password"] = " ".join(weaknesses)
            if problems:
                raise InvalidInput(problems)
            user = UserDocument(
                email=invitation.email,
                name=name.strip(),
                password_hash=await asyncio.to_thread(_hasher.hash, password),
            )
            await user.insert()
        else:
            try:
                await asyncio.to_thread(_hasher.verify, user.password_hash, password)
            except VerificationError as exc:
                raise InvalidInput({"password": "does not match the invited account"}) from exc
        claimed = await InvitationDocument.find_one(
            InvitationDocument.id == invitation.id,
            InvitationDocument.accepted_at == None,  # noqa: E711 - a MongoDB query
        ).update({"$set": {"accepted_at": now}})
        if getattr(claimed, "modified_count", 0) != 1:
            raise InvitationInvalid()
        await MembershipDocument(
            user_id=user.id, organization_id=invitation.organization_id, role=invitation.role
        ).insert()
        await audit_log(settings).append(
            organization_id=str(invitation.organization_id),
            action="member.joined",
            actor_kind="user",
            actor_id=str(user.id),
            target_kind="invitation",
            target_id=str(invitation.id),
            data={"role": invitation.role},
        )
        return await self._session_in(settings, user, invitation.organization_id, client)

    async def _session_in(
        self,
        settings: SubgraphSettings,
        user: UserDocument,
        org: PydanticObjectId,
        client: Client,
    ) -> Session:
        membership = await MembershipDocument.find_one(
            MembershipDocument.user_id == user.id, MembershipDocument.organization_id == org
        )
        organization = await OrganizationDocument.get(org)
        if membership is None or organization is None:
            raise NotAllowed("act in an organization you are not a member of")
        return await identity_service._signed_in(  # noqa: SLF001 - same domain
            settings, user, organization, membership.role, client
        )

    async def sign_in_with_sso(
        self,
        settings: SubgraphSettings,
        organization_id: PydanticObjectId,
        identity: SsoIdentity,
        client: Client,
    ) -> Session:
        """Just-in-time provisioning: the account and membership are created on first
        sign-in; the role follows the provider's claims on every sign-in (owners stay)."""
        user = await UserDocument.find_one(UserDocument.email == identity.email)
        if user is None:
            unusable = await asyncio.to_thread(_hasher.hash, secrets.token_urlsafe(32))
            user = UserDocument(
                email=identity.email,
                name=identity.name,
                password_hash=unusable,
                email_verified_at=_now(),
            )
            await user.insert()
        membership = await MembershipDocument.find_one(
            MembershipDocument.user_id == user.id,
            MembershipDocument.organization_id == organization_id,
        )
        if membership is None:
            membership = MembershipDocument(
                user_id=user.id, organization_id=organization_id, role=identity.role
            )
            await membership.insert()
        elif membership.role != "owner" and membership.role != identity.role:
            membership.role = identity.role
            await membership.save()
        await audit_log(settings).append(
            organization_id=str(organization_id),
            action="auth.sso.login",
            actor_kind="user",
            actor_id=str(user.id),
            data={"subject": identity.subject, "role": membership.role},
        )
        return await self._session_in(settings, user, organization_id, client)

    async def switch(
        self, settings: SubgraphSettings, viewer: Viewer, organization_id: str, client: Client
    ) -> Session:
        user = await UserDocument.get(PydanticObjectId(viewer.user_id))
        if user is None or "api_key" in viewer.scopes:
            raise NotAllowed("switch organization with this credential")
        return await self._session_in(
            settings, user, _as_object_id(organization_id, "organizationId"), client
        )

    async def memberships(self, viewer: Viewer) -> list[tuple[OrganizationDocument, str]]:
        found = await MembershipDocument.find(
            MembershipDocument.user_id == PydanticObjectId(viewer.user_id)
        ).to_list()
        orgs = {
            o.id: o
            for o in await OrganizationDocument.find(
                {"_id": {"$in": [m.organization_id for m in found]}}
            ).to_list()
        }
        return [(orgs[m.organization_id], m.role) for m in found if m.organization_id in orgs]

    async def members(self, viewer: Viewer) -> list[Member]:
        found = (
            await MembershipDocument.find(
                MembershipDocument.organization_id == PydanticObjectId(viewer.organization_id)
            )
            .sort("created_at")
            .to_list()
        )
        users = {
            u.id: u
            for u in await UserDocument.find({"_id": {"$in": [m.user_id for m in found]}}).to_list()
        }
        return [Member(users[m.user_id], m.role, m.created_at) for m in found if m.user_id in users]

    async def _target(self, viewer: Viewer, user_id: str) -> MembershipDocument:
        membership = await MembershipDocument.find_one(
            MembershipDocument.organization_id == PydanticObjectId(viewer.organization_id),
            MembershipDocument.user_id == _as_object_id(user_id, "userId"),
        )
        if membership is None:
            raise InvalidInput({"userId": "is not a member of this organization"})
        return membership

    async def _keep_an_owner(self, membership: MembershipDocument) -> None:
        if membership.role == "owner":
            owners = await MembershipDocument.find(
                MembershipDocument.organization_id == membership.organization_id,
                MembershipDocument.role == "owner",
            ).count()
            if owners <= 1:
                raise InvalidInput({"userId": "is the last owner; make someone else owner first"})

    async def change_role(
        self, settings: SubgraphSettings, viewer: Viewer, user_id: str, role: str
    ) -> MembershipDocument:
        require(viewer, "member.change_role")
        if role not in ROLES:
            raise InvalidInput({"role": f"must be one of {', '.join(ROLES)}"})
        membership = await self._target(viewer, user_id)
        if viewer.role != "owner" and "owner" in (role, membership.role):
            raise NotAllowed("grant or take the owner role")
        if role != "owner":
            await self._keep_an_owner(membership)
        before, membership.role = membership.role, role
        await membership.save()
        await audit_log(settings).append(
            organization_id=viewer.organization_id,
            action="member.role_changed",
            actor_kind="user",
            actor_id=viewer.user_id,
            target_kind="user",
            target_id=user_id,
            data={"from": before, "to": role},
        )
        return membership

    async def remove(self, settings: SubgraphSettings, viewer: Viewer, user_id: str) -> None:
        require(viewer, "member.remove")
        membership = await self._target(viewer, user_id)
        if viewer.role != "owner" and membership.role == "owner":
            raise NotAllowed("remove an owner")
        await self._keep_an_owner(membership)
        await membership.delete()
        # Their sessions in this organization end now; access tokens die within minutes.
        await SessionDocument.find(
            SessionDocument.user_id == membership.user_id,
            SessionDocument.organization_id == membership.organization_id,
            SessionDocument.revoked_at == None,  # noqa: E711 - a MongoDB query
        ).update({"$set": {"revoked_at": _now(), "revoked_reason": "removed from organization"}})
        await audit_log(settings).append(
            organization_id=viewer.organization_id,
            action="member.removed",
            actor_kind="user",
            actor_id=viewer.user_id,
            target_kind="user",
            target_id=user_id,
        )


members = MemberService()
