"""Access tokens and the Viewer every subgraph builds from `Authorization`.

The identity subgraph signs short-lived ES256 JWTs with keys it publishes at
`/.well-known/jwks.json`; every subgraph verifies them against that key set (cached,
refetched when a token names a key it has not seen, so rotation needs no restart).
Old keys stay published until the tokens they signed have expired.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import ECKey, KeySet

from klikkflow.kit.crypto import token_digest
from klikkflow.kit.settings import AuthSettings

log = logging.getLogger("klikkflow.auth")

ROLES = ("owner", "admin", "editor", "viewer")
# A token that may only enrol in MFA: its organization requires MFA, the user has none yet.
MFA_ENROLMENT_ONLY = "mfa_enrolment"
ALGORITHM = "ES256"
JWKS_PATH = "/.well-known/jwks.json"
INTROSPECT_PATH = "/internal/api-keys/introspect"
REFUSAL_PATH = "/internal/audit/token-refused"
API_KEY_PREFIX = "kf_"
API_KEY_CACHE_SECONDS = 30.0
# Clients may name the organization they mean to act in; a token for another one is refused.
ORGANIZATION_HEADER = "x-klikkflow-organization"


@dataclass(frozen=True)
class Viewer:
    user_id: str
    organization_id: str
    role: str
    scopes: frozenset[str] = field(default_factory=frozenset)
    session_id: str | None = None


class InvalidToken(Exception):
    pass


def new_signing_key(kid: str | None = None) -> ECKey:
    kid = kid or f"k{int(time.time())}-{secrets.token_hex(4)}"
    return ECKey.generate_key(
        "P-256", parameters={"kid": kid, "use": "sig", "alg": ALGORITHM}, private=True
    )


def sign_access_token(
    key: ECKey,
    settings: AuthSettings,
    *,
    user_id: str,
    organization_id: str,
    role: str,
    session_id: str | None = None,
    scopes: frozenset[str] = frozenset(),
    now: int | None = None,
) -> str:
    now = int(time.time()) if now is None else now
    claims = {
        "iss": settings.token_issuer,
        "aud": settings.token_audience,
        "sub": user_id,
        "org": organization_id,
        "role": role,
        "sid": session_id,
        "scp": sorted(scopes),
        "iat": now,
        "nbf": now - 5,
        "exp": now + settings.access_token_ttl_seconds,
        "jti": secrets.token_urlsafe(12),
    }
    return jwt.encode({"alg": ALGORITHM, "kid": key.kid}, claims, key, algorithms=[ALGORITHM])


def _viewer(claims: Mapping[str, Any]) -> Viewer:
    role = claims.get("role")
    if role not in ROLES or not isinstance(claims.get("org"), str):
        raise InvalidToken("token lacks an organization or a known role")
    sid = claims.get("sid")
    scopes = claims.get("scp") or []
    return Viewer(
        user_id=claims["sub"],
        organization_id=claims["org"],
        role=role,
        session_id=sid if isinstance(sid, str) else None,
        scopes=frozenset(str(s) for s in scopes) if isinstance(scopes, list) else frozenset(),
    )


def decode_access_token(keys: KeySet, settings: AuthSettings, token: str) -> Viewer:
    try:
        decoded = jwt.decode(token, keys, algorithms=[ALGORITHM])
        jwt.JWTClaimsRegistry(
            iss={"essential": True, "value": settings.token_issuer},
            aud={"essential": True, "value": settings.token_audience},
            sub={"essential": True},
            exp={"essential": True},
        ).validate(decoded.claims)
    except (JoseError, ValueError) as exc:
        raise InvalidToken(str(exc) or type(exc).__name__) from exc
    return _viewer(decoded.claims)


class JwksVerifier:
    """Verifies access tokens against the identity subgraph's published keys."""

    def __init__(
        self, settings: AuthSettings, *, refresh_after: float = 300.0, min_refetch: float = 2.0
    ) -> None:
        self.settings = settings
        self.refresh_after, self.min_refetch = refresh_after, min_refetch
        self._keys: KeySet | None = None
        self._fetched_at = 0.0
        self._lock = asyncio.Lock()
        self._api_keys: dict[str, tuple[float, Viewer | None]] = {}
        self._reports: set[asyncio.Task[None]] = set()

    async def _fetch(self) -> KeySet:
        async with httpx.AsyncClient(timeout=5, trust_env=False) as client:
            response = await client.get(self.settings.jwks_url)
            response.raise_for_status()
            return KeySet.import_key_set(response.json())

    async def keys(self, *, force: bool = False) -> KeySet:
        async with self._lock:
            age = time.monotonic() - self._fetched_at
            stale = self._keys is None or age > self.refresh_after
            if stale or (force and age > self.min_refetch):
                try:
                    self._keys = await self._fetch()
                    self._fetched_at = time.monotonic()
                except (httpx.HTTPError, ValueError) as exc:
                    if self._keys is None:
                        raise InvalidToken(f"signing keys unavailable: {exc}") from exc
            assert self._keys is not None
            return self._keys

    async def verify(self, token: str) -> Viewer:
        if token.startswith(API_KEY_PREFIX):
            return await self._api_key(token)
        keys = await self.keys()
        kid = _header_kid(token)
        if kid is not None and kid not in {k.kid for k in keys.keys}:
            keys = await self.keys(force=True)  # a key rotated in since we last looked
        return decode_access_token(keys, self.settings, token)

    def report_refusal(self, reason: str, service: str) -> None:
        """Tell the identity subgraph (fire and forget) that a token was refused here, so
        the attempt lands in the audit log. Never delays or fails the request."""
        task = asyncio.get_running_loop().create_task(self._report(reason, service))
        self._reports.add(task)
        task.add_done_callback(self._reports.discard)

    async def _report(self, reason: str, service: str) -> None:
        try:
            async with httpx.AsyncClient(timeout=5, trust_env=False) as client:
                await client.post(
                    self.settings.token_refusal_url,
                    json={"reason": reason[:300], "service": service},
                )
        except httpx.HTTPError:
            log.warning("could not report a refused token to the audit log")

    async def _api_key(self, key: str) -> Viewer:
        """API keys are opaque: the identity subgraph says whom they act for. Answers are
        cached briefly, so a revoked key stops working within API_KEY_CACHE_SECONDS."""
        digest = token_digest(key)
        cached = self._api_keys.get(digest)
        if cached is not None and time.monotonic() - cached[0] < API_KEY_CACHE_SECONDS:
            if cached[1] is None:
                raise InvalidToken("unknown, expired or revoked API key")
            return cached[1]
        try:
            async with httpx.AsyncClient(timeout=5, trust_env=False) as client:
                response = await client.post(
                    self.settings.api_key_introspection_url, json={"key": key}
                )
                response.raise_for_status()
                answer = response.json()
        except (httpx.HTTPError, ValueError) as exc:
            raise InvalidToken(f"API keys cannot be checked now: {exc}") from exc
        viewer = None
        if answer.get("active"):
            viewer = Viewer(
                user_id=answer["user_id"],
                organization_id=answer["organization_id"],
                role=answer["role"],
                scopes=frozenset({"api_key"}),
            )
        if len(self._api_keys) > 10_000:
            self._api_keys.clear()
        self._api_keys[digest] = (time.monotonic(), viewer)
        if viewer is None:
            raise InvalidToken("unknown, expired or revoked API key")
        return viewer


def _header_kid(token: str) -> str | None:
    try:
        head = token.split(".", 1)[0]
        header = json.loads(base64.urlsafe_b64decode(head + "=" * (-len(head) % 4)))
    except (ValueError, UnicodeDecodeError):
        return None
    kid = header.get("kid") if isinstance(header, dict) else None
    return kid if isinstance(kid, str) else None


def check_organization(viewer: Viewer, requested: str | None) -> None:
    """Refuse a token used for an organization other than its own (``requested`` comes
    from the X-KlikkFlow-Organization header); no header means the token's own."""
    if requested is not None and requested != viewer.organization_id:
        raise InvalidToken(f"it is not valid for organization {requested[:64]!r}")


def header(headers: Mapping[str, Any], name: str) -> str | None:
    """A header's value, looked up case-insensitively; None when absent or not a string."""
    for key, value in headers.items():
        if key.lower() == name and isinstance(value, str):
            return value
    return None


def find_organization(*sources: Mapping[str, Any] | None) -> str | None:
    """The requested organization, looked up in the same places as the token."""
    for headers in sources:
        if not headers:
            continue
        value = header(headers, ORGANIZATION_HEADER)
        if value is None and isinstance(headers.get("headers"), Mapping):
            value = header(headers["headers"], ORGANIZATION_HEADER)
        if value is not None and value.strip():  # an empty header names nothing
            return value.strip()
    return None


def bearer_token(headers: Mapping[str, Any]) -> str | None:
    """The token of an `Authorization: Bearer ...` header, looked up case-insensitively."""
    value = header(headers, "authorization")
    if value is not None:
        scheme, _, token = value.partition(" ")
        if scheme.lower() == "bearer" and token.strip():
            return token.strip()
    return None


def find_token(*sources: Mapping[str, Any] | None) -> str | None:
    """The first bearer token in the given header maps (HTTP headers, then a WebSocket
    connection_init payload, which may nest them under "headers")."""
    for headers in sources:
        if not headers:
            continue
        token = bearer_token(headers)
        if token is None and isinstance(headers.get("headers"), Mapping):
            token = bearer_token(headers["headers"])
        if token is not None:
            return token
    return None
