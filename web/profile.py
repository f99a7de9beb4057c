"""The profile page: your sessions, and two-factor authentication (TOTP)."""

from __future__ import annotations

import base64
import re
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from web.forms import ERROR_MESSAGE, Outcome, error_text, outcome
from web.session import Api, read_form
from web.viewer import load_viewer, render_page

SESSIONS_QUERY = """\
query Sessions {
  sessions { id createdAt lastUsedAt expiresAt userAgent current }
  me { mfaEnabled }
}
"""

REVOKE_SESSION = f"""\
mutation RevokeSession($input: RevokeSessionInput!) {{
  revokeSession(input: $input) {{ __typename ... on RevokeSessionSuccess {{ id }} {ERROR_MESSAGE} }}
}}
"""

START_MFA = "mutation StartMfa { startMfaEnrolment { secret otpauthUri qrSvg } }"

CONFIRM_MFA = """\
mutation ConfirmMfa($input: MfaCodeInput!) {
  confirmMfaEnrolment(input: $input) {
    __typename
    ... on MfaEnabled { recoveryCodes }
    ... on InvalidCodeError { message }
  }
}
"""

DISABLE_MFA = """\
mutation DisableMfa($input: MfaCodeInput!) {
  disableMfa(input: $input) {
    __typename
    ... on MfaDisabled { ok }
    ... on InvalidCodeError { message }
  }
}
"""

SVG_NAMESPACE = "http://www.w3.org/2000/svg"
_XML_DECLARATION = re.compile(r"^<\?xml[^>]*\?>\s*")


def qr_image_src(svg: str) -> str | None:
    """A ``data:`` URL of the QR code, for an ``<img>``: its markup is never inlined.

    An image runs no script anyway; anything that does not look like a plain SVG
    document is refused all the same (the page then offers the secret to type in).
    """
    text = svg.strip()
    body = _XML_DECLARATION.sub("", text)
    if not body.startswith("<svg") or "<script" in text.lower():
        return None
    if "xmlns=" not in body.split(">", 1)[0]:  # an SVG image needs its namespace
        body = f'<svg xmlns="{SVG_NAMESPACE}"' + body[len("<svg") :]
    return "data:image/svg+xml;base64," + base64.b64encode(body.encode()).decode("ascii")


async def profile_page(request: Request) -> Response:
    viewer = await load_viewer(request, required=True)
    context = await _sessions_context(request)
    return await render_page(
        request, "pages/profile.html", {**context, "viewer": viewer, "nav": "profile"}
    )


async def revoke_session(request: Request) -> Response:
    await read_form(request)
    variables = {"input": {"id": request.path_params["session_id"]}}
    result = outcome(await Api(request).call(REVOKE_SESSION, variables), "revokeSession")
    context = await _sessions_context(request)
    if result.ok:
        context["sessions_notice"] = "The session was ended."
    else:
        context["sessions_outcome"] = result
    return await render_page(
        request,
        "pages/profile.html",
        {**context, "nav": "profile"},
        fragment="partials/profile_sessions.html",
    )


async def start_mfa(request: Request) -> Response:
    await read_form(request)
    response = await Api(request).call(START_MFA)
    enrolment = (response.data or {}).get("startMfaEnrolment")
    if not isinstance(enrolment, dict):
        return await _mfa(request, {"mfa_outcome": Outcome(message=error_text(response))})
    context = {
        "enrolment": {
            "secret": enrolment.get("secret", ""),
            "otpauth_uri": enrolment.get("otpauthUri", ""),
            "qr_src": qr_image_src(str(enrolment.get("qrSvg") or "")),
        }
    }
    return await _mfa(request, context)


async def confirm_mfa(request: Request) -> Response:
    form = await read_form(request)
    variables = {"input": {"code": form.get("code", "")}}
    result = outcome(
        await Api(request).call(CONFIRM_MFA, variables), "confirmMfaEnrolment", "MfaEnabled"
    )
    if result.ok:
        return await _mfa(request, {"recovery_codes": result.get("recoveryCodes") or []})
    return await _mfa(request, {"confirm_outcome": result, "enrolment_pending": True})


async def disable_mfa(request: Request) -> Response:
    form = await read_form(request)
    variables = {"input": {"code": form.get("code", "")}}
    result = outcome(await Api(request).call(DISABLE_MFA, variables), "disableMfa", "MfaDisabled")
    if result.ok:
        return await _mfa(request, {"mfa_notice": "Two-factor authentication is off."})
    return await _mfa(request, {"disable_outcome": result})


MFA_STATE_QUERY = "query MfaState { me { mfaEnabled } }"


async def _mfa_enabled(request: Request) -> bool:
    response = await Api(request).call(MFA_STATE_QUERY)
    return bool(((response.data or {}).get("me") or {}).get("mfaEnabled"))


async def _mfa(request: Request, extra: dict[str, Any]) -> Response:
    """The MFA section: a fragment for HTMX, a small page of its own otherwise."""
    context: dict[str, Any] = {
        "mfa_enabled": await _mfa_enabled(request),
        "enrolment": None,
        "enrolment_pending": False,
        "recovery_codes": None,
        "mfa_notice": None,
        "mfa_outcome": None,
        "confirm_outcome": Outcome(),
        "disable_outcome": Outcome(),
        "nav": "profile",
        **extra,
    }
    return await render_page(request, "pages/mfa.html", context, fragment="partials/mfa.html")


async def _sessions_context(request: Request) -> dict[str, Any]:
    response = await Api(request).call(SESSIONS_QUERY)
    return {
        "mfa_enabled": bool(((response.data or {}).get("me") or {}).get("mfaEnabled")),
        "sessions": (response.data or {}).get("sessions") or [],
        "sessions_error": error_text(response) if response.errors else None,
        "sessions_outcome": None,
        "sessions_notice": None,
        "enrolment": None,
        "enrolment_pending": False,
        "recovery_codes": None,
        "mfa_notice": None,
        "mfa_outcome": None,
        "confirm_outcome": Outcome(),
        "disable_outcome": Outcome(),
    }
