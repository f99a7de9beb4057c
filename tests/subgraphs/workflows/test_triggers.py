"""Activation through the router: webhook paths unique per organization (a collision is
a typed error), schedules with their next tick in their time zone, re-registration on
publish, removal on deactivate and archive; organization variables."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from zoneinfo import ZoneInfo

from tests.factories.graphql import data, gql
from tests.factories.identity import sign_up
from tests.factories.workflows import create_workflow, link, node, update_workflow

ACTIVATE = """mutation ($id: ID!) { activateWorkflow(input: {id: $id}) { __typename
  ... on WorkflowSuccess { workflow { active activeVersion webhooks { path method node }
      schedules { node timezone nextRunAt } } }
  ... on WebhookPathTakenError { message path method workflowId } } }"""
DEACTIVATE = """mutation ($id: ID!) { deactivateWorkflow(input: {id: $id}) { __typename
  ... on WorkflowSuccess { workflow { active webhooks { path } schedules { node } } } } }"""
TRIGGERS = """query ($id: ID!) { workflow(id: $id) { active activeVersion
  webhooks { path method } schedules { node } } }"""


def hooked(path: str, method: str = "POST", cron: str | None = None) -> dict:
    nodes = [
        node("Hook", "webhook", typeVersion=2, parameters={"httpMethod": method, "path": path}),
        node("Done"),
    ]
    links = [link("Hook", "Done")]
    if cron:
        nodes.append(
            node(
                "Every morning",
                "scheduleTrigger",
                typeVersion=1.2,
                parameters={
                    "rule": {"interval": [{"field": "cronExpression", "expression": cron}]},
                    "timezone": "Europe/Oslo",
                },
            )
        )
        links.append(link("Every morning", "Done"))
    return {"nodes": nodes, "connections": links}


async def _call(client, platform, account, query, workflow_id):
    answer = data(await gql(client, platform.router_url, query, {"id": workflow_id}, account.token))
    return next(iter(answer.values()))


async def test_activation_registers_webhooks_and_schedules(platform, client):
    account = await sign_up(client, platform.router_url, "Hooks")
    first = await create_workflow(
        client, platform.router_url, account, "Orders", hooked("/orders/", cron="0 9 * * *")
    )
    active = await _call(client, platform, account, ACTIVATE, first)
    assert active["__typename"] == "WorkflowSuccess"
    workflow = active["workflow"]
    assert (workflow["active"], workflow["activeVersion"]) == (True, 1)
    assert workflow["webhooks"] == [{"path": "orders", "method": "POST", "node": "Hook"}]
    [schedule] = workflow["schedules"]
    assert schedule["timezone"] == "Europe/Oslo"
    local = datetime.fromisoformat(schedule["nextRunAt"]).astimezone(ZoneInfo("Europe/Oslo"))
    assert (local.hour, local.minute) == (9, 0)

    # Another workflow of the organization may not take the same path and method...
    second = await create_workflow(
        client, platform.router_url, account, "Orders copy", hooked("orders")
    )
    taken = await _call(client, platform, account, ACTIVATE, second)
    assert taken["__typename"] == "WebhookPathTakenError"
    assert (taken["path"], taken["method"], taken["workflowId"]) == ("orders", "POST", first)
    still = await _call(client, platform, account, TRIGGERS, second)
    assert still == {"active": False, "activeVersion": None, "webhooks": [], "schedules": []}
    # ...but another method, or another organization, may.
    get = await create_workflow(
        client, platform.router_url, account, "Orders GET", hooked("orders", "GET")
    )
    assert (await _call(client, platform, account, ACTIVATE, get))["__typename"] == (
        "WorkflowSuccess"
    )
    other = await sign_up(client, platform.router_url, "Other hooks")
    theirs = await create_workflow(client, platform.router_url, other, "Theirs", hooked("orders"))
    assert (await _call(client, platform, other, ACTIVATE, theirs))["__typename"] == (
        "WorkflowSuccess"
    )

    # Deactivating frees the path.
    off = await _call(client, platform, account, DEACTIVATE, first)
    assert off["workflow"] == {"active": False, "webhooks": [], "schedules": []}
    assert (await _call(client, platform, account, ACTIVATE, second))["__typename"] == (
        "WorkflowSuccess"
    )


async def test_publishing_moves_the_triggers_and_archiving_removes_them(platform, client):
    account = await sign_up(client, platform.router_url, "Movers")
    workflow_id = await create_workflow(
        client, platform.router_url, account, "Moving", hooked("v1-path")
    )
    await _call(client, platform, account, ACTIVATE, workflow_id)
    saved = await update_workflow(
        client,
        platform.router_url,
        account,
        id=workflow_id,
        expectedVersion=1,
        definition=hooked("v2-path"),
    )
    assert saved["__typename"] == "WorkflowSuccess"
    # Saving alone changes nothing live: triggers follow the published version.
    assert (await _call(client, platform, account, TRIGGERS, workflow_id))["webhooks"] == [
        {"path": "v1-path", "method": "POST"}
    ]
    published = data(
        await gql(
            client,
            platform.router_url,
            """mutation ($id: ID!) {
      publishWorkflowVersion(input: {id: $id, version: 2}) { __typename } }""",
            {"id": workflow_id},
            account.token,
        )
    )
    assert published["publishWorkflowVersion"]["__typename"] == "WorkflowSuccess"
    now = await _call(client, platform, account, TRIGGERS, workflow_id)
    assert now["webhooks"] == [{"path": "v2-path", "method": "POST"}]
    assert now["activeVersion"] == 2
    archived = data(
        await gql(
            client,
            platform.router_url,
            """mutation ($id: ID!) {
      archiveWorkflow(input: {id: $id}) { __typename } }""",
            {"id": workflow_id},
            account.token,
        )
    )
    assert archived["archiveWorkflow"]["__typename"] == "WorkflowSuccess"
    gone = await _call(client, platform, account, TRIGGERS, workflow_id)
    assert gone == {"active": False, "activeVersion": 2, "webhooks": [], "schedules": []}
    refused = await _call(client, platform, account, ACTIVATE, workflow_id)
    assert refused["__typename"] == "ValidationError"


async def test_organization_variables(platform, client):
    account = await sign_up(client, platform.router_url, "Variables")
    set_var = """mutation ($k: String!, $v: String!) { setVariable(input: {key: $k, value: $v})
      { __typename ... on SetVariableSuccess { variable { key value } }
        ... on ValidationError { fields { path } } } }"""

    async def put(key, value, token=account.token):
        return data(await gql(client, platform.router_url, set_var, {"k": key, "v": value}, token))[
            "setVariable"
        ]

    assert (await put("API_BASE", "https://api.example.com"))["variable"]["value"] == (
        "https://api.example.com"
    )
    assert (await put("API_BASE", "https://v2.example.com"))["__typename"] == "SetVariableSuccess"
    refused = await put("9 lives", "x")
    assert refused == {"__typename": "ValidationError", "fields": [{"path": "key"}]}
    key = data(
        await gql(
            client,
            platform.router_url,
            """mutation { createApiKey(input:
      {name: "ed", role: "editor"}) { ... on CreateApiKeySuccess { secret } } }""",
            token=account.token,
        )
    )["createApiKey"]["secret"]
    editor = replace(account, token=key)
    assert (await put("NOPE", "x", editor.token))["__typename"] == "ForbiddenError"
    listed = data(
        await gql(client, platform.router_url, "{ variables { key value } }", token=editor.token)
    )
    assert listed["variables"] == [{"key": "API_BASE", "value": "https://v2.example.com"}]
    other = await sign_up(client, platform.router_url, "No variables")
    theirs = data(
        await gql(client, platform.router_url, "{ variables { key } }", token=other.token)
    )
    assert theirs["variables"] == []
    deleted = data(
        await gql(
            client,
            platform.router_url,
            """mutation {
      deleteVariable(input: {key: "API_BASE"}) { ... on DeleteVariableSuccess { deleted } } }""",
            token=account.token,
        )
    )
    assert deleted["deleteVariable"]["deleted"] is True
