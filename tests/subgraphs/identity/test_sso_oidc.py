"""OIDC single sign-on against a real, certified provider (npm oidc-provider) run here:
authorization code + PKCE, ID-token checks, just-in-time provisioning, role mapping."""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import parse_qs, urljoin, urlparse

import httpx
import pytest

from klikkflow.kit.supervisor import ServiceSpec, Supervisor, free_port, http_ok
from tests.factories.graphql import data, gql
from tests.factories.identity import sign_up

IDP_DIR = Path(__file__).resolve().parents[2] / "idp"
REDIRECT_URI = "http://dashboard.test/sso/callback"
ACCOUNTS = {
    "ada": {
        "email": "ada@corp.example",
        "email_verified": True,
        "name": "Ada Admin",
        "groups": ["kf-admins", "staff"],
    },
    "eve": {
        "email": "eve@elsewhere.example",
        "email_verified": True,
        "name": "Eve",
        "groups": ["kf-admins"],
    },
    "sam": {
        "email": "sam@corp.example",
        "email_verified": True,
        "name": "Sam",
        "groups": ["staff"],
    },
}
CONFIGURE = """mutation ($input: ConfigureOidcInput!) { configureOidc(input: $input) {
  __typename ... on OidcConfig { issuer clientId } ... on ValidationError { fields { path } }
  ... on ForbiddenError { message } } }"""
START = """mutation ($slug: String!) { startOidcLogin(input: {organizationSlug: $slug,
  redirectUri: "http://dashboard.test/sso/callback"}) {
  __typename ... on OidcLoginStart { authorizationUrl } ... on SsoError { message } } }"""
COMPLETE = """mutation ($state: String!, $code: String!) {
  completeOidcLogin(input: {state: $state, code: $code}) {
    __typename ... on AuthPayload { accessToken role user { email } organization { id } }
    ... on SsoError { message } } }"""


@pytest.fixture(scope="module")
async def idp(tmp_path_factory) -> AsyncIterator[str]:
    if not (IDP_DIR / "node_modules").exists():
        pytest.fail("tests/idp has no node_modules: run `npm ci` there (run.sh test does)")
    port = free_port()
    supervisor = Supervisor(tmp_path_factory.mktemp("idp"))
    issuer = f"http://127.0.0.1:{port}"
    await supervisor.start(
        ServiceSpec(
            "oidc-provider",
            [shutil.which("node") or "node", str(IDP_DIR / "oidc.mjs")],
            cwd=IDP_DIR,
            port=port,
            env={
                "PORT": str(port),
                "CLIENT_ID": "klikkflow",
                "CLIENT_SECRET": "idp-secret-123",
                "REDIRECT_URI": REDIRECT_URI,
                "ACCOUNTS": json.dumps(ACCOUNTS),
            },
            ready=lambda: http_ok(f"{issuer}/.well-known/openid-configuration"),
        )
    )
    await supervisor.wait_ready(timeout=30)
    yield issuer
    await supervisor.stop_all()


async def _browser_sign_in(authorization_url: str, login: str) -> dict[str, str]:
    """Play the browser: follow redirects, fill the provider's login and consent forms,
    stop at the redirect back to us and return its query parameters."""
    async with httpx.AsyncClient(trust_env=False, timeout=10) as browser:
        url, method, form = authorization_url, "GET", None
        for _ in range(20):
            response = await browser.request(method, url, data=form)
            if response.is_redirect:
                url = urljoin(url, response.headers["location"])
                if url.startswith(REDIRECT_URI):
                    return {k: v[0] for k, v in parse_qs(urlparse(url).query).items()}
                method, form = "GET", None
                continue
            action = re.search(r'<form[^>]*action="([^"]+)"', response.text)
            assert action, response.text[:500]
            fields = dict(
                re.findall(r'<input[^>]*name="([^"]+)"[^>]*value="([^"]*)"', response.text)
            )
            fields.update({"login": login, "password": "any"})
            url, method, form = urljoin(url, action.group(1)), "POST", fields
    raise AssertionError("the provider never redirected back")


async def _org_with_sso(client, platform, idp, **overrides) -> tuple:
    owner = await sign_up(client, platform.router_url, "SSO Corp")
    config = {
        "issuer": idp,
        "clientId": "klikkflow",
        "clientSecret": "idp-secret-123",
        "roleClaim": "groups",
        "roleMapping": {"kf-admins": "admin", "staff": "editor"},
        "defaultRole": "viewer",
        "allowedDomains": ["corp.example"],
        **overrides,
    }
    done = data(await gql(client, platform.router_url, CONFIGURE, {"input": config}, owner.token))[
        "configureOidc"
    ]
    assert done["__typename"] == "OidcConfig", done
    orgs = data(
        await gql(
            client,
            platform.router_url,
            "{ myOrganizations { organization { slug } } }",
            token=owner.token,
        )
    )
    return owner, orgs["myOrganizations"][0]["organization"]["slug"]


async def _sso(client, platform, slug: str, login: str) -> dict:
    started = data(await gql(client, platform.router_url, START, {"slug": slug}))
    url = started["startOidcLogin"]["authorizationUrl"]
    assert "code_challenge=" in url  # PKCE
    back = await _browser_sign_in(url, login)
    return data(
        await gql(
            client, platform.router_url, COMPLETE, {"state": back["state"], "code": back["code"]}
        )
    )["completeOidcLogin"]


async def test_sso_provisions_the_user_with_the_mapped_role(platform, client, idp):
    owner, slug = await _org_with_sso(client, platform, idp)
    ada = await _sso(client, platform, slug, "ada")
    assert ada["__typename"] == "AuthPayload", ada
    assert ada["user"]["email"] == "ada@corp.example"
    assert ada["role"] == "admin"  # the strongest role any of her groups maps to
    assert ada["organization"]["id"] == owner.organization_id
    sam = await _sso(client, platform, slug, "sam")
    assert sam["role"] == "editor"
    members = data(
        await gql(
            client, platform.router_url, "{ members { role user { email } } }", token=owner.token
        )
    )["members"]
    assert {(m["user"]["email"], m["role"]) for m in members} >= {
        ("ada@corp.example", "admin"),
        ("sam@corp.example", "editor"),
    }


async def test_sso_refuses_other_domains_replayed_states_and_forged_codes(platform, client, idp):
    _, slug = await _org_with_sso(client, platform, idp)
    eve = await _sso(client, platform, slug, "eve")
    assert eve == {
        "__typename": "SsoError",
        "message": "addresses at elsewhere.example may not sign in to this organization",
    }
    started = data(await gql(client, platform.router_url, START, {"slug": slug}))
    back = await _browser_sign_in(started["startOidcLogin"]["authorizationUrl"], "ada")
    forged = data(
        await gql(
            client, platform.router_url, COMPLETE, {"state": back["state"], "code": "forged-code"}
        )
    )
    assert forged["completeOidcLogin"]["__typename"] == "SsoError"
    replay = data(
        await gql(
            client, platform.router_url, COMPLETE, {"state": back["state"], "code": back["code"]}
        )
    )
    assert "start again" in replay["completeOidcLogin"]["message"]  # a state works once


async def test_only_managers_configure_sso_and_never_to_grant_owner(platform, client, idp):
    owner = await sign_up(client, platform.router_url)
    bad = data(
        await gql(
            client,
            platform.router_url,
            CONFIGURE,
            {
                "input": {
                    "issuer": idp,
                    "clientId": "klikkflow",
                    "clientSecret": "x",
                    "roleMapping": {"kf-admins": "owner"},
                }
            },
            owner.token,
        )
    )["configureOidc"]
    assert bad["__typename"] == "ValidationError"
    unknown = data(await gql(client, platform.router_url, START, {"slug": "no-such-org"}))
    assert unknown["startOidcLogin"]["__typename"] == "SsoError"
