"""Webhook ingress against the real executions service and worker: every response mode,
authentication, body limits and malformed input, test URLs for inactive workflows."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from pathlib import Path

import httpx
import pytest

from tests.factories.executions import wait_for_status
from tests.factories.graphql import data, gql
from tests.factories.identity import sign_up
from tests.factories.workflows import create_workflow, link, node

EXAMPLES = Path(__file__).resolve().parents[3] / "examples"
ACTIVATE = """mutation ($id: ID!) { activateWorkflow(input: {id: $id}) { __typename } }"""
IMPORT = """mutation ($d: JSON!) { importWorkflow(input: {document: $d}) {
  ... on CreateWorkflowSuccess { workflow { id } } } }"""


def _base(platform) -> str:
    return platform.urls["executions"].removesuffix("/graphql")


def hook(path: str, **params) -> dict:
    return node("Hook", "webhook", typeVersion=2, parameters={"path": path, **params})


async def _active(client, platform, account, name, definition) -> str:
    workflow_id = await create_workflow(client, platform.router_url, account, name, definition)
    done = data(
        await gql(client, platform.router_url, ACTIVATE, {"id": workflow_id}, account.token)
    )
    assert done["activateWorkflow"]["__typename"] == "WorkflowSuccess"
    return workflow_id


@pytest.fixture(scope="module")
async def account(platform):
    async with httpx.AsyncClient(timeout=30, trust_env=False) as client:
        return await sign_up(client, platform.router_url, "Hook owners")


async def test_n8n_bench_a_answers_through_respond_to_webhook(platform, client, account):
    document = json.loads((EXAMPLES / "n8n" / "bench-a.json").read_text())
    workflow_id = data(
        await gql(client, platform.router_url, IMPORT, {"d": document}, account.token)
    )["importWorkflow"]["workflow"]["id"]
    data(await gql(client, platform.router_url, ACTIVATE, {"id": workflow_id}, account.token))
    body = {
        "id": 1,
        "name": "widget",
        "qty": 3,
        "price": 19.5,
        "priority": "high",
        "tags": ["a", "b"],
    }
    answer = await client.post(
        f"{_base(platform)}/webhook/{account.organization_id}/bench-a", json=body
    )
    assert answer.status_code == 200, answer.text
    assert answer.json() == {
        "branch": "high",
        "id": 1,
        "name": "WIDGET",
        "total": 58.5,
        "tag_count": 2,
    }
    body["priority"] = "low"
    normal = await client.post(
        f"{_base(platform)}/webhook/{account.organization_id}/bench-a", json=body
    )
    assert normal.json()["branch"] == "normal"


async def test_on_received_answers_202_and_the_item_holds_the_request(platform, client, account):
    definition = {
        "nodes": [hook("orders", httpMethod="POST"), node("Keep")],
        "connections": [link("Hook", "Keep")],
    }
    await _active(client, platform, account, "Orders in", definition)
    answer = await client.post(
        f"{_base(platform)}/webhook/{account.organization_id}/orders?source=shop",
        json={"order": 7},
        headers={"x-shop": "north"},
    )
    assert answer.status_code == 202
    execution_id = answer.json()["executionId"]
    done = await wait_for_status(client, platform.router_url, account, execution_id)
    assert done["status"] == "SUCCEEDED"
    assert done["mode"] == "webhook"
    [keep] = [n for n in done["nodes"] if n["node"] == "Keep"]
    item = keep["outputs"]["main"][0]["json"]
    assert item["body"] == {"order": 7}
    assert item["query"] == {"source": "shop"}
    assert item["headers"]["x-shop"] == "north"


async def test_last_node_mode_answers_with_the_last_output(platform, client, account):
    shape = node(
        "Shape",
        "set",
        typeVersion=3.4,
        parameters={
            "mode": "manual",
            "includeOtherFields": False,
            "options": {},
            "assignments": {
                "assignments": [
                    {
                        "id": "t",
                        "name": "total",
                        "type": "number",
                        "value": "={{ $json.body.qty * 2 }}",
                    }
                ]
            },
        },
    )
    definition = {
        "nodes": [
            hook("double", httpMethod="POST", responseMode="lastNode", responseCode=201),
            shape,
        ],
        "connections": [link("Hook", "Shape")],
    }
    await _active(client, platform, account, "Doubler", definition)
    answer = await client.post(
        f"{_base(platform)}/webhook/{account.organization_id}/double", json={"qty": 21}
    )
    assert (answer.status_code, answer.json()) == (201, {"total": 42})


async def test_a_failing_workflow_answers_500_with_its_reason(platform, client, account):
    stop = node("Stop", "stopAndError", parameters={"errorMessage": "nope"})
    definition = {
        "nodes": [hook("fails", responseMode="lastNode"), stop],
        "connections": [link("Hook", "Stop")],
    }
    await _active(client, platform, account, "Failing hook", definition)
    answer = await client.get(f"{_base(platform)}/webhook/{account.organization_id}/fails")
    assert answer.status_code == 500
    assert answer.json()["error"] == "nope"


async def _credential(client, platform, account, kind: str, values: dict) -> str:
    made = data(
        await gql(
            client,
            platform.router_url,
            """mutation ($t: String!, $d: JSON!) {
      createCredential(input: {name: $t, type: $t, data: $d}) {
        ... on CredentialSuccess { credential { id } } } }""",
            {"t": kind, "d": values},
            account.token,
        )
    )
    return made["createCredential"]["credential"]["id"]


async def test_webhook_authentication(platform, client):
    account = await sign_up(client, platform.router_url, "Guarded hooks")
    base = f"{_base(platform)}/webhook/{account.organization_id}"
    header_id = await _credential(
        client, platform, account, "httpHeaderAuth", {"name": "X-Token", "value": "letmein-123"}
    )
    basic_id = await _credential(
        client, platform, account, "httpBasicAuth", {"user": "ada", "password": "lovelace"}
    )
    for path, auth, kind, cid in [
        ("by-header", "headerAuth", "httpHeaderAuth", header_id),
        ("by-hmac", "hmac", "httpHeaderAuth", header_id),
        ("by-basic", "basicAuth", "httpBasicAuth", basic_id),
    ]:
        guarded = hook(path, httpMethod="POST", authentication=auth)
        guarded["credentials"] = {kind: {"id": cid, "name": kind}}
        await _active(client, platform, account, path, {"nodes": [guarded], "connections": []})

    assert (await client.post(f"{base}/by-header", json={})).status_code == 401
    wrong = await client.post(f"{base}/by-header", json={}, headers={"x-token": "guess"})
    assert wrong.status_code == 401
    right = await client.post(f"{base}/by-header", json={}, headers={"x-token": "letmein-123"})
    assert right.status_code == 202

    raw = b'{"event": "paid"}'
    signature = hmac.new(b"letmein-123", raw, hashlib.sha256).hexdigest()
    signed = await client.post(
        f"{base}/by-hmac",
        content=raw,
        headers={"content-type": "application/json", "x-token": f"sha256={signature}"},
    )
    assert signed.status_code == 202
    tampered = await client.post(
        f"{base}/by-hmac",
        content=b'{"event": "refunded"}',
        headers={"content-type": "application/json", "x-token": f"sha256={signature}"},
    )
    assert tampered.status_code == 401

    good = base64.b64encode(b"ada:lovelace").decode()
    bad = base64.b64encode(b"ada:babbage").decode()
    assert (
        await client.post(f"{base}/by-basic", headers={"authorization": f"Basic {bad}"})
    ).status_code == 401
    assert (
        await client.post(f"{base}/by-basic", headers={"authorization": f"Basic {good}"})
    ).status_code == 202


async def test_bad_requests_get_clear_answers_and_start_nothing(platform, client, account):
    await _active(
        client,
        platform,
        account,
        "Strict input",
        {"nodes": [hook("strict", httpMethod="POST")], "connections": []},
    )
    base = f"{_base(platform)}/webhook/{account.organization_id}"
    before = data(
        await gql(
            client,
            platform.router_url,
            "{ executions(first: 100) { edges { node { id } } } }",
            token=account.token,
        )
    )["executions"]["edges"]
    big = await client.post(
        f"{base}/strict",
        content=b"x" * (20 * 1024 * 1024),
        headers={"content-type": "application/octet-stream"},
    )
    assert big.status_code == 413
    broken = await client.post(
        f"{base}/strict", content=b'{"no": ', headers={"content-type": "application/json"}
    )
    assert broken.status_code == 400
    assert "not valid JSON" in broken.json()["message"]
    unknown = await client.post(f"{base}/nobody-listens", json={})
    assert unknown.status_code == 404
    wrong_method = await client.get(f"{base}/strict")
    assert wrong_method.status_code == 404
    after = data(
        await gql(
            client,
            platform.router_url,
            "{ executions(first: 100) { edges { node { id } } } }",
            token=account.token,
        )
    )["executions"]["edges"]
    assert len(after) == len(before)


async def test_test_urls_run_the_latest_version_of_an_inactive_workflow(platform, client, account):
    definition = {
        "nodes": [hook("draft", httpMethod="POST", responseMode="lastNode")],
        "connections": [],
    }
    workflow_id = await create_workflow(client, platform.router_url, account, "Draft", definition)
    base = _base(platform)
    production = await client.post(f"{base}/webhook/{account.organization_id}/draft", json={})
    assert production.status_code == 404  # not active: no production URL
    test = await client.post(
        f"{base}/webhook-test/{account.organization_id}/{workflow_id}/draft", json={"try": 1}
    )
    assert test.status_code == 200
    assert test.json()["body"] == {"try": 1}
