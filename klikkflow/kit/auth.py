"""Access tokens and the Viewer every subgraph builds from `Authorization`.

Tokens are HS256 JWTs signed with KLIKKFLOW_SECRET_KEY for now; the identity issue
replaces the key with a JWKS-published key set without changing this interface.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import OctKey

from klikkflow.kit.settings import AuthSettings

ROLES = ("owner", "admin", "editor", "viewer")


@dataclass(frozen=True)
class Viewer:
    user_id: str
    organization_id: str
    role: str
    scopes: frozenset[str] = field(default_factory=frozenset)


class InvalidToken(Exception):
    pass


def _key(settings: AuthSettings) -> OctKey:
    return OctKey.import_key(settings.secret_key.encode())


def issue_access_token(
    settings: AuthSettings, user_id: str, organization_id: str, role: str
) -> str:
    now = int(time.time())
    claims = {
        "iss": settings.token_issuer,
        "sub": user_id,
        "org": organization_id,
        "role": role,
        "iat": now,
        "exp": now + settings.access_token_ttl_seconds,
    }
    return jwt.encode({"alg": "HS256"}, claims, _key(settings))


def verify_access_token(settings: AuthSettings, token: str) -> Viewer:
    try:
        decoded = jwt.decode(token, _key(settings), algorithms=["HS256"])
        jwt.JWTClaimsRegistry(
            iss={"essential": True, "value": settings.token_issuer},
            sub={"essential": True},
            exp={"essential": True},
        ).validate(decoded.claims)
    except (JoseError, ValueError) as exc:
        raise InvalidToken(str(exc)) from exc
    claims = decoded.claims
    role = claims.get("role")
    if role not in ROLES or not isinstance(claims.get("org"), str):
        raise InvalidToken("token lacks an organization or a known role")
    return Viewer(user_id=claims["sub"], organization_id=claims["org"], role=role)


def bearer_token(headers: Mapping[str, Any]) -> str | None:
    """The token of an `Authorization: Bearer ...` header, looked up case-insensitively."""
    for name, value in headers.items():
        if name.lower() == "authorization" and isinstance(value, str):
            scheme, _, token = value.partition(" ")
            if scheme.lower() == "bearer" and token.strip():
                return token.strip()
    return None


def viewer_from_headers(
    settings: AuthSettings, *sources: Mapping[str, Any] | None
) -> Viewer | None:
    """The first bearer token found in the given header maps; None when there is none.

    A present but invalid token raises InvalidToken: a bad credential is not anonymous.
    """
    for headers in sources:
        if not headers:
            continue
        token = bearer_token(headers)
        if token is None and isinstance(headers.get("headers"), Mapping):
            token = bearer_token(headers["headers"])
        if token is not None:
            return verify_access_token(settings, token)
    return None
