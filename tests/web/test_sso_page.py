"""The single sign-on page over HTTP, against the real router and identity subgraph: an
owner sets up OpenID Connect and SAML, sees them (never the secret) and our SAML side;
a viewer is turned away."""

from __future__ import annotations

import re
import secrets
from collections.abc import AsyncIterator

import httpx
import pytest

from tests.factories.graphql import data, gql
from tests.factories.identity import sign_up as api_sign_up
from tests.subgraphs.identity.test_sso_saml import _key_and_cert
from tests.web.test_identity_pages import csrf, sign_up
from web.sso import domains, role_mapping


@pytest.fixture
async def owner(web_url: str) -> AsyncIterator[httpx.AsyncClient]:
    """A browser-like client signed in as the owner of a fresh organization."""
    async with httpx.AsyncClient(base_url=web_url, trust_env=False, timeout=20) as client:
        await sign_up(client)
        yield client


async def test_an_owner_sets_up_oidc_and_the_secret_is_never_shown(owner) -> None:
    page = await owner.get("/sso")
    assert page.status_code == 200
    assert 'aria-current="page">SSO</a>' in page.text  # in the nav, as the current page
    assert 'id="oidc-none"' in page.text

    secret = f"s3cret-{secrets.token_hex(8)}"
    token = await csrf(owner, "/sso")
    form = {
        "issuer": "https://idp.example.com/",
        "clientId": "klikkflow-web",
        "clientSecret": secret,
        "roleClaim": "groups",
        "roleMapping": "admins = admin\nwriters = editor",
        "defaultRole": "viewer",
        "allowedDomains": "example.com, Example.org",
        "csrf_token": token,
    }
    saved = await owner.post("/sso/oidc", data=form, headers={"HX-Request": "true"})

    assert saved.status_code == 200
    assert saved.text.lstrip().startswith('<section id="sso-section"')  # the fragment
    assert "OpenID Connect settings saved." in saved.text
    shown = (await owner.get("/sso")).text
    assert '<dd id="oidc-issuer">https://idp.example.com</dd>' in shown
    assert '<dd id="oidc-client-id">klikkflow-web</dd>' in shown
    assert "<code>admins</code> → admin" in shown
    assert "example.com, example.org" in shown
    assert secret not in saved.text
    assert secret not in shown


async def test_a_refused_oidc_form_keeps_its_values_but_not_the_secret(owner) -> None:
    token = await csrf(owner, "/sso")
    form = {"issuer": "ftp://nowhere", "clientId": "c", "clientSecret": "hunter2-secret"}
    refused = await owner.post("/sso/oidc", data={**form, "csrf_token": token})
    assert refused.status_code == 200
    assert 'data-field-error="issuer"' in refused.text
    assert 'value="ftp://nowhere"' in refused.text
    assert "hunter2-secret" not in refused.text


async def test_an_owner_sets_up_saml_and_sees_what_to_register(owner) -> None:
    token = await csrf(owner, "/sso")
    certificate = _key_and_cert("sso page idp")[1]
    form = {
        "idpEntityId": "https://idp.example.com/saml",
        "idpSsoUrl": "https://idp.example.com/saml/sso",
        "idpCertificate": certificate,
        "emailAttribute": "email",
        "roleAttribute": "groups",
        "roleMapping": "admins = admin",
        "defaultRole": "editor",
        "allowedDomains": "",
        "csrf_token": token,
    }
    saved = await owner.post("/sso/saml", data=form, headers={"HX-Request": "true"})

    assert saved.status_code == 200
    entity = re.search(r'<code id="saml-sp-entity-id">([^<]+)</code>', saved.text)
    acs = re.search(r'<code id="saml-acs-url">([^<]+)</code>', saved.text)
    assert entity, saved.text
    assert acs, saved.text
    assert acs.group(1).endswith("/saml/acs")
    shown = (await owner.get("/sso")).text
    assert '<dd id="saml-idp-entity-id">https://idp.example.com/saml</dd>' in shown
    assert f"<code>{entity.group(1)}</code>" in shown  # our side stays on the page
    assert f"<code>{acs.group(1)}</code>" in shown


async def test_a_post_without_the_csrf_token_is_refused(owner) -> None:
    await csrf(owner, "/sso")
    refused = await owner.post("/sso/oidc", data={"issuer": "https://x.example"})
    assert refused.status_code == 403


async def test_the_settings_are_refused_to_a_viewer(platform) -> None:
    async with httpx.AsyncClient(trust_env=False) as http:
        boss = await api_sign_up(http, platform.router_url)
        key = data(
            await gql(
                http,
                platform.router_url,
                'mutation { createApiKey(input: {name: "v", role: "viewer"}) {'
                " ... on CreateApiKeySuccess { secret } } }",
                token=boss.token,
            )
        )["createApiKey"]["secret"]
        answer = await gql(http, platform.router_url, "{ oidcConfig { issuer } }", token=key)
    assert answer["errors"][0]["message"] == "your role may not configure single sign-on"


def test_role_mappings_and_domains_are_read_leniently() -> None:
    assert role_mapping("admins = admin\n\nwriters: editor\n bad line") == {
        "admins": "admin",
        "writers": "editor",
    }
    assert domains("a.example, b.example\nc.example") == ["a.example", "b.example", "c.example"]
