from __future__ import annotations

import httpx

from tests.factories.graphql import data, gql
from tests.factories.identity import Account

CREATE_WORKFLOW = """
mutation Create($input: CreateWorkflowInput!) {
  createWorkflow(input: $input) {
    __typename
    ... on CreateWorkflowSuccess { workflow { id name } }
    ... on ValidationError { message fields { path message } }
  }
}
"""


async def create_workflow(
    client: httpx.AsyncClient, router_url: str, account: Account, name: str = "My workflow"
) -> str:
    result = data(
        await gql(client, router_url, CREATE_WORKFLOW, {"input": {"name": name}}, account.token)
    )["createWorkflow"]
    assert result["__typename"] == "CreateWorkflowSuccess", result
    return result["workflow"]["id"]
