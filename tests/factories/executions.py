"""Running workflows through the router and waiting for them, for tests."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx

from tests.factories.graphql import data, gql
from tests.factories.identity import Account

RUN = """mutation ($id: ID!, $items: [JSON!]) { runWorkflow(input: {workflowId: $id,
  items: $items}) { __typename ... on RunWorkflowSuccess { execution { id status } }
  ... on ValidationError { fields { path message } } } }"""
EXECUTION = """query ($id: ID!) { execution(id: $id) { status mode workflowVersion
  error { message node type }
  nodes { node runIndex status tries inputs outputs error { message } } } }"""
FINAL = ("SUCCEEDED", "FAILED", "CANCELLED")


async def start_run(
    client: httpx.AsyncClient,
    router_url: str,
    account: Account,
    workflow_id: str,
    items: list[Any] | None = None,
) -> str:
    result = data(
        await gql(client, router_url, RUN, {"id": workflow_id, "items": items}, account.token)
    )["runWorkflow"]
    assert result["__typename"] == "RunWorkflowSuccess", result
    execution_id: str = result["execution"]["id"]
    return execution_id


async def execution(
    client: httpx.AsyncClient, router_url: str, account: Account, execution_id: str
) -> dict[str, Any]:
    found: dict[str, Any] = data(
        await gql(client, router_url, EXECUTION, {"id": execution_id}, account.token)
    )["execution"]
    return found


async def wait_for_status(
    client: httpx.AsyncClient,
    router_url: str,
    account: Account,
    execution_id: str,
    statuses: tuple[str, ...] = FINAL,
    seconds: float = 30,
) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for _ in range(int(seconds / 0.05)):
        found = await execution(client, router_url, account, execution_id)
        if found["status"] in statuses:
            return found
        await asyncio.sleep(0.05)
    raise AssertionError(f"execution {execution_id} never reached {statuses}: {found}")


async def run_and_wait(
    client: httpx.AsyncClient,
    router_url: str,
    account: Account,
    workflow_id: str,
    items: list[Any] | None = None,
) -> dict[str, Any]:
    execution_id = await start_run(client, router_url, account, workflow_id, items)
    return await wait_for_status(client, router_url, account, execution_id)


def output(found: dict[str, Any], node: str) -> list[dict[str, Any]]:
    """The JSON of a node's (single run's) main output items."""
    [run] = [n for n in found["nodes"] if n["node"] == node]
    return [item["json"] for item in run["outputs"]["main"]]
