"""The single sign-on page (owners and admins): the organization's OpenID Connect and SAML
settings, never the client secret, and our SAML entity id and ACS URL to register."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from web.forms import ERROR_FIELDS, Outcome, error_text, outcome
from web.session import Api, read_form
from web.viewer import load_viewer, render_page

OIDC_FIELDS = "issuer clientId roleClaim roleMapping defaultRole allowedDomains updatedAt"
SAML_FIELDS = (
    "idpEntityId idpSsoUrl emailAttribute roleAttribute roleMapping defaultRole "
    "allowedDomains updatedAt spEntityId acsUrl"
)

SSO_QUERY = f"""\
query SingleSignOn {{
  oidcConfig {{ {OIDC_FIELDS} }}
  samlConfig {{ {SAML_FIELDS} }}
}}
"""

CONFIGURE_OIDC = f"""\
mutation ConfigureOidc($input: ConfigureOidcInput!) {{
  configureOidc(input: $input) {{
    __typename ... on OidcConfig {{ {OIDC_FIELDS} }} {ERROR_FIELDS}
  }}
}}
"""

CONFIGURE_SAML = f"""\
mutation ConfigureSaml($input: ConfigureSamlInput!) {{
  configureSaml(input: $input) {{
    __typename ... on SamlConfig {{ {SAML_FIELDS} }} {ERROR_FIELDS}
  }}
}}
"""


def role_mapping(text: str) -> dict[str, str]:
    """``admins = admin`` per line (or ``admins: admin``) as a claim value -> role map."""
    mapping = {}
    for line in text.splitlines():
        value, sep, role = line.replace(":", "=", 1).rpartition("=")
        if sep and value.strip():
            mapping[value.strip()] = role.strip()
    return mapping


def domains(text: str) -> list[str]:
    return [d.strip() for d in text.replace("\n", ",").split(",") if d.strip()]


async def sso_page(request: Request) -> Response:
    viewer = await load_viewer(request, required=True)
    return await _render(request, {"viewer": viewer})


async def configure_oidc(request: Request) -> Response:
    form = await read_form(request)
    fields = {
        "issuer": form.get("issuer", ""),
        "clientId": form.get("clientId", ""),
        "clientSecret": form.get("clientSecret", ""),
        "roleClaim": form.get("roleClaim", "") or "groups",
        "roleMapping": role_mapping(form.get("roleMapping", "")),
        "defaultRole": form.get("defaultRole", "viewer"),
        "allowedDomains": domains(form.get("allowedDomains", "")),
    }
    response = await Api(request).call(CONFIGURE_OIDC, {"input": fields})
    result = outcome(response, "configureOidc", "OidcConfig")
    if not result.ok:
        kept = {k: v for k, v in form.items() if k != "clientSecret"}  # never echo the secret
        return await _render(request, {"oidc_outcome": result, "oidc_form": kept})
    return await _render(request, {"notice": "OpenID Connect settings saved."})


async def configure_saml(request: Request) -> Response:
    form = await read_form(request)
    fields = {
        "idpEntityId": form.get("idpEntityId", ""),
        "idpSsoUrl": form.get("idpSsoUrl", ""),
        "idpCertificate": form.get("idpCertificate", ""),
        "emailAttribute": form.get("emailAttribute", "") or "email",
        "roleAttribute": form.get("roleAttribute", "") or "groups",
        "roleMapping": role_mapping(form.get("roleMapping", "")),
        "defaultRole": form.get("defaultRole", "viewer"),
        "allowedDomains": domains(form.get("allowedDomains", "")),
    }
    response = await Api(request).call(CONFIGURE_SAML, {"input": fields})
    result = outcome(response, "configureSaml", "SamlConfig")
    if not result.ok:
        return await _render(request, {"saml_outcome": result, "saml_form": form})
    return await _render(request, {"saml_registered": result.result})


async def _render(request: Request, extra: dict[str, Any]) -> Response:
    response = await Api(request).call(SSO_QUERY)
    data = response.data or {}
    context: dict[str, Any] = {
        "nav": "sso",
        "oidc": data.get("oidcConfig"),
        "saml": data.get("samlConfig"),
        # Only owners and admins may see or change these: the router says so in an error.
        "load_error": error_text(response) if response.errors else None,
        "oidc_outcome": Outcome(),
        "oidc_form": {},
        "saml_outcome": Outcome(),
        "saml_form": {},
        "saml_registered": None,
        "notice": None,
        **extra,
    }
    return await render_page(request, "pages/sso.html", context, fragment="partials/sso.html")
