"""X-KlikkFlow-Organization: a token is refused for any organization but its own, through
the router, over HTTP and WebSocket, and the refusal is audited like any bad token."""

from __future__ import annotations

import asyncio

import pytest
from pymongo import AsyncMongoClient

from tests.factories.graphql import data, gql
from tests.factories.identity import sign_up
from tests.factories.subscriptions import ws_subscribe

ME = "{ me { id } }"
WORKFLOW = '{ workflow(id: "0123456789abcdef01234567") { id } }'
EVENTS = """subscription ($id: ID!) { executionEvents(executionId: $id) { seq } }"""


async def test_a_token_is_served_for_its_own_organization(platform, client):
    account = await sign_up(client, platform.router_url)
    answer = await gql(
        client, platform.router_url, ME, token=account.token, organization=account.organization_id
    )
    assert data(answer)["me"]["id"] == account.user_id


@pytest.mark.parametrize("case", ["another organization", "unknown id", "malformed"])
@pytest.mark.parametrize("query", [ME, WORKFLOW])  # identity and workflows
async def test_a_token_is_refused_for_any_other_organization(platform, client, case, query):
    account = await sign_up(client, platform.router_url)
    other = await sign_up(client, platform.router_url, org="Other")
    requested = {
        "another organization": other.organization_id,
        "unknown id": "0123456789abcdef01234567",
        "malformed": "not an id",
    }[case]
    refused = await gql(
        client, platform.router_url, query, token=account.token, organization=requested
    )
    assert refused["data"] is None or not any(refused["data"].values()), (case, refused)
    assert refused["errors"][0]["message"].startswith("invalid token"), (case, refused)


async def test_a_websocket_client_is_refused_for_another_organization(platform, client):
    account = await sign_up(client, platform.router_url)
    other = await sign_up(client, platform.router_url, org="Other")
    unknown_execution = "0123456789abcdef01234567"
    payloads = await asyncio.wait_for(
        ws_subscribe(
            platform.router_url,
            EVENTS,
            {"id": unknown_execution},
            account.token,
            organization=other.organization_id,
        ),
        30,
    )
    messages = [e["message"] for e in payloads[0]["errors"]]
    assert any(m.startswith("invalid token") for m in messages), messages
    # The same socket set-up with the token's own organization gets past authentication.
    own = await asyncio.wait_for(
        ws_subscribe(
            platform.router_url,
            EVENTS,
            {"id": unknown_execution},
            account.token,
            organization=account.organization_id,
        ),
        30,
    )
    messages = [e["message"] for e in own[0]["errors"]]
    assert any("not found" in m for m in messages), messages


async def test_a_refusal_for_another_organization_lands_in_the_audit_log(platform, client):
    account = await sign_up(client, platform.router_url)
    other = await sign_up(client, platform.router_url, org="Other")
    mongo: AsyncMongoClient = AsyncMongoClient(platform.mongo_uri)
    log = mongo[platform.settings.mongo_db]["audit_log"]
    refusals = {
        "organization_id": "",
        "action": "auth.token.refused",
        "data.service": "workflows",
        "data.reason": {"$regex": other.organization_id},
    }
    try:
        answer = await gql(
            client,
            platform.router_url,
            WORKFLOW,
            token=account.token,
            organization=other.organization_id,
        )
        assert answer["errors"][0]["message"].startswith("invalid token")
        for _ in range(50):  # reported in the background: give it a moment
            if await log.count_documents(refusals):
                break
            await asyncio.sleep(0.1)
        assert await log.count_documents(refusals) == 1
        newest = await log.find_one(refusals)
    finally:
        await mongo.close()
    assert account.token not in str(newest)
