"""SAML through the dashboard: the SSO form starts it, the provider posts to /saml/acs."""

from __future__ import annotations

import base64
from urllib.parse import parse_qs, urlparse

import httpx
from saml2 import BINDING_HTTP_REDIRECT

from tests.factories.graphql import data, gql
from tests.factories.identity import sign_up
from tests.subgraphs.identity.test_sso_saml import CONFIGURE, IDP_ENTITY, _idp, _key_and_cert


async def test_the_sso_form_starts_saml_and_the_acs_signs_in(platform, client, web_url, tmp_path):
    key_cert = _key_and_cert("web idp")
    owner = await sign_up(client, platform.router_url, "Web Saml")
    configured = data(
        await gql(
            client,
            platform.router_url,
            CONFIGURE,
            {
                "input": {
                    "idpEntityId": IDP_ENTITY,
                    "idpSsoUrl": f"{IDP_ENTITY}/sso",
                    "idpCertificate": key_cert[1],
                    "roleMapping": {"eng": "editor"},
                }
            },
            owner.token,
        )
    )
    sp_entity = configured["configureSaml"]["spEntityId"]
    slug = data(
        await gql(
            client,
            platform.router_url,
            "{ myOrganizations { organization { slug } } }",
            token=owner.token,
        )
    )["myOrganizations"][0]["organization"]["slug"]
    idp = _idp(tmp_path, sp_entity, key_cert)
    async with httpx.AsyncClient(base_url=web_url, trust_env=False, timeout=20) as browser:
        await browser.get("/login")
        csrf = browser.cookies["kf_csrf"]
        started = await browser.post(
            "/login/sso", data={"organizationSlug": slug, "csrf_token": csrf}
        )
        assert started.status_code == 303
        redirect = urlparse(started.headers["location"])
        assert redirect.netloc == "idp.corp.example"  # sent to the provider
        query = parse_qs(redirect.query)
        request = idp.parse_authn_request(query["SAMLRequest"][0], BINDING_HTTP_REDIRECT)
        response = idp.create_authn_response(
            identity={"email": ["kim@example.com"], "displayName": ["Kim"], "groups": ["eng"]},
            in_response_to=request.message.id,
            destination="http://dashboard.test/saml/acs",
            sp_entity_id=sp_entity,
            userid="kim@example.com",
            sign_assertion=True,
            sign_response=True,
            authn={"class_ref": "urn:oasis:names:tc:SAML:2.0:ac:classes:Password"},
        )
        # The provider's page posts this form cross-site: no CSRF token of ours.
        posted = await browser.post(
            "/saml/acs",
            data={
                "SAMLResponse": base64.b64encode(str(response).encode()).decode(),
                "RelayState": query["RelayState"][0],
            },
        )
        assert posted.status_code == 303, posted.text[:500]
        assert browser.cookies.get("kf_token")
        home = await browser.get("/")
        assert "Web Saml" in home.text  # signed in to the organization
        replay = await browser.post(
            "/saml/acs",
            data={
                "SAMLResponse": base64.b64encode(str(response).encode()).decode(),
                "RelayState": query["RelayState"][0],
            },
        )
        assert replay.status_code == 200
        assert "the SAML response is not valid" in replay.text  # its request was used up
        assert "Single sign-on failed" not in home.text
