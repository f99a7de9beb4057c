"""The identity pages over plain HTTP, against the real router and subgraphs: CSRF, the
log-in redirect, cookie attributes and the refresh of a refused access token."""

from __future__ import annotations

import asyncio
import base64
import re
import secrets
from collections.abc import AsyncIterator
from http.cookies import SimpleCookie
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from graphql import build_schema, parse, validate

from tests.conftest import Mailbox
from web import accounts, api_keys, audit, members, profile, session, viewer
from web.profile import qr_image_src
from web.session import safe_next

SCHEMA = Path(__file__).parents[2] / "schemas" / "identity.graphql"


def new_account() -> dict[str, str]:
    tag = secrets.token_hex(4)
    return {
        "email": f"pages-{tag}@example.com",
        "name": f"Page Tester {tag}",
        "password": f"{secrets.token_urlsafe(12)}-Vx9!",
        "organizationName": f"Pages Org {tag}",
    }


def set_cookies(response: httpx.Response) -> dict[str, SimpleCookie]:
    """Every Set-Cookie of the response, by cookie name, with its attributes."""
    cookies: dict[str, SimpleCookie] = {}
    for header in response.headers.get_list("set-cookie"):
        cookie: SimpleCookie = SimpleCookie()
        cookie.load(header)
        for name in cookie:
            cookies[name] = cookie
    return cookies


@pytest.fixture
async def browser_like(web_url: str) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client that keeps cookies, like a browser, but does not follow redirects."""
    async with httpx.AsyncClient(base_url=web_url, trust_env=False, timeout=20) as client:
        yield client


async def csrf(client: httpx.AsyncClient, page: str = "/login") -> str:
    response = await client.get(page)
    assert response.status_code == 200
    token = client.cookies.get("kf_csrf")
    assert token, "the page set no CSRF cookie"
    assert f'name="csrf_token" value="{token}"' in response.text
    return token


async def sign_up(client: httpx.AsyncClient) -> dict[str, str]:
    account = new_account()
    token = await csrf(client, "/signup")
    response = await client.post("/signup", data={**account, "csrf_token": token})
    assert response.status_code == 303, response.text
    assert response.headers["location"] == "/"
    return account


# -- CSRF ----------------------------------------------------------------------------


async def test_a_post_without_the_matching_csrf_token_is_refused(
    browser_like: httpx.AsyncClient,
) -> None:
    token = await csrf(browser_like)
    login = {"email": "nobody@example.com", "password": "not-the-password"}

    wrong = await browser_like.post("/login", data={**login, "csrf_token": "x" * 43})
    missing = await browser_like.post("/login", data=login)
    header = await browser_like.post("/login", data=login, headers={"X-CSRF-Token": token})
    field = await browser_like.post("/login", data={**login, "csrf_token": token})

    assert wrong.status_code == 403
    assert missing.status_code == 403
    assert "security token" in wrong.text
    # With the token (as a field, or as the header HTMX sends) the log-in is attempted.
    assert header.status_code == 200
    assert field.status_code == 200
    assert "Wrong e-mail address or password" in header.text
    assert "Wrong e-mail address or password" in field.text


async def test_a_csrf_token_without_its_cookie_is_refused(web_url: str) -> None:
    async with httpx.AsyncClient(base_url=web_url, trust_env=False) as client:
        await csrf(client)
        token = client.cookies["kf_csrf"]
        client.cookies.clear()
        response = await client.post("/logout", data={"csrf_token": token})

    assert response.status_code == 403


async def test_the_csrf_cookie_is_http_only_and_lax(web_url: str) -> None:
    async with httpx.AsyncClient(base_url=web_url, trust_env=False) as client:
        response = await client.get("/login")

    cookie = set_cookies(response)["kf_csrf"]["kf_csrf"]
    assert cookie["httponly"]
    assert cookie["samesite"].lower() == "lax"
    assert cookie["path"] == "/"
    assert not cookie["secure"]  # plain http here; https gets Secure


# -- the log-in redirect ---------------------------------------------------------------


@pytest.mark.parametrize("path", ["/members", "/api-keys", "/profile", "/audit?action=x"])
async def test_pages_that_need_a_session_send_you_to_log_in(
    browser_like: httpx.AsyncClient, path: str
) -> None:
    response = await browser_like.get(path)

    assert response.status_code == 303
    location = urlsplit(response.headers["location"])
    assert location.path == "/login"
    assert parse_qs(location.query)["next"] == [path]


async def test_htmx_requests_without_a_session_are_redirected_by_htmx(
    browser_like: httpx.AsyncClient,
) -> None:
    response = await browser_like.get("/audit", headers={"HX-Request": "true"})

    assert response.status_code == 204
    assert response.headers["HX-Redirect"] == "/login?next=%2Faudit"


async def test_log_in_comes_back_to_the_page_asked_for(browser_like: httpx.AsyncClient) -> None:
    account = await sign_up(browser_like)
    browser_like.cookies.delete("kf_token")
    browser_like.cookies.delete("kf_refresh")

    page = await browser_like.get("/login?next=/members")
    token = browser_like.cookies["kf_csrf"]
    assert 'name="next" value="/members"' in page.text
    credentials = {"email": account["email"], "password": account["password"]}
    response = await browser_like.post(
        "/login", data={**credentials, "next": "/members", "csrf_token": token}
    )
    offsite = await browser_like.post(
        "/login", data={**credentials, "next": "//evil.example/", "csrf_token": token}
    )

    assert response.status_code == 303
    assert response.headers["location"] == "/members"
    assert offsite.headers["location"] == "/"


async def test_log_in_limits_see_the_browser_address_not_the_dashboard(
    browser_like: httpx.AsyncClient, platform
) -> None:
    from redis.asyncio import Redis

    from klikkflow.kit.ratelimit import ip_key
    from subgraphs.identity.service import LOGIN_BY_ADDRESS, AddressLimits

    account = await sign_up(browser_like)
    browser_like.cookies.delete("kf_token")
    browser_like.cookies.delete("kf_refresh")
    token = await csrf(browser_like)
    sprayer = f"198.19.{secrets.randbelow(256)}.{secrets.randbelow(254) + 1}"
    redis = Redis.from_url(platform.redis_url)
    try:
        limits = AddressLimits()
        limits.use_redis(redis)
        limiter = limits.limiter(LOGIN_BY_ADDRESS)
        for _ in range(limiter.limit):  # this browser's network has used up its window
            await limiter.hit(ip_key(sprayer))
    finally:
        await redis.aclose()
    credentials = {"email": account["email"], "password": account["password"]}
    form = {**credentials, "csrf_token": token}

    refused = await browser_like.post("/login", data=form, headers={"X-Forwarded-For": sprayer})
    served = await browser_like.post("/login", data=form)

    assert refused.status_code == 200
    assert 'data-error="TooManyAttemptsError"' in refused.text
    assert served.status_code == 303  # the dashboard's other users are not stopped


async def test_pending_invitations_are_listed_and_revoked_with_the_csrf_token(
    browser_like: httpx.AsyncClient,
) -> None:
    await sign_up(browser_like)
    token = await csrf(browser_like, "/members")
    invitee = f"pending-{secrets.token_hex(4)}@example.com"
    htmx = {"HX-Request": "true", "X-CSRF-Token": token}
    invited = await browser_like.post(
        "/members/invite", data={"email": invitee, "role": "editor"}, headers=htmx
    )
    assert invited.status_code == 200
    assert invited.text.lstrip().startswith("<section")  # the fragment, for HTMX
    row = re.search(
        rf'<tr data-invitation="{re.escape(invitee)}" data-role="editor">.*?'
        r'action="(/members/invitations/[^"]+/revoke)"',
        invited.text,
        re.S,
    )
    assert row, invited.text
    revoke = row.group(1)

    forged = await browser_like.post(revoke, data={})  # no CSRF token: refused
    assert forged.status_code == 403
    assert f'data-invitation="{invitee}"' in (await browser_like.get("/members")).text

    revoked = await browser_like.post(revoke, data={}, headers=htmx)
    assert revoked.status_code == 200
    assert "The invitation was revoked" in revoked.text
    assert f'data-invitation="{invitee}"' not in revoked.text
    assert f'data-invitation="{invitee}"' not in (await browser_like.get("/members")).text


# -- sessions in cookies ---------------------------------------------------------------


async def test_sign_up_sets_http_only_session_cookies_and_shows_the_organization(
    browser_like: httpx.AsyncClient,
) -> None:
    account = new_account()
    token = await csrf(browser_like, "/signup")
    response = await browser_like.post("/signup", data={**account, "csrf_token": token})

    assert response.status_code == 303
    cookies = set_cookies(response)
    for name in ("kf_token", "kf_refresh"):
        cookie = cookies[name][name]
        assert cookie.value
        assert cookie["httponly"]
        assert cookie["samesite"].lower() == "lax"
        assert cookie["path"] == "/"
        assert not cookie["secure"]
    home = await browser_like.get("/")
    assert account["organizationName"] in home.text
    assert account["name"] in home.text
    assert 'href="/members"' in home.text


async def test_sign_up_shows_what_is_wrong_next_to_the_input(
    browser_like: httpx.AsyncClient,
) -> None:
    account = {**new_account(), "password": "password12"}
    token = await csrf(browser_like, "/signup")
    response = await browser_like.post("/signup", data={**account, "csrf_token": token})

    assert response.status_code == 200
    assert re.search(r'data-field-error="password">[^<]+<', response.text), response.text
    assert f'value="{account["email"]}"' in response.text  # the form keeps what was typed
    assert "kf_token" not in set_cookies(response)


async def test_a_refused_access_token_is_refreshed_once_and_the_cookies_replaced(
    browser_like: httpx.AsyncClient,
) -> None:
    account = await sign_up(browser_like)
    refresh_before = browser_like.cookies["kf_refresh"]
    browser_like.cookies.set("kf_token", "garbage.not-a.jwt", domain="127.0.0.1")

    response = await browser_like.get("/members")

    assert response.status_code == 200, response.headers
    assert account["email"] in response.text
    cookies = set_cookies(response)
    assert cookies["kf_token"]["kf_token"].value not in ("", "garbage.not-a.jwt")
    assert cookies["kf_refresh"]["kf_refresh"].value not in ("", refresh_before)
    # The browser now holds the new pair, and it works.
    assert browser_like.cookies["kf_token"] != "garbage.not-a.jwt"
    assert (await browser_like.get("/profile")).status_code == 200


async def test_a_failed_refresh_clears_the_cookies_and_sends_you_to_log_in(
    browser_like: httpx.AsyncClient,
) -> None:
    await sign_up(browser_like)
    browser_like.cookies.set("kf_token", "garbage.not-a.jwt", domain="127.0.0.1")
    browser_like.cookies.set("kf_refresh", "not-a-refresh-token", domain="127.0.0.1")

    response = await browser_like.get("/profile")

    assert response.status_code == 303
    assert response.headers["location"] == "/login?next=%2Fprofile"
    cookies = set_cookies(response)
    for name in ("kf_token", "kf_refresh"):
        assert cookies[name][name].value == ""
        assert cookies[name][name]["max-age"] == "0"


async def test_an_anonymous_page_with_a_dead_session_shows_you_signed_out(
    browser_like: httpx.AsyncClient,
) -> None:
    browser_like.cookies.set("kf_token", "garbage.not-a.jwt", domain="127.0.0.1")

    response = await browser_like.get("/")

    assert response.status_code == 200
    assert 'href="/login"' in response.text
    assert set_cookies(response)["kf_token"]["kf_token"].value == ""


async def test_log_out_ends_the_session(browser_like: httpx.AsyncClient) -> None:
    await sign_up(browser_like)
    old_refresh = browser_like.cookies["kf_refresh"]

    response = await browser_like.post(
        "/logout", data={"csrf_token": browser_like.cookies["kf_csrf"]}
    )

    assert response.status_code == 303
    assert response.headers["location"] == "/login"
    assert "kf_token" not in browser_like.cookies
    # The identity service ended it: its refresh token buys no new access token.
    browser_like.cookies.set("kf_token", "garbage.not-a.jwt", domain="127.0.0.1")
    browser_like.cookies.set("kf_refresh", old_refresh, domain="127.0.0.1")
    assert (await browser_like.get("/members")).status_code == 303


# -- mailed links ----------------------------------------------------------------------


async def mailed_token(mailbox: Mailbox, address: str, path: str) -> str:
    pattern = re.compile(r"http://dashboard\.test" + re.escape(path) + r"([A-Za-z0-9_\-.~%]+)")
    for _ in range(100):
        for message in reversed(mailbox.to(address)):
            body = message.get_body(preferencelist=("plain", "html"))
            found = pattern.search(body.get_content() if body is not None else "")
            if found:
                return found.group(1)
        await asyncio.sleep(0.1)
    raise AssertionError(f"no {path} link mailed to {address}")


async def test_password_reset_and_email_verification_from_the_mailed_links(
    browser_like: httpx.AsyncClient, mailbox: tuple[Mailbox, int]
) -> None:
    box, _port = mailbox
    account = await sign_up(browser_like)

    verify_token = await mailed_token(box, account["email"], "/verify-email/")
    verified = await browser_like.get(f"/verify-email/{verify_token}")
    assert 'id="email-verified"' in verified.text
    assert f"{account['email']} is confirmed" in verified.text
    again = await browser_like.get("/verify-email/not-a-token")
    assert 'id="email-not-verified"' in again.text

    token = browser_like.cookies["kf_csrf"]
    unknown = await browser_like.post(
        "/reset-password", data={"email": "nobody-here@example.com", "csrf_token": token}
    )
    known = await browser_like.post(
        "/reset-password", data={"email": account["email"], "csrf_token": token}
    )
    assert 'id="reset-sent"' in known.text
    assert visible(unknown.text) == visible(known.text)  # tells nothing about the address

    reset_token = await mailed_token(box, account["email"], "/reset-password/")
    form = await browser_like.get(f"/reset-password/{reset_token}")
    assert 'id="reset-password-form"' in form.text
    new_password = f"{secrets.token_urlsafe(12)}-Rw4!"
    done = await browser_like.post(
        f"/reset-password/{reset_token}", data={"password": new_password, "csrf_token": token}
    )
    assert 'id="reset-done"' in done.text
    spent = await browser_like.post(
        f"/reset-password/{reset_token}", data={"password": new_password, "csrf_token": token}
    )
    assert 'data-error="InvalidTokenError"' in spent.text

    logged_in = await browser_like.post(
        "/login",
        data={"email": account["email"], "password": new_password, "csrf_token": token},
    )
    assert logged_in.status_code == 303


async def test_an_unknown_invitation_says_so(browser_like: httpx.AsyncClient) -> None:
    token = await csrf(browser_like, "/invitations/not-a-token")
    response = await browser_like.post(
        "/invitations/not-a-token",
        data={
            "name": "Someone",
            "password": f"{secrets.token_urlsafe(12)}-Rw4!",
            "csrf_token": token,
        },
    )

    assert response.status_code == 200
    assert 'data-error="InvalidTokenError"' in response.text
    assert "kf_token" not in set_cookies(response)


def visible(html: str) -> str:
    return " ".join(re.sub(r"<[^>]+>", " ", html.split("<main", 1)[-1]).split())


# -- pieces without the platform ------------------------------------------------------


def test_every_query_the_dashboard_sends_is_valid_against_the_identity_schema() -> None:
    sdl = SCHEMA.read_text()
    sdl = re.sub(r"schema @link\(.*?\)\s*\{", "schema {", sdl, flags=re.S)
    directives = (
        "directive @key(fields: String!) repeatable on OBJECT | INTERFACE\n"
        "directive @shareable on OBJECT | FIELD_DEFINITION\n"
    )
    schema = build_schema(directives + sdl)
    queries = {
        f"{module.__name__}.{name}": value
        for module in (accounts, api_keys, audit, members, profile, session, viewer)
        for name, value in vars(module).items()
        if name.isupper() and isinstance(value, str) and re.match(r"\s*(query|mutation)\b", value)
    }
    assert len(queries) >= 25
    for name, query in queries.items():
        assert not validate(schema, parse(query)), name


def test_the_qr_code_becomes_an_image_and_never_markup() -> None:
    svg = '<svg width="10" height="10" class="segno"><path d="M0 0h1"/></svg>'
    src = qr_image_src(svg)
    assert src is not None
    assert src.startswith("data:image/svg+xml;base64,")
    decoded = base64.b64decode(src.split(",", 1)[1]).decode()
    assert decoded.startswith('<svg xmlns="http://www.w3.org/2000/svg" width="10"')
    assert qr_image_src('<?xml version="1.0"?>\n' + svg) is not None
    assert qr_image_src("<svg><script>alert(1)</script></svg>") is None
    assert qr_image_src("<img src=x onerror=alert(1)>") is None


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("/members", "/members"),
        ("/audit?after=abc", "/audit?after=abc"),
        ("//evil.example", "/"),
        ("https://evil.example/", "/"),
        ("/\\evil.example", "/"),
        ("", "/"),
        (None, "/"),
    ],
)
def test_safe_next_keeps_redirects_on_this_site(value: str | None, expected: str) -> None:
    assert safe_next(value) == expected
