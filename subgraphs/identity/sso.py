"""Single sign-on with OpenID Connect (authorization code + PKCE, via authlib).

Each organization may configure one OIDC provider. A log-in starts here (state, nonce and
PKCE verifier kept server-side for ten minutes), the browser signs in at the provider,
and the code comes back to `complete`: the ID token is verified against the provider's
keys (issuer, audience, expiry, nonce), the user is provisioned just in time, and the
role is mapped from a claim on every log-in."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Protocol

import httpx
from authlib.integrations.httpx_client import AsyncOAuth2Client
from beanie import Document, Indexed, PydanticObjectId
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet
from pydantic import Field
from pymongo import ASCENDING, IndexModel

from klikkflow.kit.auth import ROLES, Viewer
from klikkflow.kit.crypto import derive_key, seal, token_digest, unseal
from klikkflow.kit.errors import InvalidInput
from klikkflow.kit.permissions import require
from klikkflow.kit.settings import AuthSettings
from subgraphs.identity.audit import audit_log

STATE_MINUTES = 10
_SEAL_CONTEXT = b"klikkflow-oidc-client-secret-v1"


def _now() -> datetime:
    return datetime.now(UTC)


class OidcConfigDocument(Document):
    organization_id: Annotated[PydanticObjectId, Indexed(unique=True)]
    issuer: str
    client_id: str
    client_secret_sealed: str
    role_claim: str = "groups"
    role_mapping: dict[str, str] = Field(default_factory=dict)  # claim value -> role
    default_role: str = "viewer"
    allowed_domains: list[str] = Field(default_factory=list)
    updated_at: datetime = Field(default_factory=_now)

    class Settings:
        name = "sso_oidc_configs"


class OidcStateDocument(Document):
    state_hash: Annotated[str, Indexed(unique=True)]
    organization_id: PydanticObjectId
    nonce: str
    code_verifier: str
    redirect_uri: str
    expires_at: datetime

    class Settings:
        name = "sso_oidc_states"
        indexes = [IndexModel([("expires_at", ASCENDING)], expireAfterSeconds=0)]


class SsoFailed(Exception):
    """The sign-in could not be completed; the message is safe to show."""


@dataclass(frozen=True)
class SsoIdentity:
    email: str
    name: str
    role: str
    subject: str


class RoleMapping(Protocol):
    role_mapping: dict[str, str]
    default_role: str
    allowed_domains: list[str]


def role_mapping_problems(role_mapping: dict[str, str], default_role: str) -> dict[str, str]:
    """What is wrong with a provider's role mapping (shared by OIDC and SAML)."""
    unknown = [r for r in [*role_mapping.values(), default_role] if r not in ROLES]
    if unknown:
        return {"roleMapping": f"unknown roles: {', '.join(unknown)}"}
    if "owner" in role_mapping.values() or default_role == "owner":
        return {"roleMapping": "single sign-on cannot grant owner"}
    return {}


def email_domains(domains: list[str]) -> list[str]:
    return [d.lower().lstrip("@") for d in domains]


def map_identity(
    config: RoleMapping, *, email: Any, name: Any, groups: Any, subject: Any
) -> SsoIdentity:
    """What an identity provider asserted, turned into who signs in and with which role
    (the strongest any of their groups maps to). Shared by OIDC and SAML."""
    address = str(email or "").strip().lower()
    if "@" not in address:
        raise SsoFailed("the provider did not vouch for an e-mail address")
    domain = address.rpartition("@")[2]
    if config.allowed_domains and domain not in config.allowed_domains:
        raise SsoFailed(f"addresses at {domain} may not sign in to this organization")
    values = groups if isinstance(groups, list) else ([] if groups is None else [groups])
    mapped = [config.role_mapping[v] for v in map(str, values) if v in config.role_mapping]
    role = min(mapped, key=ROLES.index) if mapped else config.default_role
    return SsoIdentity(email=address, name=str(name or address), role=role, subject=str(subject))


def _secret_key(settings: AuthSettings) -> bytes:
    return derive_key(settings.secret_key, "oidc client secrets")


async def _discover(issuer: str) -> dict[str, Any]:
    async with httpx.AsyncClient(timeout=10, trust_env=False) as http:
        response = await http.get(issuer.rstrip("/") + "/.well-known/openid-configuration")
        response.raise_for_status()
        metadata: dict[str, Any] = response.json()
    if metadata.get("issuer") != issuer.rstrip("/"):
        raise SsoFailed("the provider's metadata names another issuer")
    return metadata


class OidcService:
    async def configure(
        self,
        settings: AuthSettings,
        viewer: Viewer,
        *,
        issuer: str,
        client_id: str,
        client_secret: str,
        role_claim: str,
        role_mapping: dict[str, str],
        default_role: str,
        allowed_domains: list[str],
    ) -> OidcConfigDocument:
        require(viewer, "sso.configure")
        problems = {}
        if not issuer.startswith(("https://", "http://")):
            problems["issuer"] = "must be an http(s) URL"
        if not client_id or not client_secret:
            problems["clientId"] = "client id and secret are required"
        problems.update(role_mapping_problems(role_mapping, default_role))
        if problems:
            raise InvalidInput(problems)
        org = PydanticObjectId(viewer.organization_id)
        config = await OidcConfigDocument.find_one(OidcConfigDocument.organization_id == org)
        config = config or OidcConfigDocument(
            organization_id=org, issuer="", client_id="", client_secret_sealed=""
        )
        config.issuer, config.client_id = issuer.rstrip("/"), client_id
        config.client_secret_sealed = seal(
            client_secret.encode(), _secret_key(settings), _SEAL_CONTEXT
        )
        config.role_claim, config.role_mapping = role_claim, role_mapping
        config.default_role = default_role
        config.allowed_domains = email_domains(allowed_domains)
        config.updated_at = _now()
        await config.save()
        await audit_log(settings).append(
            organization_id=viewer.organization_id,
            action="sso.config_changed",
            actor_kind="user",
            actor_id=viewer.user_id,
            target_kind="organization",
            target_id=viewer.organization_id,
            data={
                "issuer": config.issuer,
                "client_id": client_id,
                "role_claim": role_claim,
                "allowed_domains": config.allowed_domains,
            },
        )
        return config

    async def current(self, viewer: Viewer) -> OidcConfigDocument | None:
        """The organization's OpenID Connect settings, for those who may change them."""
        require(viewer, "sso.configure")
        org = PydanticObjectId(viewer.organization_id)
        return await OidcConfigDocument.find_one(OidcConfigDocument.organization_id == org)

    async def start(self, organization_id: PydanticObjectId, redirect_uri: str) -> str:
        config = await OidcConfigDocument.find_one(
            OidcConfigDocument.organization_id == organization_id
        )
        if config is None:
            raise SsoFailed("single sign-on is not set up for this organization")
        metadata = await _discover(config.issuer)
        state, nonce = secrets.token_urlsafe(32), secrets.token_urlsafe(24)
        verifier = secrets.token_urlsafe(64)
        client = AsyncOAuth2Client(
            client_id=config.client_id,
            scope="openid email profile groups",
            redirect_uri=redirect_uri,
            code_challenge_method="S256",
        )
        url, _ = client.create_authorization_url(
            metadata["authorization_endpoint"], state=state, nonce=nonce, code_verifier=verifier
        )
        await OidcStateDocument(
            state_hash=token_digest(state),
            organization_id=organization_id,
            nonce=nonce,
            code_verifier=verifier,
            redirect_uri=redirect_uri,
            expires_at=_now() + timedelta(minutes=STATE_MINUTES),
        ).insert()
        return str(url)

    async def complete(
        self, settings: AuthSettings, state: str, code: str
    ) -> tuple[PydanticObjectId, SsoIdentity]:
        pending = await OidcStateDocument.find_one(
            OidcStateDocument.state_hash == token_digest(state)
        )
        if pending is None or pending.expires_at.replace(tzinfo=UTC) <= _now():
            raise SsoFailed("the sign-in expired or was not started here; start again")
        await pending.delete()  # a state works once
        config = await OidcConfigDocument.find_one(
            OidcConfigDocument.organization_id == pending.organization_id
        )
        if config is None:
            raise SsoFailed("single sign-on is not set up for this organization")
        metadata = await _discover(config.issuer)
        secret = unseal(config.client_secret_sealed, _secret_key(settings), _SEAL_CONTEXT)
        async with AsyncOAuth2Client(
            client_id=config.client_id,
            client_secret=secret.decode(),
            token_endpoint_auth_method="client_secret_post",
            redirect_uri=pending.redirect_uri,
        ) as client:
            try:
                token = await client.fetch_token(
                    metadata["token_endpoint"],
                    code=code,
                    code_verifier=pending.code_verifier,
                    grant_type="authorization_code",
                )
            except Exception as exc:  # authlib raises several types for refusals
                raise SsoFailed(f"the provider refused the code: {exc}") from exc
        claims = await self._verify_id_token(config, metadata, token.get("id_token"), pending.nonce)
        claims.update(await self._userinfo(metadata, token, claims["sub"]))
        return pending.organization_id, self._identity(config, claims)

    async def _userinfo(
        self, metadata: dict[str, Any], token: dict[str, Any], subject: str
    ) -> dict[str, Any]:
        """Providers may keep e-mail and groups out of the ID token (oidc-provider does):
        ask the userinfo endpoint, and accept it only for the same subject."""
        endpoint = metadata.get("userinfo_endpoint")
        if not endpoint or "access_token" not in token:
            return {}
        async with httpx.AsyncClient(timeout=10, trust_env=False) as http:
            response = await http.get(
                endpoint, headers={"authorization": f"Bearer {token['access_token']}"}
            )
        if response.status_code != 200:
            raise SsoFailed(f"the provider's userinfo answered {response.status_code}")
        info: dict[str, Any] = response.json()
        if info.get("sub") != subject:
            raise SsoFailed("the provider's userinfo is about someone else")
        return info

    async def _verify_id_token(
        self, config: OidcConfigDocument, metadata: dict[str, Any], id_token: Any, nonce: str
    ) -> dict[str, Any]:
        if not isinstance(id_token, str):
            raise SsoFailed("the provider sent no ID token")
        async with httpx.AsyncClient(timeout=10, trust_env=False) as http:
            keys = KeySet.import_key_set((await http.get(metadata["jwks_uri"])).json())
        try:
            decoded = jwt.decode(id_token, keys, algorithms=["RS256", "ES256", "PS256", "EdDSA"])
            jwt.JWTClaimsRegistry(
                iss={"essential": True, "value": config.issuer},
                aud={"essential": True, "value": config.client_id},
                exp={"essential": True},
                nonce={"essential": True, "value": nonce},
            ).validate(decoded.claims)
        except (JoseError, ValueError) as exc:
            raise SsoFailed(f"the ID token is not valid: {exc}") from exc
        return dict(decoded.claims)

    def _identity(self, config: OidcConfigDocument, claims: dict[str, Any]) -> SsoIdentity:
        if claims.get("email_verified") is False:
            raise SsoFailed("the provider did not vouch for an e-mail address")
        return map_identity(
            config,
            email=claims.get("email"),
            name=claims.get("name"),
            groups=claims.get(config.role_claim),
            subject=claims.get("sub"),
        )


oidc = OidcService()
