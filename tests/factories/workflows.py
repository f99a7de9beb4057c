from __future__ import annotations

from typing import Any

import httpx

from tests.factories.graphql import data, gql
from tests.factories.identity import Account

CREATE_WORKFLOW = """
mutation Create($input: CreateWorkflowInput!) {
  createWorkflow(input: $input) {
    __typename
    ... on CreateWorkflowSuccess { workflow { id name version definition } }
    ... on ValidationError { message fields { path message } }
  }
}
"""

UPDATE_WORKFLOW = """
mutation Update($input: UpdateWorkflowInput!) {
  updateWorkflow(input: $input) {
    __typename
    ... on WorkflowSuccess { workflow { id name version tags definition activeVersion } }
    ... on ValidationError { message fields { path message } }
    ... on VersionConflictError { message expectedVersion currentVersion }
    ... on Error { message }
  }
}
"""


def node(name: str, node_type: str = "noOp", **extra: Any) -> dict[str, Any]:
    """A node of a workflow definition, its id derived from its name."""
    return {"id": name.lower().replace(" ", "-"), "name": name, "type": node_type, **extra}


def link(source: str, target: str, output: str = "main") -> dict[str, str]:
    return {"source": source, "sourceOutput": output, "target": target}


def chain(*names: str) -> dict[str, Any]:
    """A definition: a Manual Trigger followed by No Op nodes, in a line."""
    nodes = [node("Start", "manualTrigger")] + [node(n) for n in names]
    links = [link(a["name"], b["name"]) for a, b in zip(nodes, nodes[1:], strict=False)]
    return {"nodes": nodes, "connections": links}


async def create_workflow(  # a Manual Trigger alone unless a definition is given
    client: httpx.AsyncClient,
    router_url: str,
    account: Account,
    name: str = "My workflow",
    definition: dict[str, Any] | None = None,
    **extra: Any,
) -> str:
    variables = {"input": {"name": name, "definition": definition or chain(), **extra}}
    result = data(await gql(client, router_url, CREATE_WORKFLOW, variables, account.token))[
        "createWorkflow"
    ]
    assert result["__typename"] == "CreateWorkflowSuccess", result
    return result["workflow"]["id"]


async def update_workflow(
    client: httpx.AsyncClient, router_url: str, account: Account, **fields: Any
) -> dict[str, Any]:
    result = data(await gql(client, router_url, UPDATE_WORKFLOW, {"input": fields}, account.token))
    found: dict[str, Any] = result["updateWorkflow"]
    return found
