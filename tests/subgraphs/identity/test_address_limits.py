"""Per-address limits on logIn, refreshToken and requestPasswordReset, through the router:
one client spraying many accounts is stopped, other clients are still served. The client
address comes from X-Forwarded-For, believed from the loopback router and test client."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from klikkflow.kit.ratelimit import ip_key
from subgraphs.identity.service import (
    ADDRESS_LIMITS,
    LOGIN_BY_ADDRESS,
    REFRESH_BY_ADDRESS,
    RESET_BY_ADDRESS,
    AddressLimits,
)
from tests.factories.identity import sign_up

LOG_IN = """mutation ($e: String!, $p: String!) { logIn(input: {email: $e, password: $p}) {
  __typename ... on TooManyAttemptsError { message retryAfterSeconds } } }"""
REFRESH = """mutation ($t: String!) { refreshToken(input: {refreshToken: $t}) {
  __typename ... on TooManyAttemptsError { retryAfterSeconds } } }"""
RESET = """mutation ($e: String!) { requestPasswordReset(input: {email: $e}) {
  __typename ... on TooManyAttemptsError { retryAfterSeconds } } }"""


def new_address() -> str:
    """A fresh address of the benchmarking range (198.18.0.0/15), never a trusted proxy."""
    return f"198.18.{secrets.randbelow(256)}.{secrets.randbelow(254) + 1}"


@pytest.fixture
async def limits(platform) -> AsyncIterator[AddressLimits]:
    """The identity subgraph's own address limiters, on the same Redis."""
    redis = Redis.from_url(platform.redis_url)
    shared = AddressLimits()
    shared.use_redis(redis)
    yield shared
    await redis.aclose()


async def use_up(limits: AddressLimits, action: str, address: str, leave: int = 0) -> None:
    """Spend all but ``leave`` of ``address``'s attempts at ``action`` in this window."""
    limit, _ = ADDRESS_LIMITS[action]
    for _ in range(limit - leave):
        assert (await limits.limiter(action).hit(ip_key(address))).allowed


async def ask(client, platform, query: str, variables: dict, address: str) -> dict:
    response = await client.post(
        platform.router_url,
        json={"query": query, "variables": variables},
        headers={"x-forwarded-for": address},
    )
    body = response.json()
    assert not body.get("errors"), body
    return next(iter(body["data"].values()))


async def test_log_ins_for_many_accounts_from_one_address_are_stopped(platform, client, limits):
    account = await sign_up(client, platform.router_url)
    sprayer, bystander = new_address(), new_address()
    await use_up(limits, LOGIN_BY_ADDRESS, sprayer, leave=3)
    for _ in range(3):  # the last attempts of the window, each for another account
        ghost = f"ghost-{secrets.token_hex(4)}@example.com"
        answer = await ask(client, platform, LOG_IN, {"e": ghost, "p": "guess-1234"}, sprayer)
        assert answer["__typename"] == "InvalidCredentialsError"
    fresh = f"ghost-{secrets.token_hex(4)}@example.com"
    refused = await ask(client, platform, LOG_IN, {"e": fresh, "p": "guess-1234"}, sprayer)
    assert refused["__typename"] == "TooManyAttemptsError"
    assert refused["retryAfterSeconds"] >= 1
    # The right password of a real account changes nothing: the address is stopped.
    right = {"e": account.email, "p": "correct horse battery"}
    assert (await ask(client, platform, LOG_IN, right, sprayer))["__typename"] == (
        "TooManyAttemptsError"
    )
    # Another client is served as usual.
    assert (await ask(client, platform, LOG_IN, right, bystander))["__typename"] == "AuthPayload"


async def test_an_ipv6_client_is_limited_by_its_64(platform, client, limits):
    await use_up(limits, LOGIN_BY_ADDRESS, "2001:db8:7:1::1")
    same_host = {"e": f"ghost-{secrets.token_hex(4)}@example.com", "p": "guess-1234"}
    answer = await ask(client, platform, LOG_IN, same_host, "2001:db8:7:1:ffff::2")
    assert answer["__typename"] == "TooManyAttemptsError"
    answer = await ask(client, platform, LOG_IN, same_host, "2001:db8:7:2::1")
    assert answer["__typename"] == "InvalidCredentialsError"


async def test_refreshes_and_reset_requests_are_limited_per_address(platform, client, limits):
    sprayer, bystander = new_address(), new_address()
    await use_up(limits, REFRESH_BY_ADDRESS, sprayer)
    await use_up(limits, RESET_BY_ADDRESS, sprayer)
    stolen = {"t": f"rt_{secrets.token_urlsafe(32)}"}
    assert (await ask(client, platform, REFRESH, stolen, sprayer))["__typename"] == (
        "TooManyAttemptsError"
    )
    assert (await ask(client, platform, REFRESH, stolen, bystander))["__typename"] == (
        "InvalidTokenError"
    )
    mail = {"e": f"ghost-{secrets.token_hex(4)}@example.com"}
    assert (await ask(client, platform, RESET, mail, sprayer))["__typename"] == (
        "TooManyAttemptsError"
    )
    assert (await ask(client, platform, RESET, mail, bystander))["__typename"] == (
        "RequestPasswordResetSuccess"
    )
