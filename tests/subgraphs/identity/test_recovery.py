"""Password reset and e-mail verification, following the links from real mail."""

from __future__ import annotations

import asyncio
import re
import secrets

from tests.factories.graphql import data, gql
from tests.factories.identity import SIGN_UP

REQUEST = """mutation ($e: String!) { requestPasswordReset(input: {email: $e}) { __typename } }"""
RESET = """mutation ($t: String!, $p: String!) { resetPassword(input: {token: $t, password: $p}) {
  __typename ... on ValidationError { fields { path } } } }"""
VERIFY = """mutation ($t: String!) { verifyEmail(input: {token: $t}) {
  __typename ... on VerifyEmailSuccess { user { emailVerified } } } }"""
LOG_IN = """mutation ($e: String!, $p: String!) { logIn(input: {email: $e, password: $p}) {
  __typename } }"""
REFRESH = """mutation ($t: String!) { refreshToken(input: {refreshToken: $t}) { __typename } }"""


async def _link(mailbox, address: str, kind: str, count: int = 1) -> str:
    box, _ = mailbox
    for _ in range(50):
        if len([m for m in box.to(address) if kind in m.get_content()]) >= count:
            break
        await asyncio.sleep(0.1)
    bodies = [m.get_content() for m in box.to(address) if kind in m.get_content()]
    assert len(bodies) == count, bodies
    return re.search(rf"http://dashboard\.test/{kind}/([\w-]+)", bodies[-1]).group(1)


async def _sign_up(client, platform) -> tuple[str, dict]:
    email = f"reset-{secrets.token_hex(4)}@example.com"
    result = data(
        await gql(
            client,
            platform.router_url,
            SIGN_UP,
            {
                "input": {
                    "email": email,
                    "name": "Reset Me",
                    "password": "correct horse battery",
                    "organizationName": "R",
                }
            },
        )
    )["signUp"]
    return email, result


async def test_sign_up_mails_a_verification_link_that_works_once(platform, client, mailbox):
    email, _ = await _sign_up(client, platform)
    token = await _link(mailbox, email, "verify-email")
    verified = data(await gql(client, platform.router_url, VERIFY, {"t": token}))["verifyEmail"]
    assert verified == {"__typename": "VerifyEmailSuccess", "user": {"emailVerified": True}}
    again = data(await gql(client, platform.router_url, VERIFY, {"t": token}))["verifyEmail"]
    assert again["__typename"] == "InvalidTokenError"


async def test_a_reset_link_sets_a_new_password_and_signs_out_everywhere(platform, client, mailbox):
    email, signed_up = await _sign_up(client, platform)
    unknown = data(await gql(client, platform.router_url, REQUEST, {"e": "ghost@example.com"}))
    known = data(await gql(client, platform.router_url, REQUEST, {"e": email}))
    assert (
        unknown == known == {"requestPasswordReset": {"__typename": "RequestPasswordResetSuccess"}}
    )
    token = await _link(mailbox, email, "reset-password")
    weak = data(await gql(client, platform.router_url, RESET, {"t": token, "p": "password1"}))
    assert weak["resetPassword"]["__typename"] == "ValidationError"
    done = data(
        await gql(client, platform.router_url, RESET, {"t": token, "p": "a brand new passphrase"})
    )
    assert done["resetPassword"]["__typename"] == "ResetPasswordSuccess"
    reused = data(
        await gql(client, platform.router_url, RESET, {"t": token, "p": "another new passphrase"})
    )
    assert reused["resetPassword"]["__typename"] == "InvalidTokenError"
    old = data(
        await gql(client, platform.router_url, LOG_IN, {"e": email, "p": "correct horse battery"})
    )["logIn"]
    new = data(
        await gql(client, platform.router_url, LOG_IN, {"e": email, "p": "a brand new passphrase"})
    )["logIn"]
    assert (old["__typename"], new["__typename"]) == ("InvalidCredentialsError", "AuthPayload")
    refreshed = data(
        await gql(client, platform.router_url, REFRESH, {"t": signed_up["refreshToken"]})
    )["refreshToken"]
    assert refreshed["__typename"] == "InvalidTokenError"  # the old session is gone


async def test_reset_requests_are_limited_per_address(platform, client, mailbox):
    email, _ = await _sign_up(client, platform)
    for _ in range(5):
        await gql(client, platform.router_url, REQUEST, {"e": email})
    await asyncio.sleep(0.5)
    box, _ = mailbox
    assert len([m for m in box.to(email) if "reset-password" in m.get_content()]) == 3
