"""Signing up, in and out: log-in with MFA and SSO, invitations, password reset."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from web.forms import ERROR_FIELDS, ERROR_MESSAGE, Outcome, outcome
from web.session import (
    Api,
    clear_session,
    current_token,
    read_form,
    safe_next,
    set_session_from,
)
from web.viewer import render_page

AUTH_PAYLOAD = "... on AuthPayload { accessToken refreshToken expiresIn }"

SIGN_UP = f"""\
mutation SignUp($input: SignUpInput!) {{
  signUp(input: $input) {{ __typename {AUTH_PAYLOAD} {ERROR_FIELDS} }}
}}
"""

LOG_IN = f"""\
mutation LogIn($input: LogInInput!) {{
  logIn(input: $input) {{
    __typename
    {AUTH_PAYLOAD}
    ... on MfaRequired {{ challenge expiresIn }}
    ... on InvalidCredentialsError {{ message }}
    ... on TooManyAttemptsError {{ message retryAfterSeconds }}
  }}
}}
"""

VERIFY_MFA = f"""\
mutation VerifyMfa($input: VerifyMfaInput!) {{
  verifyMfa(input: $input) {{
    __typename
    {AUTH_PAYLOAD}
    ... on InvalidCodeError {{ message }}
    ... on TooManyAttemptsError {{ message retryAfterSeconds }}
  }}
}}
"""

START_OIDC = """\
mutation StartOidc($input: StartOidcLoginInput!) {
  startOidcLogin(input: $input) {
    __typename
    ... on OidcLoginStart { authorizationUrl }
    ... on SsoError { message }
  }
}
"""

COMPLETE_OIDC = f"""\
mutation CompleteOidc($input: CompleteOidcLoginInput!) {{
  completeOidcLogin(input: $input) {{ __typename {AUTH_PAYLOAD} ... on SsoError {{ message }} }}
}}
"""

SWITCH_ORGANIZATION = f"""\
mutation Switch($input: SwitchOrganizationInput!) {{
  switchOrganization(input: $input) {{ __typename {AUTH_PAYLOAD} {ERROR_FIELDS} }}
}}
"""

ACCEPT_INVITATION = f"""\
mutation Accept($input: AcceptInvitationInput!) {{
  acceptInvitation(input: $input) {{
    __typename {AUTH_PAYLOAD} {ERROR_FIELDS} ... on InvalidTokenError {{ message }}
  }}
}}
"""

REQUEST_RESET = f"""\
mutation RequestReset($input: RequestPasswordResetInput!) {{
  requestPasswordReset(input: $input) {{
    __typename
    ... on RequestPasswordResetSuccess {{ ok }}
    {ERROR_MESSAGE}
  }}
}}
"""

RESET_PASSWORD = f"""\
mutation Reset($input: ResetPasswordInput!) {{
  resetPassword(input: $input) {{
    __typename
    ... on ResetPasswordSuccess {{ ok }}
    {ERROR_FIELDS}
    ... on InvalidTokenError {{ message }}
  }}
}}
"""

VERIFY_EMAIL = """\
mutation VerifyEmail($input: VerifyEmailInput!) {
  verifyEmail(input: $input) {
    __typename
    ... on VerifyEmailSuccess { user { email } }
    ... on InvalidTokenError { message }
  }
}
"""


def _signed_in(request: Request, result: Outcome, next_url: str | None = None) -> Response:
    set_session_from(request, result.result)
    return RedirectResponse(safe_next(next_url), status_code=303)


# -- sign-up -------------------------------------------------------------------------


async def signup(request: Request) -> Response:
    context: dict[str, Any] = {"form": {}, "outcome": None}
    if request.method == "POST":
        form = await read_form(request)
        variables = {
            "input": {k: form.get(k, "") for k in ("email", "name", "password", "organizationName")}
        }
        result = outcome(await Api(request).anonymous(SIGN_UP, variables), "signUp", "AuthPayload")
        if result.ok:
            return _signed_in(request, result)
        context = {"form": form, "outcome": result}
        return await _anonymous_page(request, "pages/signup.html", context)
    return await _anonymous_page(request, "pages/signup.html", context)


# -- log-in --------------------------------------------------------------------------


async def login(request: Request) -> Response:
    next_url = safe_next(request.query_params.get("next"))
    context: dict[str, Any] = {"form": {}, "next": next_url, "step": "password"}
    if request.method != "POST":
        return await _anonymous_page(request, "pages/login.html", context)
    form = await read_form(request)
    next_url = safe_next(form.get("next"))
    variables = {"input": {"email": form.get("email", ""), "password": form.get("password", "")}}
    response = await Api(request).anonymous(LOG_IN, variables)
    result = outcome(response, "logIn", "AuthPayload", "MfaRequired")
    if result.typename == "AuthPayload" and result.ok:
        return _signed_in(request, result, next_url)
    context.update(form={"email": form.get("email", "")}, next=next_url)
    if result.typename == "MfaRequired" and result.ok:
        context.update(step="mfa", challenge=result.get("challenge"))
        return await _anonymous_page(request, "pages/login.html", context)
    context["outcome"] = result
    return await _anonymous_page(request, "pages/login.html", context)


async def login_mfa(request: Request) -> Response:
    form = await read_form(request)
    next_url = safe_next(form.get("next"))
    challenge = form.get("challenge", "")
    variables = {"input": {"challenge": challenge, "code": form.get("code", "")}}
    result = outcome(
        await Api(request).anonymous(VERIFY_MFA, variables), "verifyMfa", "AuthPayload"
    )
    if result.ok:
        return _signed_in(request, result, next_url)
    context: dict[str, Any] = {"form": {}, "next": next_url, "outcome": result}
    if result.typename == "InvalidCodeError":  # the challenge allows a few more tries
        context.update(step="mfa", challenge=challenge)
        return await _anonymous_page(request, "pages/login.html", context)
    context["step"] = "password"
    return await _anonymous_page(request, "pages/login.html", context)


START_SAML = """
mutation StartSaml($input: StartSamlLoginInput!) {
  startSamlLogin(input: $input) {
    __typename
    ... on SamlLoginStart { redirectUrl }
    ... on SsoError { message }
  }
}
"""

COMPLETE_SAML = f"""
mutation CompleteSaml($input: CompleteSamlLoginInput!) {{
  completeSamlLogin(input: $input) {{ __typename {AUTH_PAYLOAD} ... on SsoError {{ message }} }}
}}
"""


async def login_sso(request: Request) -> Response:
    form = await read_form(request)
    slug = form.get("organizationSlug", "")
    redirect_uri = str(request.url_for("sso_callback"))
    variables = {"input": {"organizationSlug": slug, "redirectUri": redirect_uri}}
    response = await Api(request).anonymous(START_OIDC, variables)
    result = outcome(response, "startOidcLogin", "OidcLoginStart")
    url = str(result.get("authorizationUrl") or "")
    if not result.ok:  # the organization may use SAML instead of OpenID Connect
        saml = await Api(request).anonymous(START_SAML, {"input": {"organizationSlug": slug}})
        saml_result = outcome(saml, "startSamlLogin", "SamlLoginStart")
        if saml_result.ok:
            result, url = saml_result, str(saml_result.get("redirectUrl") or "")
    if result.ok and urlsplit(url).scheme in ("http", "https"):
        return RedirectResponse(url, status_code=303)
    context = {
        "form": {},
        "sso_form": {"organizationSlug": slug},
        "sso_outcome": result if not result.ok else Outcome(message="SSO is not available."),
        "next": "/",
        "step": "password",
    }
    return await _anonymous_page(request, "pages/login.html", context)


async def sso_callback(request: Request) -> Response:
    params = request.query_params
    state, code = params.get("state", ""), params.get("code", "")
    if params.get("error") or not state or not code:
        reason = params.get("error_description") or params.get("error") or "no code came back"
        result = Outcome(typename="SsoError", message=f"Single sign-on failed: {reason}")
    else:
        variables = {"input": {"state": state, "code": code}}
        response = await Api(request).anonymous(COMPLETE_OIDC, variables)
        result = outcome(response, "completeOidcLogin", "AuthPayload")
        if result.ok:
            return _signed_in(request, result)
    context = {"form": {}, "sso_outcome": result, "next": "/", "step": "password"}
    return await _anonymous_page(request, "pages/login.html", context)


async def saml_acs(request: Request) -> Response:
    """The identity provider posts the SAML response here from its own page, so this form
    carries no CSRF token of ours: the response's signature and its one-time request id
    (checked by the identity subgraph) are what make it trustworthy."""
    form = await request.form()
    saml_response, slug = str(form.get("SAMLResponse", "")), str(form.get("RelayState", ""))
    result = Outcome(typename="SsoError", message="Single sign-on failed: no SAML response")
    if saml_response and slug:
        variables = {"input": {"organizationSlug": slug, "samlResponse": saml_response}}
        response = await Api(request).anonymous(COMPLETE_SAML, variables)
        result = outcome(response, "completeSamlLogin", "AuthPayload")
        if result.ok:
            return _signed_in(request, result)
    context = {"form": {}, "sso_outcome": result, "next": "/", "step": "password"}
    return await _anonymous_page(request, "pages/login.html", context)


async def logout(request: Request) -> Response:
    await read_form(request)
    await Api(request).log_out()
    return RedirectResponse(request.url_for("login").path, status_code=303)


async def switch_organization(request: Request) -> Response:
    form = await read_form(request)
    variables = {"input": {"organizationId": form.get("organizationId", "")}}
    response = await Api(request).call(SWITCH_ORGANIZATION, variables)
    result = outcome(response, "switchOrganization", "AuthPayload")
    if result.ok:
        return _signed_in(request, result, form.get("next"))
    return await render_page(
        request,
        "pages/message.html",
        {"title": "Switch organization", "outcome": result},
    )


# -- invitations ---------------------------------------------------------------------


async def invitation(request: Request) -> Response:
    token = request.path_params["token"]
    context: dict[str, Any] = {"token": token, "form": {}, "outcome": None}
    if request.method != "POST":
        return await _anonymous_page(request, "pages/invitation.html", context)
    form = await read_form(request)
    variables = {
        "input": {
            "token": token,
            "name": form.get("name", ""),
            "password": form.get("password", ""),
        }
    }
    response = await Api(request).anonymous(ACCEPT_INVITATION, variables)
    result = outcome(response, "acceptInvitation", "AuthPayload")
    if result.ok:
        return _signed_in(request, result)
    context.update(form={"name": form.get("name", "")}, outcome=result)
    return await _anonymous_page(request, "pages/invitation.html", context)


# -- password reset and e-mail verification --------------------------------------------


async def reset_request(request: Request) -> Response:
    context: dict[str, Any] = {"sent": False, "form": {}, "outcome": None}
    if request.method == "POST":
        form = await read_form(request)
        variables = {"input": {"email": form.get("email", "")}}
        # The answer is the same whether or not the address has an account; only too
        # many requests from the browser's network are refused.
        response = await Api(request).anonymous(REQUEST_RESET, variables)
        result = outcome(response, "requestPasswordReset", "RequestPasswordResetSuccess")
        context = {"sent": result.ok, "form": {"email": form.get("email", "")}, "outcome": result}
    return await _anonymous_page(request, "pages/reset_request.html", context)


async def reset_password(request: Request) -> Response:
    token = request.path_params["token"]
    context: dict[str, Any] = {"token": token, "done": False, "outcome": None}
    if request.method != "POST":
        return await _anonymous_page(request, "pages/reset_password.html", context)
    form = await read_form(request)
    variables = {"input": {"token": token, "password": form.get("password", "")}}
    response = await Api(request).anonymous(RESET_PASSWORD, variables)
    result = outcome(response, "resetPassword", "ResetPasswordSuccess")
    if result.ok:
        # Every session was signed out, this browser's too.
        if current_token(request):
            clear_session(request)
        context["done"] = True
        return await _anonymous_page(request, "pages/reset_password.html", context)
    context["outcome"] = result
    return await _anonymous_page(request, "pages/reset_password.html", context)


async def verify_email(request: Request) -> Response:
    variables = {"input": {"token": request.path_params["token"]}}
    response = await Api(request).anonymous(VERIFY_EMAIL, variables)
    result = outcome(response, "verifyEmail", "VerifyEmailSuccess")
    email = (result.get("user") or {}).get("email") if result.ok else None
    return await _anonymous_page(
        request,
        "pages/verify_email.html",
        {"outcome": result, "email": email},
    )


async def _anonymous_page(request: Request, template: str, context: dict[str, Any]) -> Response:
    """A page anyone may see: the header still shows who is signed in, if anyone.

    A form shown again with its errors answers 200: it is the page the browser asked
    for, and a 4xx document would log a resource error in the browser's console.
    """
    return await render_page(request, template, context)
