"""Access tokens (ES256, published JWKS) and rotating refresh tokens, through the router."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest
from joserfc import jwt
from joserfc.jwk import ECKey

from klikkflow.kit.auth import JWKS_PATH, new_signing_key
from klikkflow.kit.crypto import derive_key, unseal
from klikkflow.kit.stores import init_mongo
from subgraphs.identity.keys import _CONTEXT
from subgraphs.identity.models import DOCUMENTS, SigningKeyDocument
from tests.factories.graphql import data, gql
from tests.factories.identity import sign_up

REFRESH = """mutation ($t: String!) { refreshToken(input: {refreshToken: $t}) {
  __typename ... on AuthPayload { accessToken refreshToken expiresIn }
  ... on InvalidTokenError { message } } }"""
LOG_IN = """mutation ($e: String!) { logIn(input: {email: $e, password: "correct horse battery"}) {
  ... on AuthPayload { accessToken refreshToken } } }"""


async def _log_in(client, platform, email: str) -> dict:
    return data(await gql(client, platform.router_url, LOG_IN, {"e": email}))["logIn"]


async def _refresh(client, platform, token: str) -> dict:
    return data(await gql(client, platform.router_url, REFRESH, {"t": token}))["refreshToken"]


async def test_a_refresh_token_works_once_and_its_reuse_ends_the_session(platform, client):
    account = await sign_up(client, platform.router_url)
    first = await _log_in(client, platform, account.email)
    second = await _refresh(client, platform, first["refreshToken"])
    assert second["__typename"] == "AuthPayload"
    assert second["expiresIn"] == 900
    me = await gql(client, platform.router_url, "{ me { id } }", token=second["accessToken"])
    assert data(me)["me"]["id"] == account.user_id

    replayed = await _refresh(client, platform, first["refreshToken"])  # stolen and replayed
    assert replayed == {"__typename": "InvalidTokenError", "message": "invalid refresh token"}
    # The whole family is revoked: the legitimate holder's newer token is dead too.
    after = await _refresh(client, platform, second["refreshToken"])
    assert after["__typename"] == "InvalidTokenError"


async def test_sessions_are_listed_and_can_be_ended(platform, client):
    account = await sign_up(client, platform.router_url)
    laptop = await _log_in(client, platform, account.email)
    phone = await _log_in(client, platform, account.email)
    listed = data(
        await gql(
            client, platform.router_url, "{ sessions { id current } }", token=laptop["accessToken"]
        )
    )["sessions"]
    assert len(listed) == 3  # sign-up, laptop, phone
    assert sum(s["current"] for s in listed) == 1
    phone_id = next(
        s["id"]
        for s in data(
            await gql(
                client,
                platform.router_url,
                "{ sessions { id current } }",
                token=phone["accessToken"],
            )
        )["sessions"]
        if s["current"]
    )
    ended = data(
        await gql(
            client,
            platform.router_url,
            "mutation ($id: ID!) { revokeSession(input: {id: $id}) { __typename } }",
            {"id": phone_id},
            laptop["accessToken"],
        )
    )["revokeSession"]
    assert ended["__typename"] == "RevokeSessionSuccess"
    assert (await _refresh(client, platform, phone["refreshToken"]))["__typename"] == (
        "InvalidTokenError"
    )
    out = data(
        await gql(client, platform.router_url, "mutation { logOut }", token=laptop["accessToken"])
    )
    assert out["logOut"] is True
    assert (await _refresh(client, platform, laptop["refreshToken"]))["__typename"] == (
        "InvalidTokenError"
    )


async def test_another_users_session_cannot_be_ended(platform, client):
    alice = await sign_up(client, platform.router_url)
    bob = await sign_up(client, platform.router_url)
    alice_sessions = data(
        await gql(client, platform.router_url, "{ sessions { id } }", token=alice.token)
    )["sessions"]
    result = data(
        await gql(
            client,
            platform.router_url,
            "mutation ($id: ID!) { revokeSession(input: {id: $id}) { __typename } }",
            {"id": alice_sessions[0]["id"]},
            bob.token,
        )
    )["revokeSession"]
    assert result["__typename"] == "NotFoundError"


@pytest.fixture
async def signing_key(platform) -> ECKey:
    """The identity subgraph's current private key, read as an attacker with the master
    secret would: used to mint tokens that differ from real ones in one claim only."""
    mongo = await init_mongo(platform.mongo_uri, platform.settings.mongo_db, DOCUMENTS)
    try:
        current = SigningKeyDocument.retired_at == None  # noqa: E711 - a MongoDB query
        stored = await SigningKeyDocument.find(current).sort("-created_at").first_or_none()
    finally:
        await mongo.close()
    assert stored is not None
    pem = unseal(
        stored.private_sealed, derive_key(platform.settings.secret_key, "signing keys"), _CONTEXT
    )
    return ECKey.import_key(pem, {"kid": stored.kid})


def _mint(key: ECKey, account, **overrides) -> str:
    now = int(time.time())
    claims = {
        "iss": "klikkflow",
        "aud": "klikkflow-api",
        "sub": account.user_id,
        "org": account.organization_id,
        "role": "owner",
        "iat": now,
        "exp": now + 60,
        **overrides,
    }
    return jwt.encode({"alg": "ES256", "kid": key.kid}, claims, key, algorithms=["ES256"])


@pytest.mark.parametrize(
    ("case", "overrides"),
    [
        ("expired", {"exp": int(time.time()) - 10}),
        ("wrong audience", {"aud": "another-api"}),
        ("wrong issuer", {"iss": "evil"}),
        ("unknown role", {"role": "superuser"}),
    ],
)
async def test_tokens_that_differ_in_one_claim_are_refused(
    platform, client, signing_key, case, overrides
):
    account = await sign_up(client, platform.router_url)
    valid = await gql(
        client, platform.router_url, "{ me { id } }", token=_mint(signing_key, account)
    )
    assert data(valid)["me"]["id"] == account.user_id  # the minting itself is right
    refused = await gql(
        client, platform.router_url, "{ me { id } }", token=_mint(signing_key, account, **overrides)
    )
    assert refused["data"] is None or refused["data"]["me"] is None
    assert refused["errors"][0]["message"].startswith("invalid token"), (case, refused)


async def test_a_forged_signature_is_refused(platform, client, signing_key):
    account = await sign_up(client, platform.router_url)
    impostor = new_signing_key(signing_key.kid)  # same kid, another key
    refused = await gql(
        client,
        platform.router_url,
        "{ workflows { edges { node { id } } } }",
        token=_mint(impostor, account),
    )
    assert refused["errors"][0]["message"].startswith("invalid token")


async def test_the_signing_keys_are_published_without_private_parts(platform):
    base = platform.urls["identity"].removesuffix("/graphql")
    async with httpx.AsyncClient(trust_env=False) as http:
        jwks = (await http.get(base + JWKS_PATH)).json()
    assert jwks["keys"]
    for key in jwks["keys"]:
        assert key["kty"] == "EC"
        assert key["alg"] == "ES256"
        assert "d" not in key  # never the private scalar


async def test_key_rotation_keeps_tokens_of_the_old_key_valid(platform, client, signing_key):
    from subgraphs.identity.keys import KeyService

    account = await sign_up(client, platform.router_url)
    old_token = _mint(signing_key, account)
    mongo = await init_mongo(platform.mongo_uri, platform.settings.mongo_db, DOCUMENTS)
    try:
        new_kid = await KeyService().rotate(platform.settings)
    finally:
        await mongo.close()
    base = platform.urls["identity"].removesuffix("/graphql")
    async with httpx.AsyncClient(trust_env=False) as http:
        kids = {k["kid"] for k in (await http.get(base + JWKS_PATH)).json()["keys"]}
    assert {signing_key.kid, new_kid} <= kids  # the retired key stays published
    still = await gql(client, platform.router_url, "{ me { id } }", token=old_token)
    assert data(still)["me"]["id"] == account.user_id


@pytest.mark.parametrize("token", ["not-a-jwt", "eyJhbGciOiJub25lIn0.e30.", "kf_deadbeef_nope"])
async def test_refused_tokens_land_in_the_audit_log(platform, client, token):
    from pymongo import AsyncMongoClient

    mongo: AsyncMongoClient = AsyncMongoClient(platform.mongo_uri)
    log = mongo[platform.settings.mongo_db]["audit_log"]
    refusals = {"organization_id": "", "action": "auth.token.refused", "data.service": "workflows"}
    try:
        before = await log.count_documents(refusals)
        answer = await gql(
            client, platform.router_url, "{ workflows { edges { node { id } } } }", token=token
        )
        assert answer["errors"][0]["message"].startswith("invalid token")
        for _ in range(50):  # reported in the background: give it a moment
            if await log.count_documents(refusals) > before:
                break
            await asyncio.sleep(0.1)
        newest = await log.find_one(refusals, sort=[("seq", -1)])
        assert await log.count_documents(refusals) >= before + 1
    finally:
        await mongo.close()
    assert newest["data"]["reason"]
    assert token not in str(newest)  # the token itself is never written down
