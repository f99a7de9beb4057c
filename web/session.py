"""The browser's session: token cookies, CSRF, and router calls on the viewer's behalf.

After a log-in the access token lives in ``kf_token`` and the refresh token in
``kf_refresh`` (both HttpOnly, SameSite=Lax). :class:`Api` sends the access token as a
Bearer token; when the router refuses it ("invalid token", "authentication required") it
trades ``kf_refresh`` for a new pair once, updates both cookies and retries. When that
fails too it raises :class:`LoginRequired`, which the app turns into a redirect to /login.

CSRF is a double submit: a random ``kf_csrf`` cookie, echoed by every POST form in a
hidden ``csrf_token`` field (HTMX requests also send it as the ``X-CSRF-Token`` header,
set with ``hx-headers`` on ``<body>``). A POST whose echo does not match gets a 403.

Handlers never set cookies on their responses directly: they queue them on the request
(:func:`set_session`, :func:`clear_session`, :func:`csrf_token`) and
:class:`SessionCookieMiddleware` adds them to whatever response goes out.
"""

from __future__ import annotations

import asyncio
import base64
import json
import re
import secrets
import time
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlencode

from starlette.datastructures import URL, MutableHeaders
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from klikkflow.kit.crypto import token_digest
from klikkflow.kit.forwarded import FORWARDED_FOR, forward_for
from web.auth import TOKEN_COOKIE
from web.graphql_client import JSON, GraphQLResponse, RouterUnavailable, execute

REFRESH_COOKIE = "kf_refresh"
CSRF_COOKIE = "kf_csrf"
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "X-CSRF-Token"

# Router error messages that mean "this credential is no good": worth one refresh.
AUTH_ERROR_PREFIXES = ("invalid token", "authentication required")

# Keys of this request's entries in ``scope["state"]``.
_COOKIES = "kf_cookie_updates"  # name -> (value, max_age) to set, or None to delete
_TOKEN = "kf_current_token"  # the access token to use from now on in this request
_REFRESHED = "kf_refreshed"  # a refresh was tried in this request
_CSRF = "kf_csrf_token"

_CSRF_SHAPE = re.compile(r"[A-Za-z0-9_-]{32,128}")

REFRESH_MUTATION = """\
mutation Refresh($input: RefreshTokenInput!) {
  refreshToken(input: $input) {
    __typename
    ... on AuthPayload { accessToken refreshToken expiresIn }
    ... on InvalidTokenError { message }
  }
}
"""

LOG_OUT_MUTATION = "mutation LogOut { logOut }"


class LoginRequired(Exception):
    """No usable session: the app redirects to /login?next=<this page>."""

    def __init__(self, expired: bool = False) -> None:
        super().__init__("session expired" if expired else "not signed in")
        self.expired = expired


# -- cookies -------------------------------------------------------------------------


def _state(request: Request) -> dict[str, Any]:
    state: dict[str, Any] = request.scope.setdefault("state", {})
    return state


def _queue_cookie(request: Request, name: str, value: str | None, max_age: int) -> None:
    _state(request).setdefault(_COOKIES, {})[name] = (value, max_age) if value else None


def _cookie_lifetime(request: Request) -> int:
    settings = getattr(request.state, "settings", None)
    return int(getattr(settings, "refresh_token_ttl_seconds", 30 * 86_400))


def set_session(request: Request, access_token: str, refresh_token: str) -> None:
    """Queue both token cookies; later calls in this request use the new access token.

    The access-token cookie outlives the token itself on purpose: an expired token is
    refreshed on the next page view; a cookie that vanished would look like a sign-out.
    """
    lifetime = _cookie_lifetime(request)
    _queue_cookie(request, TOKEN_COOKIE, access_token, lifetime)
    _queue_cookie(request, REFRESH_COOKIE, refresh_token, lifetime)
    _state(request)[_TOKEN] = access_token


def set_session_from(request: Request, payload: JSON) -> None:
    set_session(request, str(payload["accessToken"]), str(payload["refreshToken"]))


def clear_session(request: Request) -> None:
    _queue_cookie(request, TOKEN_COOKIE, None, 0)
    _queue_cookie(request, REFRESH_COOKIE, None, 0)
    _state(request)[_TOKEN] = None


def current_token(request: Request) -> str | None:
    """The access token for this request: a new one if it was replaced, else the cookie's."""
    state = _state(request)
    if _TOKEN in state:
        token: str | None = state[_TOKEN]
        return token
    return request.cookies.get(TOKEN_COOKIE) or None


def _current_refresh_token(request: Request) -> str | None:
    queued = _state(request).get(_COOKIES, {})
    if REFRESH_COOKIE in queued:
        update = queued[REFRESH_COOKIE]
        return update[0] if update else None
    return request.cookies.get(REFRESH_COOKIE) or None


def has_session(request: Request) -> bool:
    return bool(current_token(request) or _current_refresh_token(request))


def token_claims(request: Request) -> dict[str, Any]:
    """The access token's claims, NOT verified: for display choices only (which
    organization is active, whether to offer admin forms). The router verifies every
    request; nothing here grants anything."""
    token = current_token(request)
    if not token or token.count(".") != 2:
        return {}
    payload = token.split(".")[1]
    try:
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (ValueError, UnicodeDecodeError):
        return {}
    return claims if isinstance(claims, dict) else {}


class SessionCookieMiddleware:
    """Adds the cookies a handler queued on its request to the response, whatever it is."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        updates: dict[str, tuple[str, int] | None] = {}
        scope.setdefault("state", {})[_COOKIES] = updates
        secure = scope.get("scheme") == "https"

        async def send_with_cookies(message: Message) -> None:
            if message["type"] == "http.response.start" and updates:
                headers = MutableHeaders(scope=message)
                for name, update in updates.items():
                    headers.append("set-cookie", _cookie_header(name, update, secure))
            await send(message)

        await self.app(scope, receive, send_with_cookies)


def _cookie_header(name: str, update: tuple[str, int] | None, secure: bool) -> str:
    carrier = Response()
    if update is None:
        carrier.delete_cookie(name, path="/", secure=secure, httponly=True, samesite="lax")
    else:
        value, max_age = update
        carrier.set_cookie(
            name, value, max_age=max_age, path="/", secure=secure, httponly=True, samesite="lax"
        )
    return carrier.headers["set-cookie"]


# -- CSRF ----------------------------------------------------------------------------


def csrf_token(request: Request) -> str:
    """This browser's CSRF token (set as a cookie the first time it is needed)."""
    state = _state(request)
    token: str | None = state.get(_CSRF)
    if token:
        return token
    token = request.cookies.get(CSRF_COOKIE)
    if not token or not _CSRF_SHAPE.fullmatch(token):
        token = secrets.token_urlsafe(32)
        _queue_cookie(request, CSRF_COOKIE, token, _cookie_lifetime(request))
    state[_CSRF] = token
    return token


async def read_form(request: Request) -> dict[str, str]:
    """The POSTed form's text fields, after the CSRF check (403 on a mismatch)."""
    form = await request.form()
    submitted = form.get(CSRF_FIELD)
    if not isinstance(submitted, str) or not submitted:
        submitted = request.headers.get(CSRF_HEADER, "")
    expected = request.cookies.get(CSRF_COOKIE, "")
    if not expected or not submitted or not secrets.compare_digest(submitted, expected):
        raise HTTPException(403, "The form's security token is missing or out of date.")
    return {
        name: value if "password" in name else value.strip()
        for name, value in form.items()
        if isinstance(value, str)
    }


# -- redirects -----------------------------------------------------------------------


def safe_next(value: str | None, default: str = "/") -> str:
    """``value`` if it is a path on this site, else ``default`` (no open redirects)."""
    if not value or not value.startswith("/") or value.startswith("//") or "\\" in value:
        return default
    return value


def login_url(request: Request) -> str:
    url = request.url
    if request.method != "GET":  # after a POST, come back to the page, not the action
        url = URL(request.headers.get("HX-Current-URL") or request.headers.get("Referer") or "/")
    target = url.path + (f"?{url.query}" if url.query else "")
    return "/login?" + urlencode({"next": safe_next(target)})


# -- the router, on the viewer's behalf ------------------------------------------------


def is_auth_error(response: GraphQLResponse) -> bool:
    return any(
        str(e.get("message", "")).lower().startswith(AUTH_ERROR_PREFIXES) for e in response.errors
    )


class RefreshCoalescer:
    """One ``refreshToken`` call per refresh token, shared by concurrent requests.

    A refresh token works once and presenting a spent one ends the whole session: two
    tabs loading at once after the access token expired must not both spend it. The
    outcome is remembered briefly (keyed by a hash, not the token) for late arrivals.
    """

    def __init__(self, remember_seconds: float = 10.0) -> None:
        self.remember_seconds = remember_seconds
        self._inflight: dict[str, asyncio.Future[JSON | None]] = {}
        self._recent: dict[str, tuple[float, JSON | None]] = {}

    async def refresh(
        self, refresh_token: str, trade: Callable[[], Awaitable[JSON | None]]
    ) -> JSON | None:
        key = token_digest(refresh_token)
        now = time.monotonic()
        self._recent = {k: v for k, v in self._recent.items() if v[0] > now}
        if key in self._recent:
            return self._recent[key][1]
        future = self._inflight.get(key)
        if future is None:
            future = asyncio.ensure_future(trade())
            self._inflight[key] = future
            try:
                result = await asyncio.shield(future)
            finally:
                self._inflight.pop(key, None)
            self._recent[key] = (time.monotonic() + self.remember_seconds, result)
            return result
        return await asyncio.shield(future)


_fallback_coalescer = RefreshCoalescer()


class Api:
    """GraphQL calls to the router for one request (raises ``RouterUnavailable``)."""

    def __init__(self, request: Request) -> None:
        self.request = request
        self.http = request.state.http
        self.url: str = request.state.settings.router_url
        # Log-in limits per address must see the browser, not the dashboard.
        peer = request.client.host if request.client else None
        self.forwarded_for = forward_for(request.headers.get(FORWARDED_FOR), peer)

    async def _execute(
        self,
        query: str,
        variables: JSON | None,
        token: str | None = None,
        timeout: float | None = None,
    ) -> GraphQLResponse:
        return await execute(
            self.http,
            self.url,
            query,
            variables,
            token=token,
            forwarded_for=self.forwarded_for,
            timeout=timeout,
        )

    async def anonymous(self, query: str, variables: JSON | None = None) -> GraphQLResponse:
        """A call without credentials (sign-up, log-in, password reset...)."""
        return await self._execute(query, variables)

    async def call(
        self, query: str, variables: JSON | None = None, *, timeout: float | None = None
    ) -> GraphQLResponse:
        """A call as the signed-in viewer, refreshing the session once if needed;
        ``timeout`` (seconds) replaces the usual one for a call known to take long."""
        token = current_token(self.request)
        if token is None:
            if not await self.refresh():
                raise LoginRequired()
            token = current_token(self.request)
        response = await self._execute(query, variables, token, timeout)
        if is_auth_error(response) and not _state(self.request).get(_REFRESHED):
            if not await self.refresh():
                raise LoginRequired(expired=True)
            token = current_token(self.request)
            response = await self._execute(query, variables, token, timeout)
        if is_auth_error(response):
            clear_session(self.request)
            raise LoginRequired(expired=True)
        return response

    async def refresh(self) -> bool:
        """Trade ``kf_refresh`` for a new pair (queued as cookies); False clears both."""
        state = _state(self.request)
        state[_REFRESHED] = True
        refresh_token = _current_refresh_token(self.request)
        if not refresh_token:
            if current_token(self.request) is not None:
                clear_session(self.request)
            return False

        async def trade() -> JSON | None:
            variables = {"input": {"refreshToken": refresh_token}}
            response = await self.anonymous(REFRESH_MUTATION, variables)
            result = (response.data or {}).get("refreshToken") or {}
            return result if result.get("__typename") == "AuthPayload" else None

        coalescer = getattr(self.request.state, "refreshes", None) or _fallback_coalescer
        payload = await coalescer.refresh(refresh_token, trade)
        if payload is None:
            clear_session(self.request)
            return False
        set_session_from(self.request, payload)
        return True

    async def log_out(self) -> None:
        """End the session at the identity service (best effort) and clear the cookies."""
        try:
            if has_session(self.request):
                await self.call(LOG_OUT_MUTATION)
        except (LoginRequired, RouterUnavailable):
            pass  # nothing to end, or nobody to tell: the cookies go anyway
        clear_session(self.request)
