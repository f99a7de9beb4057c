"""End to end through the real router: entities of one subgraph resolved by another."""

from __future__ import annotations

from tests.factories.graphql import data, gql
from tests.factories.identity import sign_up
from tests.factories.workflows import create_workflow

WORKFLOW_WITH_OWNER = """
query ($id: ID!) {
  workflow(id: $id) { id name owner { id email name workflows { id name } } }
}
"""


async def test_workflow_owner_and_user_workflows_resolve_across_subgraphs(platform, client):
    account = await sign_up(client, platform.router_url)
    first = await create_workflow(client, platform.router_url, account, "First")
    second = await create_workflow(client, platform.router_url, account, "Second")

    result = data(
        await gql(client, platform.router_url, WORKFLOW_WITH_OWNER, {"id": first}, account.token)
    )
    owner = result["workflow"]["owner"]
    assert owner["id"] == account.user_id
    assert owner["email"] == account.email  # resolved by identity
    assert [w["id"] for w in owner["workflows"]] == [second, first]  # by workflows, newest first

    me = data(
        await gql(
            client, platform.router_url, "{ me { id workflows { name } } }", token=account.token
        )
    )["me"]
    assert me["id"] == account.user_id
    assert {w["name"] for w in me["workflows"]} == {"First", "Second"}


async def test_another_organization_sees_nothing(platform, client):
    alice = await sign_up(client, platform.router_url, "Alice Inc")
    bob = await sign_up(client, platform.router_url, "Bob Ltd")
    workflow_id = await create_workflow(client, platform.router_url, alice, "Secret")

    as_bob = data(
        await gql(client, platform.router_url, WORKFLOW_WITH_OWNER, {"id": workflow_id}, bob.token)
    )
    assert as_bob["workflow"] is None
    listed = data(
        await gql(
            client, platform.router_url, "{ workflows { edges { node { id } } } }", token=bob.token
        )
    )
    assert workflow_id not in {e["node"]["id"] for e in listed["workflows"]["edges"]}
    alice_as_bob = data(
        await gql(
            client,
            platform.router_url,
            "query ($id: ID!) { user(id: $id) { id } }",
            {"id": alice.user_id},
            bob.token,
        )
    )
    assert alice_as_bob["user"] is None
    org = data(
        await gql(
            client,
            platform.router_url,
            "query ($id: ID!) { organization(id: $id) { id } }",
            {"id": alice.organization_id},
            bob.token,
        )
    )
    assert org["organization"] is None


async def test_requests_without_a_valid_token_are_refused(platform, client):
    anonymous = await gql(client, platform.router_url, "{ workflows { edges { node { id } } } }")
    assert anonymous["errors"][0]["message"] == "authentication required"
    forged = await gql(
        client, platform.router_url, "{ workflows { edges { node { id } } } }", token="not.a.jwt"
    )
    assert forged["errors"][0]["message"].startswith("invalid token")


async def test_sign_up_refuses_bad_input_with_every_problem(platform, client):
    result = data(
        await gql(
            client,
            platform.router_url,
            """
        mutation { signUp(input: {email: "nope", name: " ", password: "short",
                                  organizationName: ""}) {
          __typename ... on ValidationError { fields { path } } } }""",
        )
    )["signUp"]
    assert result["__typename"] == "ValidationError"
    assert {f["path"] for f in result["fields"]} == {
        "email",
        "name",
        "password",
        "organizationName",
    }


async def test_log_in_does_not_say_which_part_was_wrong(platform, client):
    account = await sign_up(client, platform.router_url)
    query = """mutation ($e: String!, $p: String!) { logIn(input: {email: $e, password: $p}) {
        __typename ... on InvalidCredentialsError { message }
        ... on AuthPayload { user { id } } } }"""
    wrong_password = data(
        await gql(client, platform.router_url, query, {"e": account.email, "p": "wrong password!"})
    )["logIn"]
    unknown = data(
        await gql(
            client, platform.router_url, query, {"e": "nobody@example.com", "p": "wrong password!"}
        )
    )["logIn"]
    assert (
        wrong_password
        == unknown
        == {"__typename": "InvalidCredentialsError", "message": "invalid e-mail or password"}
    )
    ok = data(
        await gql(
            client,
            platform.router_url,
            query,
            {"e": account.email.upper(), "p": "correct horse battery"},
        )
    )["logIn"]
    assert ok["user"]["id"] == account.user_id


async def test_knowledge_base_lives_in_postgres_per_organization(platform, client):
    alice = await sign_up(client, platform.router_url)
    bob = await sign_up(client, platform.router_url)
    created = data(
        await gql(
            client,
            platform.router_url,
            """
        mutation { createKnowledgeBase(input: {name: "Docs"}) {
          __typename ... on CreateKnowledgeBaseSuccess { knowledgeBase { id name } } } }""",
            token=alice.token,
        )
    )["createKnowledgeBase"]
    kb_id = created["knowledgeBase"]["id"]
    query = "query ($id: ID!) { knowledgeBase(id: $id) { name } }"
    mine = data(await gql(client, platform.router_url, query, {"id": kb_id}, alice.token))
    assert mine["knowledgeBase"] == {"name": "Docs"}
    theirs = data(await gql(client, platform.router_url, query, {"id": kb_id}, bob.token))
    assert theirs["knowledgeBase"] is None


LOG_IN_ANY = """mutation ($e: String!, $p: String!) { logIn(input: {email: $e, password: $p}) {
    __typename ... on InvalidCredentialsError { message }
    ... on TooManyAttemptsError { message retryAfterSeconds } } }"""


async def test_repeated_failures_lock_known_and_unknown_accounts_alike(platform, client):
    account = await sign_up(client, platform.router_url)

    async def attempt(email: str, password: str = "wrong password!") -> dict:
        result = await gql(client, platform.router_url, LOG_IN_ANY, {"e": email, "p": password})
        return data(result)["logIn"]

    for email in (account.email, "nobody-here@example.com"):
        answers = [(await attempt(email))["__typename"] for _ in range(7)]
        # Five free failures, then a growing lock-out: the same for both addresses.
        assert answers == ["InvalidCredentialsError"] * 6 + ["TooManyAttemptsError"], email
        # Right away (the first lock lasts a second), even the right password waits.
        locked = await attempt(email, "correct horse battery")
        assert locked["__typename"] == "TooManyAttemptsError"
        assert locked["retryAfterSeconds"] >= 1


async def test_weak_passwords_are_refused_with_the_reason(platform, client):
    result = data(
        await gql(
            client,
            platform.router_url,
            """
        mutation { signUp(input: {email: "weak@example.com", name: "Weak Example",
                                  password: "Password123!", organizationName: "W"}) {
          __typename ... on ValidationError { fields { path message } } } }""",
        )
    )["signUp"]
    assert result["__typename"] == "ValidationError"
    [problem] = result["fields"]
    assert problem["path"] == "password"
    assert "most common passwords" in problem["message"]
