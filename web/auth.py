"""Which token the dashboard forwards to the router on the viewer's behalf."""

from __future__ import annotations

from starlette.requests import Request

TOKEN_COOKIE = "kf_token"


def viewer_token(request: Request) -> str | None:
    """The browser's Bearer token, else its ``kf_token`` cookie, else None."""
    scheme, _, credentials = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() == "bearer" and credentials.strip():
        return credentials.strip()
    return request.cookies.get(TOKEN_COOKIE) or None
