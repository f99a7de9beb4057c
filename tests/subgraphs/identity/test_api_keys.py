"""API keys through the router: created once, accepted by every subgraph, revocable."""

from __future__ import annotations

from tests.factories.graphql import data, gql
from tests.factories.identity import sign_up
from tests.factories.workflows import CREATE_WORKFLOW

CREATE = """mutation ($name: String!, $role: String!, $days: Int) {
  createApiKey(input: {name: $name, role: $role, expiresInDays: $days}) {
    __typename
    ... on CreateApiKeySuccess { secret apiKey { id prefix role expiresAt } }
    ... on ValidationError { fields { path message } }
    ... on ForbiddenError { message } } }"""
REVOKE = "mutation ($id: ID!) { revokeApiKey(input: {id: $id}) { __typename } }"


async def _create(client, platform, token, name="ci", role="editor", days=30) -> dict:
    result = await gql(
        client, platform.router_url, CREATE, {"name": name, "role": role, "days": days}, token
    )
    return data(result)["createApiKey"]


async def test_an_api_key_acts_for_its_organization_in_every_subgraph(platform, client):
    owner = await sign_up(client, platform.router_url)
    created = await _create(client, platform, owner.token)
    assert created["__typename"] == "CreateApiKeySuccess"
    secret = created["secret"]
    assert secret.startswith(created["apiKey"]["prefix"] + "_")
    made = data(
        await gql(
            client, platform.router_url, CREATE_WORKFLOW, {"input": {"name": "From CI"}}, secret
        )
    )["createWorkflow"]
    assert made["__typename"] == "CreateWorkflowSuccess"  # workflows subgraph accepted it
    listed = data(
        await gql(
            client,
            platform.router_url,
            "{ workflows { edges { node { name owner { id } } } } }",
            token=secret,
        )
    )["workflows"]["edges"]
    assert [e["node"] for e in listed] == [{"name": "From CI", "owner": {"id": owner.user_id}}]
    keys = data(
        await gql(
            client,
            platform.router_url,
            "{ apiKeys { prefix role lastUsedAt revoked } }",
            token=owner.token,
        )
    )["apiKeys"]
    assert keys[0]["prefix"] == created["apiKey"]["prefix"]
    assert keys[0]["lastUsedAt"] is not None
    assert "secret" not in str(keys)  # only the prefix is ever shown again


async def test_a_revoked_key_is_refused(platform, client):
    owner = await sign_up(client, platform.router_url)
    created = await _create(client, platform, owner.token)
    revoked = data(
        await gql(client, platform.router_url, REVOKE, {"id": created["apiKey"]["id"]}, owner.token)
    )["revokeApiKey"]
    assert revoked["__typename"] == "RevokeApiKeySuccess"
    refused = await gql(
        client,
        platform.router_url,
        "{ workflows { edges { node { id } } } }",
        token=created["secret"],
    )
    assert refused["errors"][0]["message"].startswith("invalid token")
    forged = await gql(
        client,
        platform.router_url,
        "{ workflows { edges { node { id } } } }",
        token=created["apiKey"]["prefix"] + "_not-the-secret",
    )
    assert forged["errors"][0]["message"].startswith("invalid token")


async def test_keys_cannot_exceed_their_creator_or_create_keys(platform, client):
    owner = await sign_up(client, platform.router_url)
    admin_key = (await _create(client, platform, owner.token, role="admin"))["secret"]
    from_key = await _create(client, platform, admin_key, role="viewer")
    assert from_key["__typename"] == "ForbiddenError"  # keys do not mint keys
    bad = await _create(client, platform, owner.token, name="", role="root", days=0)
    assert bad["__typename"] == "ValidationError"
    assert {f["path"] for f in bad["fields"]} == {"name", "role", "expiresInDays"}


async def test_another_organization_cannot_see_or_revoke_a_key(platform, client):
    alice = await sign_up(client, platform.router_url)
    bob = await sign_up(client, platform.router_url)
    created = await _create(client, platform, alice.token)
    seen = data(await gql(client, platform.router_url, "{ apiKeys { id } }", token=bob.token))[
        "apiKeys"
    ]
    assert created["apiKey"]["id"] not in {k["id"] for k in seen}
    attempt = data(
        await gql(client, platform.router_url, REVOKE, {"id": created["apiKey"]["id"]}, bob.token)
    )["revokeApiKey"]
    assert attempt["__typename"] == "NotFoundError"
