"""SAML 2.0 single sign-on: KlikkFlow is the service provider (pysaml2, xmlsec1).

Each organization may configure one identity provider by entity id, SSO URL and signing
certificate. A log-in sends an AuthnRequest (HTTP-Redirect); the provider posts back a
Response that must be signed by that certificate, addressed to us, in response to a
request we made (each request id works once), and within its validity window."""

from __future__ import annotations

import asyncio
import base64
import shutil
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any
from xml.sax.saxutils import escape, quoteattr

from beanie import Document, Indexed, PydanticObjectId
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from pydantic import Field
from pymongo import ASCENDING, IndexModel
from saml2 import BINDING_HTTP_POST, BINDING_HTTP_REDIRECT
from saml2.client import Saml2Client
from saml2.config import Config

from klikkflow.kit.auth import Viewer
from klikkflow.kit.errors import InvalidInput
from klikkflow.kit.permissions import require
from klikkflow.kit.settings import SubgraphSettings
from subgraphs.identity.audit import audit_log
from subgraphs.identity.sso import (
    SsoFailed,
    SsoIdentity,
    email_domains,
    map_identity,
    role_mapping_problems,
)

REQUEST_MINUTES = 10


def _now() -> datetime:
    return datetime.now(UTC)


class SamlConfigDocument(Document):
    organization_id: Annotated[PydanticObjectId, Indexed(unique=True)]
    idp_entity_id: str
    idp_sso_url: str
    idp_certificate: str  # PEM
    email_attribute: str = "email"
    name_attribute: str = "displayName"
    role_attribute: str = "groups"
    role_mapping: dict[str, str] = Field(default_factory=dict)
    default_role: str = "viewer"
    allowed_domains: list[str] = Field(default_factory=list)
    updated_at: datetime = Field(default_factory=_now)

    class Settings:
        name = "sso_saml_configs"


class SamlRequestDocument(Document):
    request_id: Annotated[str, Indexed(unique=True)]
    organization_id: PydanticObjectId
    expires_at: datetime

    class Settings:
        name = "sso_saml_requests"
        indexes = [IndexModel([("expires_at", ASCENDING)], expireAfterSeconds=0)]


def sp_entity_id(settings: SubgraphSettings, slug: str) -> str:
    return f"{settings.public_url.rstrip('/')}/saml/{slug}"


def acs_url(settings: SubgraphSettings) -> str:
    return f"{settings.public_url.rstrip('/')}/saml/acs"


def _idp_metadata(config: SamlConfigDocument) -> str:
    cert = x509.load_pem_x509_certificate(config.idp_certificate.encode())
    der = base64.b64encode(cert.public_bytes(Encoding.DER)).decode()
    return (
        '<md:EntityDescriptor xmlns:md="urn:oasis:names:tc:SAML:2.0:metadata" '
        f'xmlns:ds="http://www.w3.org/2000/09/xmldsig#" entityID={quoteattr(config.idp_entity_id)}>'
        '<md:IDPSSODescriptor protocolSupportEnumeration="urn:oasis:names:tc:SAML:2.0:protocol">'
        '<md:KeyDescriptor use="signing"><ds:KeyInfo><ds:X509Data>'
        f"<ds:X509Certificate>{escape(der)}</ds:X509Certificate>"
        "</ds:X509Data></ds:KeyInfo></md:KeyDescriptor>"
        f'<md:SingleSignOnService Binding="{BINDING_HTTP_REDIRECT}" '
        f"Location={quoteattr(config.idp_sso_url)}/>"
        "</md:IDPSSODescriptor></md:EntityDescriptor>"
    )


def _client(settings: SubgraphSettings, config: SamlConfigDocument, slug: str) -> Saml2Client:
    xmlsec = shutil.which("xmlsec1")
    if xmlsec is None:
        raise SsoFailed("SAML needs xmlsec1 on the server (Debian: apt-get install xmlsec1)")
    sp = Config()
    sp.load(
        {
            "entityid": sp_entity_id(settings, slug),
            "service": {
                "sp": {
                    "endpoints": {
                        "assertion_consumer_service": [(acs_url(settings), BINDING_HTTP_POST)]
                    },
                    "want_assertions_signed": True,
                    "want_response_signed": False,
                    "allow_unsolicited": False,
                    "authn_requests_signed": False,
                }
            },
            "metadata": {"inline": [_idp_metadata(config)]},
            "xmlsec_binary": xmlsec,
            "allow_unknown_attributes": True,
            "accepted_time_diff": 60,
        }
    )
    return Saml2Client(sp)


def _first(ava: dict[str, list[Any]], name: str) -> Any:
    values = ava.get(name) or []
    return values[0] if values else None


class SamlService:
    async def configure(
        self,
        settings: SubgraphSettings,
        viewer: Viewer,
        *,
        idp_entity_id: str,
        idp_sso_url: str,
        idp_certificate: str,
        role_mapping: dict[str, str],
        default_role: str,
        allowed_domains: list[str],
        email_attribute: str = "email",
        role_attribute: str = "groups",
    ) -> SamlConfigDocument:
        require(viewer, "sso.configure")
        problems = {}
        try:
            x509.load_pem_x509_certificate(idp_certificate.encode())
        except ValueError:
            problems["idpCertificate"] = "is not a PEM certificate"
        if not idp_sso_url.startswith(("https://", "http://")):
            problems["idpSsoUrl"] = "must be an http(s) URL"
        if not idp_entity_id.strip():
            problems["idpEntityId"] = "must not be empty"
        problems.update(role_mapping_problems(role_mapping, default_role))
        if problems:
            raise InvalidInput(problems)
        org = PydanticObjectId(viewer.organization_id)
        config = await SamlConfigDocument.find_one(SamlConfigDocument.organization_id == org)
        config = config or SamlConfigDocument(
            organization_id=org, idp_entity_id="", idp_sso_url="", idp_certificate=""
        )
        config.idp_entity_id, config.idp_sso_url = idp_entity_id.strip(), idp_sso_url
        config.idp_certificate, config.role_mapping = idp_certificate, role_mapping
        config.default_role, config.email_attribute = default_role, email_attribute
        config.role_attribute = role_attribute
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
            data={"protocol": "saml", "idp_entity_id": config.idp_entity_id},
        )
        return config

    async def current(self, viewer: Viewer) -> SamlConfigDocument | None:
        """The organization's SAML settings, for those who may change them."""
        require(viewer, "sso.configure")
        org = PydanticObjectId(viewer.organization_id)
        return await SamlConfigDocument.find_one(SamlConfigDocument.organization_id == org)

    async def _config(self, organization_id: PydanticObjectId) -> SamlConfigDocument:
        config = await SamlConfigDocument.find_one(
            SamlConfigDocument.organization_id == organization_id
        )
        if config is None:
            raise SsoFailed("SAML sign-on is not set up for this organization")
        return config

    async def start(
        self, settings: SubgraphSettings, organization_id: PydanticObjectId, slug: str
    ) -> str:
        config = await self._config(organization_id)
        client = _client(settings, config, slug)
        request_id, info = await asyncio.to_thread(
            client.prepare_for_authenticate,
            entityid=config.idp_entity_id,
            relay_state=slug,
            binding=BINDING_HTTP_REDIRECT,
        )
        await SamlRequestDocument(
            request_id=request_id,
            organization_id=organization_id,
            expires_at=_now() + timedelta(minutes=REQUEST_MINUTES),
        ).insert()
        return str(dict(info["headers"])["Location"])

    async def complete(
        self,
        settings: SubgraphSettings,
        organization_id: PydanticObjectId,
        slug: str,
        saml_response: str,
    ) -> SsoIdentity:
        config = await self._config(organization_id)
        client = _client(settings, config, slug)
        outstanding = {
            r.request_id: slug
            for r in await SamlRequestDocument.find(
                SamlRequestDocument.organization_id == organization_id,
                SamlRequestDocument.expires_at > _now(),
            ).to_list()
        }
        try:
            parsed = await asyncio.to_thread(
                client.parse_authn_request_response,
                saml_response,
                BINDING_HTTP_POST,
                outstanding=outstanding,
            )
        except Exception as exc:  # pysaml2 raises many types: all mean "not valid"
            raise SsoFailed(f"the SAML response is not valid: {type(exc).__name__}") from exc
        if parsed is None:
            raise SsoFailed("the SAML response is not valid")
        claimed = await SamlRequestDocument.find_one(
            SamlRequestDocument.request_id == parsed.in_response_to
        ).delete()
        if getattr(claimed, "deleted_count", 0) != 1:  # each request is answered once
            raise SsoFailed("this SAML response was already used")
        ava = parsed.get_identity()
        return map_identity(
            config,
            email=_first(ava, config.email_attribute),
            name=_first(ava, config.name_attribute),
            groups=ava.get(config.role_attribute),
            subject=parsed.get_subject().text,
        )


saml = SamlService()
