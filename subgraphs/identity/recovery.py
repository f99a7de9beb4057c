"""Password reset and e-mail verification: single-use, expiring links sent by mail.

Asking for a reset answers the same whether or not the address has an account, and is
rate-limited per address, so it reveals nothing and cannot flood an inbox."""

from __future__ import annotations

import asyncio
import secrets
from datetime import UTC, datetime, timedelta

from klikkflow.kit.crypto import token_digest
from klikkflow.kit.errors import InvalidInput
from klikkflow.kit.mail import send_mail
from klikkflow.kit.passwords import check_password
from klikkflow.kit.ratelimit import RateLimiter
from klikkflow.kit.settings import SubgraphSettings
from subgraphs.identity.audit import audit_log
from subgraphs.identity.models import (
    EmailTokenDocument,
    MembershipDocument,
    SessionDocument,
    UserDocument,
)
from subgraphs.identity.service import RESET_BY_ADDRESS, _hasher, address_limits

RESET = "password_reset"
VERIFY = "email_verification"
LIFETIME = {RESET: timedelta(hours=1), VERIFY: timedelta(days=3)}
RESETS_PER_HOUR = 3


class LinkInvalid(Exception):
    """Unknown, expired or already used: one answer for all."""


def _now() -> datetime:
    return datetime.now(UTC)


class RecoveryService:
    def __init__(self) -> None:
        self._limiter: RateLimiter | None = None

    def use_limiter(self, limiter: RateLimiter) -> None:
        self._limiter = limiter

    async def _issue(self, user: UserDocument, purpose: str) -> str:
        token = f"{'pr' if purpose == RESET else 'ev'}_{secrets.token_urlsafe(32)}"
        await EmailTokenDocument(
            purpose=purpose,
            token_hash=token_digest(token),
            user_id=user.id,  # type: ignore[arg-type]
            email=user.email,
            expires_at=_now() + LIFETIME[purpose],
        ).insert()
        return token

    async def send_verification(self, settings: SubgraphSettings, user: UserDocument) -> None:
        token = await self._issue(user, VERIFY)
        link = f"{settings.public_url.rstrip('/')}/verify-email/{token}"
        await send_mail(
            settings,
            user.email,
            "Confirm your e-mail address for KlikkFlow",
            f"Confirm this address: {link}\n\nThe link works for 3 days.\n",
        )

    async def request_reset(self, settings: SubgraphSettings, email: str, client_ip: str) -> None:
        """Raises TooManyAttempts past the client address's limit (which says nothing about
        the e-mail); past the e-mail's own limit it quietly sends nothing."""
        await address_limits.hit(RESET_BY_ADDRESS, client_ip)
        address = email.strip().lower()
        if self._limiter is not None and not (await self._limiter.hit(address)).allowed:
            return  # quietly: the answer must not differ
        user = await UserDocument.find_one(UserDocument.email == address)
        if user is None:
            return
        token = await self._issue(user, RESET)
        link = f"{settings.public_url.rstrip('/')}/reset-password/{token}"
        await send_mail(
            settings,
            user.email,
            "Reset your KlikkFlow password",
            f"Choose a new password: {link}\n\nThe link works for one hour. "
            "If you did not ask for it, ignore this mail.\n",
        )

    async def _consume(self, token: str, purpose: str) -> UserDocument:
        stored = await EmailTokenDocument.find_one(
            EmailTokenDocument.token_hash == token_digest(token),
            EmailTokenDocument.purpose == purpose,
        )
        now = _now()
        if (
            stored is None
            or stored.used_at is not None
            or stored.expires_at.replace(tzinfo=UTC) <= now
        ):
            raise LinkInvalid()
        claimed = await EmailTokenDocument.find_one(
            EmailTokenDocument.id == stored.id,
            EmailTokenDocument.used_at == None,  # noqa: E711 - a MongoDB query
        ).update({"$set": {"used_at": now}})
        user = await UserDocument.get(stored.user_id)
        if getattr(claimed, "modified_count", 0) != 1 or user is None or user.email != stored.email:
            raise LinkInvalid()
        return user

    async def reset_password(self, settings: SubgraphSettings, token: str, password: str) -> None:
        stored = await EmailTokenDocument.find_one(
            EmailTokenDocument.token_hash == token_digest(token)
        )
        if stored is not None:  # check strength before spending the link
            weaknesses = check_password(password, email=stored.email)
            if weaknesses:
                raise InvalidInput({"password": " ".join(weaknesses)})
        user = await self._consume(token, RESET)
        user.password_hash = await asyncio.to_thread(_hasher.hash, password)
        user.email_verified_at = user.email_verified_at or _now()  # the mail reached them
        await user.save()
        # Whoever knew the old password is signed out everywhere.
        await SessionDocument.find(
            SessionDocument.user_id == user.id,
            SessionDocument.revoked_at == None,  # noqa: E711 - a MongoDB query
        ).update({"$set": {"revoked_at": _now(), "revoked_reason": "password reset"}})
        for membership in await MembershipDocument.find(
            MembershipDocument.user_id == user.id
        ).to_list():
            await audit_log(settings).append(
                organization_id=str(membership.organization_id),
                action="auth.password_reset",
                actor_kind="user",
                actor_id=str(user.id),
                target_kind="user",
                target_id=str(user.id),
            )

    async def verify_email(self, token: str) -> UserDocument:
        user = await self._consume(token, VERIFY)
        user.email_verified_at = _now()
        await user.save()
        return user


recovery = RecoveryService()
