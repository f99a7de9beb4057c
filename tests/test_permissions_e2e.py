"""The matrix enforced through the router, with API keys of each role as the callers."""

from __future__ import annotations

import pytest

from tests.factories.graphql import data, gql
from tests.factories.identity import sign_up
from tests.factories.workflows import CREATE_WORKFLOW

KEY = """mutation ($role: String!) { createApiKey(input: {name: "r", role: $role}) {
  ... on CreateApiKeySuccess { secret } } }"""
CASES = {
    "createWorkflow": (CREATE_WORKFLOW, {"input": {"name": "x"}}, "CreateWorkflowSuccess"),
    "createKnowledgeBase": (
        'mutation { createKnowledgeBase(input: {name: "k"}) { __typename } }',
        {},
        "CreateKnowledgeBaseSuccess",
    ),
    "inviteMember": (
        'mutation { inviteMember(input: {email: "p@example.com", role: "viewer"}) { __typename } }',
        {},
        "InviteMemberSuccess",
    ),
}
LEAST = {"createWorkflow": "editor", "createKnowledgeBase": "editor", "inviteMember": "admin"}
RANK = ["admin", "editor", "viewer"]


@pytest.mark.parametrize("field", sorted(CASES))
async def test_each_role_may_do_what_the_matrix_allows(platform, client, field):
    owner = await sign_up(client, platform.router_url)
    query, variables, success = CASES[field]
    for role in RANK:
        key = data(await gql(client, platform.router_url, KEY, {"role": role}, owner.token))
        result = data(
            await gql(client, platform.router_url, query, variables, key["createApiKey"]["secret"])
        )[field]
        expected = success if RANK.index(role) <= RANK.index(LEAST[field]) else "ForbiddenError"
        assert result["__typename"] == expected, (field, role)
