"""SAML 2.0 sign-on: responses signed by a test identity provider's key (pysaml2 playing
the IdP), accepted once, refused when tampered with, unsolicited or signed by another."""

from __future__ import annotations

import base64
import datetime
import shutil
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from saml2 import BINDING_HTTP_POST, BINDING_HTTP_REDIRECT
from saml2.config import IdPConfig
from saml2.server import Server

from tests.factories.graphql import data, gql
from tests.factories.identity import sign_up

IDP_ENTITY = "https://idp.corp.example/saml"
PUBLIC = "http://dashboard.test"
CONFIGURE = """mutation ($input: ConfigureSamlInput!) { configureSaml(input: $input) {
  __typename ... on SamlConfig { spEntityId acsUrl }
  ... on ValidationError { fields { path } } } }"""
START = """mutation ($slug: String!) { startSamlLogin(input: {organizationSlug: $slug}) {
  __typename ... on SamlLoginStart { redirectUrl } ... on SsoError { message } } }"""
COMPLETE = """mutation ($slug: String!, $r: String!) {
  completeSamlLogin(input: {organizationSlug: $slug, samlResponse: $r}) {
    __typename ... on AuthPayload { role user { email } } ... on SsoError { message } } }"""


def _key_and_cert(cn: str) -> tuple[str, str]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .sign(key, hashes.SHA256())
    )
    pem_key = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    return pem_key, cert.public_bytes(serialization.Encoding.PEM).decode()


def _idp(tmp: Path, sp_entity: str, key_cert: tuple[str, str]) -> Server:
    (tmp / "idp.key").write_text(key_cert[0])
    (tmp / "idp.crt").write_text(key_cert[1])
    sp_metadata = (
        '<md:EntityDescriptor xmlns:md="urn:oasis:names:tc:SAML:2.0:metadata" '
        f'entityID="{sp_entity}"><md:SPSSODescriptor '
        'protocolSupportEnumeration="urn:oasis:names:tc:SAML:2.0:protocol">'
        f'<md:AssertionConsumerService Binding="{BINDING_HTTP_POST}" '
        f'Location="{PUBLIC}/saml/acs" index="0"/></md:SPSSODescriptor></md:EntityDescriptor>'
    )
    config = IdPConfig()
    config.load(
        {
            "entityid": IDP_ENTITY,
            "key_file": str(tmp / "idp.key"),
            "cert_file": str(tmp / "idp.crt"),
            "xmlsec_binary": shutil.which("xmlsec1"),
            "service": {
                "idp": {
                    "endpoints": {
                        "single_sign_on_service": [(f"{IDP_ENTITY}/sso", BINDING_HTTP_REDIRECT)]
                    },
                    "policy": {
                        "default": {
                            "lifetime": {"minutes": 5},
                            "attribute_restrictions": None,
                            "name_form": "urn:oasis:names:tc:SAML:2.0:attrname-format:uri",
                        }
                    },
                }
            },
            "metadata": {"inline": [sp_metadata]},
        }
    )
    return Server(config=config)


@pytest.fixture(scope="module")
def idp_keys() -> dict[str, tuple[str, str]]:
    return {"real": _key_and_cert("corp idp"), "impostor": _key_and_cert("impostor")}


async def _setup(client, platform, idp_keys):
    owner = await sign_up(client, platform.router_url, "Saml Corp")
    configured = data(
        await gql(
            client,
            platform.router_url,
            CONFIGURE,
            {
                "input": {
                    "idpEntityId": IDP_ENTITY,
                    "idpSsoUrl": f"{IDP_ENTITY}/sso",
                    "idpCertificate": idp_keys["real"][1],
                    "roleMapping": {"admins": "admin"},
                    "allowedDomains": ["corp.example"],
                }
            },
            owner.token,
        )
    )["configureSaml"]
    assert configured["__typename"] == "SamlConfig", configured
    assert configured["acsUrl"] == f"{PUBLIC}/saml/acs"
    orgs = data(
        await gql(
            client,
            platform.router_url,
            "{ myOrganizations { organization { slug } } }",
            token=owner.token,
        )
    )
    return owner, orgs["myOrganizations"][0]["organization"]["slug"], configured["spEntityId"]


async def _respond(client, platform, slug, idp: Server, email: str, groups: list[str]) -> str:
    started = data(await gql(client, platform.router_url, START, {"slug": slug}))
    url = started["startSamlLogin"]["redirectUrl"]
    request = parse_qs(urlparse(url).query)["SAMLRequest"][0]
    parsed = idp.parse_authn_request(request, BINDING_HTTP_REDIRECT)
    response = idp.create_authn_response(
        identity={"email": [email], "displayName": ["Test Person"], "groups": groups},
        in_response_to=parsed.message.id,
        destination=f"{PUBLIC}/saml/acs",
        sp_entity_id=parsed.message.issuer.text,
        userid=email,
        sign_assertion=True,
        sign_response=True,
        authn={"class_ref": "urn:oasis:names:tc:SAML:2.0:ac:classes:Password"},
    )
    return str(response)


def _b64(xml: str) -> str:
    return base64.b64encode(xml.encode()).decode()


async def test_a_signed_response_signs_in_once_with_the_mapped_role(
    platform, client, idp_keys, tmp_path
):
    owner, slug, sp_entity = await _setup(client, platform, idp_keys)
    idp = _idp(tmp_path, sp_entity, idp_keys["real"])
    xml = await _respond(client, platform, slug, idp, "grace@corp.example", ["admins"])
    done = data(await gql(client, platform.router_url, COMPLETE, {"slug": slug, "r": _b64(xml)}))
    assert done["completeSamlLogin"] == {
        "__typename": "AuthPayload",
        "role": "admin",
        "user": {"email": "grace@corp.example"},
    }
    replay = data(await gql(client, platform.router_url, COMPLETE, {"slug": slug, "r": _b64(xml)}))
    assert replay["completeSamlLogin"]["__typename"] == "SsoError"


async def test_tampered_forged_and_foreign_responses_are_refused(
    platform, client, idp_keys, tmp_path
):
    _, slug, sp_entity = await _setup(client, platform, idp_keys)
    real = (
        _idp(tmp_path / "real", sp_entity, idp_keys["real"])
        if ((tmp_path / "real").mkdir() or True)
        else None
    )
    xml = await _respond(client, platform, slug, real, "grace@corp.example", ["staff"])
    tampered = xml.replace("grace@corp.example", "mallory@corp.example")
    refused = data(
        await gql(client, platform.router_url, COMPLETE, {"slug": slug, "r": _b64(tampered)})
    )
    assert refused["completeSamlLogin"] == {
        "__typename": "SsoError",
        "message": "the SAML response is not valid: SignatureError",
    }

    (tmp_path / "impostor").mkdir()
    impostor = _idp(tmp_path / "impostor", sp_entity, idp_keys["impostor"])
    forged = await _respond(client, platform, slug, impostor, "grace@corp.example", ["admins"])
    refused = data(
        await gql(client, platform.router_url, COMPLETE, {"slug": slug, "r": _b64(forged)})
    )
    assert refused["completeSamlLogin"]["__typename"] == "SsoError"

    outsider = await _respond(client, platform, slug, real, "eve@elsewhere.example", ["admins"])
    refused = data(
        await gql(client, platform.router_url, COMPLETE, {"slug": slug, "r": _b64(outsider)})
    )
    assert "elsewhere.example may not sign in" in refused["completeSamlLogin"]["message"]
