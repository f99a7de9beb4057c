"""Accounts and organizations: sign up and log in (the identity issue grows this)."""

from __future__ import annotations

import asyncio
import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from argon2 import PasswordHasher
from argon2.exceptions import VerificationError
from beanie import PydanticObjectId
from pymongo.errors import DuplicateKeyError
from redis.asyncio import Redis

from klikkflow.kit.auth import MFA_ENROLMENT_ONLY, Viewer, sign_access_token
from klikkflow.kit.crypto import token_digest
from klikkflow.kit.errors import InvalidInput
from klikkflow.kit.passwords import check_password
from klikkflow.kit.permissions import require
from klikkflow.kit.ratelimit import Lockout, RateLimiter, ip_key
from klikkflow.kit.settings import AuthSettings
from subgraphs.identity import mfa
from subgraphs.identity.audit import GLOBAL_CHAIN, audit_log
from subgraphs.identity.keys import keys as signing_keys
from subgraphs.identity.models import (
    MembershipDocument,
    MfaChallengeDocument,
    OrganizationDocument,
    RefreshTokenDocument,
    SessionDocument,
    UserDocument,
)
from subgraphs.identity.repository import repository

EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_hasher = PasswordHasher()  # argon2id with the library's current recommended parameters
# Verified against when an e-mail is unknown, so both answers take the same time.
_DUMMY_HASH = _hasher.hash(secrets.token_hex(16))


class InvalidCredentials(Exception):
    pass


class InvalidRefreshToken(Exception):
    """Unknown, expired, revoked or already used (a reuse also revokes its session)."""


@dataclass(frozen=True)
class Session:
    user: UserDocument
    organization: OrganizationDocument
    role: str
    access_token: str
    refresh_token: str
    session_id: str
    expires_in: int


@dataclass(frozen=True)
class Client:
    """Who is signing in from where (kept on the session, shown in the session list)."""

    user_agent: str = ""
    ip: str = ""


def _slugify(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[:48] or "org"


MFA_CHALLENGE_SECONDS = 300
MFA_MAX_ATTEMPTS = 5


@dataclass(frozen=True)
class MfaPending:
    """The password was right; the second factor is still owed (verifyMfa)."""

    challenge: str
    expires_in: int


@dataclass(frozen=True)
class MfaEnrolment:
    secret: str
    uri: str
    qr_svg: str


class TooManyAttempts(Exception):
    def __init__(self, retry_after: float) -> None:
        super().__init__(f"too many attempts: try again in {max(1, round(retry_after))} s")
        self.retry_after = retry_after


LOGIN_LIMIT, LOGIN_WINDOW = 20, 900  # attempts per account per 15 minutes
# Per client address (one client spraying many accounts): action -> (hits, window seconds).
LOGIN_BY_ADDRESS, REFRESH_BY_ADDRESS, RESET_BY_ADDRESS = "login", "refresh", "password-reset"
ADDRESS_LIMITS = {
    LOGIN_BY_ADDRESS: (100, 900),
    REFRESH_BY_ADDRESS: (300, 900),
    RESET_BY_ADDRESS: (30, 3600),
}


class AddressLimits:
    """Rate limits keyed by the client's address (IPv6 by /64), checked before any account
    limit and alike for every e-mail, so a refusal says nothing about which accounts exist."""

    def __init__(self) -> None:
        self._limiters: dict[str, RateLimiter] = {}

    def use_redis(self, redis: Redis) -> None:
        self._limiters = {
            action: RateLimiter(redis, f"address-{action}", limit, window)
            for action, (limit, window) in ADDRESS_LIMITS.items()
        }

    def limiter(self, action: str) -> RateLimiter:
        return self._limiters[action]

    async def hit(self, action: str, address: str) -> None:
        """Count one attempt of ``action`` from ``address``; raise TooManyAttempts past it."""
        limiter = self._limiters.get(action)
        if limiter is None or not address:
            return
        try:
            key = ip_key(address)
        except ValueError:  # not an IP (a test client, a unix socket): limit it as written
            key = address[:100]
        decision = await limiter.hit(key)
        if not decision.allowed:
            raise TooManyAttempts(decision.retry_after)


address_limits = AddressLimits()


class IdentityService:
    def __init__(self) -> None:
        self._limiter: RateLimiter | None = None
        self._lockout: Lockout | None = None

    def use_redis(self, redis: Redis) -> None:
        """Abuse limits live in Redis, shared by every identity process."""
        self._limiter = RateLimiter(redis, "login", LOGIN_LIMIT, LOGIN_WINDOW)
        self._lockout = Lockout(redis, "login", free_failures=5, base_seconds=1, max_seconds=900)

    async def _guard(self, account: str) -> None:
        # Applied to every address alike, registered or not: answers reveal nothing.
        if self._limiter is not None:
            decision = await self._limiter.hit(account)
            if not decision.allowed:
                raise TooManyAttempts(decision.retry_after)
        if self._lockout is not None:
            locked = await self._lockout.check(account)
            if locked > 0:
                raise TooManyAttempts(locked)

    def _check_sign_up(self, email: str, name: str, password: str, org_name: str) -> None:
        problems: dict[str, str] = {}
        if not EMAIL_RE.match(email):
            problems["email"] = "is not an e-mail address"
        if not name.strip():
            problems["name"] = "must not be empty"
        weaknesses = check_password(password, email=email, name=name)
        if weaknesses:
            problems["password"] = " ".join(weaknesses)
        if not org_name.strip():
            problems["organizationName"] = "must not be empty"
        if problems:
            raise InvalidInput(problems)

    async def sign_up(
        self,
        settings: AuthSettings,
        email: str,
        name: str,
        password: str,
        org_name: str,
        client: Client = Client(),  # noqa: B008 - frozen, immutable
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
        signed_in = await self._open_session(settings, user, organization, "owner", client)
        await audit_log(settings).append(
            organization_id=str(organization.id),
            action="auth.signup.succeeded",
            actor_kind="user",
            actor_id=str(user.id),
            target_kind="organization",
            target_id=str(organization.id),
            ip=client.ip or None,
            data={"email": email, "organization_slug": slug, "session_id": signed_in.session_id},
        )
        return signed_in

    async def log_in(
        self,
        settings: AuthSettings,
        email: str,
        password: str,
        client: Client = Client(),  # noqa: B008 - frozen, immutable
    ) -> Session | MfaPending:
        account = email.strip().lower()
        await address_limits.hit(LOGIN_BY_ADDRESS, client.ip)
        await self._guard(account)
        user = await repository.user_by_email(account)
        try:
            await asyncio.to_thread(
                _hasher.verify, user.password_hash if user else _DUMMY_HASH, password
            )
            if user is None:
                raise InvalidCredentials()
        except (VerificationError, InvalidCredentials) as exc:
            if self._lockout is not None:
                await self._lockout.fail(account)
            await self._audit_failed_log_in(settings, account, user, client)
            raise InvalidCredentials() from exc
        if self._lockout is not None:
            await self._lockout.succeed(account)
        membership = await repository.first_membership(user.id)  # type: ignore[arg-type]
        organization = (
            await repository.organization(str(membership.organization_id)) if membership else None
        )
        if membership is None or organization is None:
            await self._audit_failed_log_in(settings, account, user, client)
            raise InvalidCredentials()
        if user.mfa.enabled:
            return await self._challenge(user, membership)
        return await self._signed_in(settings, user, organization, membership.role, client)

    async def _signed_in(
        self,
        settings: AuthSettings,
        user: UserDocument,
        organization: OrganizationDocument,
        role: str,
        client: Client,
        second_factor: bool = False,
    ) -> Session:
        signed_in = await self._open_session(settings, user, organization, role, client)
        await audit_log(settings).append(
            organization_id=str(organization.id),
            action="auth.login.succeeded",
            actor_kind="user",
            actor_id=str(user.id),
            ip=client.ip or None,
            data={"session_id": signed_in.session_id, "mfa": second_factor},
        )
        return signed_in

    # ---- second factor ------------------------------------------------------------

    async def _challenge(self, user: UserDocument, membership: MembershipDocument) -> MfaPending:
        token = f"mfa_{secrets.token_urlsafe(32)}"
        await MfaChallengeDocument(
            token_hash=token_digest(token),
            user_id=user.id,  # type: ignore[arg-type]
            organization_id=membership.organization_id,
            role=membership.role,
            expires_at=datetime.now(UTC) + timedelta(seconds=MFA_CHALLENGE_SECONDS),
        ).insert()
        return MfaPending(challenge=token, expires_in=MFA_CHALLENGE_SECONDS)

    async def verify_mfa(
        self,
        settings: AuthSettings,
        challenge: str,
        code: str,
        client: Client = Client(),  # noqa: B008 - frozen, immutable
    ) -> Session:
        now = datetime.now(UTC)
        pending = await MfaChallengeDocument.find_one(
            MfaChallengeDocument.token_hash == token_digest(challenge)
        )
        if pending is None or pending.expires_at.replace(tzinfo=UTC) < now:
            raise InvalidCredentials()
        if pending.attempts >= MFA_MAX_ATTEMPTS:
            await pending.delete()
            raise TooManyAttempts(0)
        user = await UserDocument.get(pending.user_id)
        organization = await repository.organization(str(pending.organization_id))
        if user is None or organization is None:
            raise InvalidCredentials()
        key = mfa.mfa_key(settings.secret_key)
        try:
            state = await asyncio.to_thread(mfa.check_second_factor, user.mfa, key, code, now)
        except mfa.MfaError as exc:
            await pending.update({"$inc": {"attempts": 1}})
            await audit_log(settings).append(
                organization_id=str(organization.id),
                action="auth.mfa.failed",
                actor_kind="anonymous",
                target_kind="user",
                target_id=str(user.id),
                ip=client.ip or None,
            )
            raise InvalidCredentials() from exc
        if not await self._save_mfa(user, state):  # a concurrent log-in spent the code
            raise InvalidCredentials()
        await pending.delete()
        return await self._signed_in(
            settings, user, organization, pending.role, client, second_factor=True
        )

    async def _save_mfa(self, user: UserDocument, state: mfa.MfaState) -> bool:
        """Write the new MFA state only if nobody changed it since we read it."""
        seen = user.mfa
        unchanged = {
            # `None` also matches a user stored before the field existed.
            "mfa.enabled": {"$in": [seen.enabled, None]} if not seen.enabled else True,
            "mfa.last_step": seen.last_step,
            "mfa.pending_secret_sealed": seen.pending_secret_sealed,
            "mfa.recovery_hashes": {"$size": len(seen.recovery_hashes)}
            if seen.recovery_hashes
            else {"$in": [[], None]},
        }
        result = await UserDocument.find_one(UserDocument.id == user.id, unchanged).update(
            {"$set": {"mfa": state.model_dump()}}
        )
        return getattr(result, "modified_count", 0) == 1

    async def _me(self, viewer: Viewer) -> UserDocument:
        user = await UserDocument.get(PydanticObjectId(viewer.user_id))
        if user is None:
            raise InvalidCredentials()
        return user

    async def start_mfa_enrolment(self, settings: AuthSettings, viewer: Viewer) -> MfaEnrolment:
        user = await self._me(viewer)
        key = mfa.mfa_key(settings.secret_key)
        state, secret, uri = mfa.start_enrolment(user.mfa, key, user.email)
        if not await self._save_mfa(user, state):
            raise mfa.MfaError("MFA settings changed meanwhile; try again")
        return MfaEnrolment(secret=secret, uri=uri, qr_svg=mfa.qr_svg(uri))

    async def confirm_mfa_enrolment(
        self, settings: AuthSettings, viewer: Viewer, code: str
    ) -> list[str]:
        user = await self._me(viewer)
        key = mfa.mfa_key(settings.secret_key)
        state, codes = await asyncio.to_thread(
            mfa.confirm_enrolment, user.mfa, key, code, datetime.now(UTC)
        )
        if not await self._save_mfa(user, state):
            raise mfa.InvalidCode()
        await self._audit_mfa(settings, viewer, "mfa.enabled")
        return codes

    async def disable_mfa(self, settings: AuthSettings, viewer: Viewer, code: str) -> None:
        """Turning MFA off takes a valid second factor, not just a stolen access token."""
        user = await self._me(viewer)
        key = mfa.mfa_key(settings.secret_key)
        await asyncio.to_thread(mfa.check_second_factor, user.mfa, key, code, datetime.now(UTC))
        if not await self._save_mfa(user, mfa.disable(user.mfa)):
            raise mfa.InvalidCode()
        await self._audit_mfa(settings, viewer, "mfa.disabled")

    async def set_require_mfa(self, settings: AuthSettings, viewer: Viewer, required: bool) -> None:
        require(viewer, "organization.security")
        await OrganizationDocument.find_one(
            OrganizationDocument.id == PydanticObjectId(viewer.organization_id)
        ).update({"$set": {"require_mfa": required}})
        await audit_log(settings).append(
            organization_id=viewer.organization_id,
            action="organization.security_changed",
            actor_kind="user",
            actor_id=viewer.user_id,
            target_kind="organization",
            target_id=viewer.organization_id,
            data={"require_mfa": required},
        )

    async def _audit_mfa(self, settings: AuthSettings, viewer: Viewer, action: str) -> None:
        await audit_log(settings).append(
            organization_id=viewer.organization_id,
            action=action,
            actor_kind="user",
            actor_id=viewer.user_id,
            target_kind="user",
            target_id=viewer.user_id,
        )

    async def _audit_failed_log_in(
        self, settings: AuthSettings, account: str, user: UserDocument | None, client: Client
    ) -> None:
        # A known user's organization sees attempts on its member; unknown e-mails go to
        # the global chain. Never the password: only the e-mail that was typed.
        membership = await repository.first_membership(user.id) if user and user.id else None
        await audit_log(settings).append(
            organization_id=str(membership.organization_id) if membership else GLOBAL_CHAIN,
            action="auth.login.failed",
            actor_kind="anonymous",
            target_kind="user" if user else None,
            target_id=str(user.id) if user else None,
            ip=client.ip or None,
            data={"email": account[:320]},
        )

    async def _open_session(
        self,
        settings: AuthSettings,
        user: UserDocument,
        org: OrganizationDocument,
        role: str,
        client: Client,
    ) -> Session:
        now = datetime.now(UTC)
        session = SessionDocument(
            user_id=user.id,  # type: ignore[arg-type]
            organization_id=org.id,  # type: ignore[arg-type]
            expires_at=now + timedelta(seconds=settings.refresh_token_ttl_seconds),
            user_agent=client.user_agent[:300],
            ip=client.ip,
        )
        await session.insert()
        return await self._tokens(settings, user, org, role, session)

    async def _tokens(
        self,
        settings: AuthSettings,
        user: UserDocument,
        org: OrganizationDocument,
        role: str,
        session: SessionDocument,
    ) -> Session:
        refresh = f"rt_{secrets.token_urlsafe(32)}"
        await RefreshTokenDocument(
            token_hash=token_digest(refresh),
            session_id=session.id,  # type: ignore[arg-type]
            expires_at=session.expires_at,
        ).insert()
        access = sign_access_token(
            await signing_keys.signing_key(settings),
            settings,
            user_id=str(user.id),
            organization_id=str(org.id),
            role=role,
            session_id=str(session.id),
            scopes=frozenset({MFA_ENROLMENT_ONLY})
            if org.require_mfa and not user.mfa.enabled
            else frozenset(),
        )
        return Session(
            user, org, role, access, refresh, str(session.id), settings.access_token_ttl_seconds
        )

    async def refresh(
        self,
        settings: AuthSettings,
        refresh_token: str,
        client: Client = Client(),  # noqa: B008 - frozen, immutable
    ) -> Session:
        """Trade a refresh token for a new pair. Each token works once: presenting a spent
        one means it was stolen (or replayed), so its whole session is revoked."""
        await address_limits.hit(REFRESH_BY_ADDRESS, client.ip)
        now = datetime.now(UTC)
        stored = await RefreshTokenDocument.find_one(
            RefreshTokenDocument.token_hash == token_digest(refresh_token)
        )
        if stored is None or stored.expires_at.replace(tzinfo=UTC) < now:
            raise InvalidRefreshToken()
        session = await SessionDocument.get(stored.session_id)
        if session is None or session.revoked_at is not None:
            raise InvalidRefreshToken()
        claimed = await RefreshTokenDocument.find_one(
            RefreshTokenDocument.id == stored.id,
            RefreshTokenDocument.used_at == None,  # noqa: E711
        ).update({"$set": {"used_at": now}})
        if getattr(claimed, "modified_count", 0) != 1:
            await self._revoke(session, "refresh token reused")
            raise InvalidRefreshToken()
        user = await UserDocument.get(session.user_id)
        membership = await MembershipDocument.find_one(
            MembershipDocument.user_id == session.user_id,
            MembershipDocument.organization_id == session.organization_id,
        )
        org = await repository.organization(str(session.organization_id))
        if user is None or membership is None or org is None:  # removed meanwhile
            await self._revoke(session, "membership ended")
            raise InvalidRefreshToken()
        session.last_used_at = now
        await session.save()
        return await self._tokens(settings, user, org, membership.role, session)

    async def _revoke(self, session: SessionDocument, reason: str) -> None:
        if session.revoked_at is None:
            session.revoked_at, session.revoked_reason = datetime.now(UTC), reason
            await session.save()

    async def sessions(self, viewer: Viewer) -> list[SessionDocument]:
        return (
            await SessionDocument.find(
                SessionDocument.user_id == PydanticObjectId(viewer.user_id),
                SessionDocument.revoked_at == None,  # noqa: E711
                SessionDocument.expires_at > datetime.now(UTC),
            )
            .sort("-last_used_at")
            .to_list()
        )

    async def revoke_session(self, viewer: Viewer, session_id: str, reason: str) -> bool:
        """Revoke one of the viewer's own sessions; False when there is no such session."""
        if not PydanticObjectId.is_valid(session_id):
            return False
        session = await SessionDocument.get(PydanticObjectId(session_id))
        if session is None or str(session.user_id) != viewer.user_id:
            return False
        await self._revoke(session, reason)
        return True

    async def users(self, viewer: Viewer, user_ids: list[str]) -> list[UserDocument | None]:
        found = await repository.users_in_organization(viewer.organization_id, user_ids)
        return [found.get(i) for i in user_ids]

    async def organization_by_slug(self, slug: str) -> OrganizationDocument | None:
        return await OrganizationDocument.find_one(OrganizationDocument.slug == slug)

    async def organization(
        self, viewer: Viewer, organization_id: str
    ) -> OrganizationDocument | None:
        if organization_id != viewer.organization_id:
            return None
        return await repository.organization(organization_id)


identity = IdentityService()
