"""Credentials through the router: sealed at rest, masked in answers, absent from logs,
tested against a real local server, listed with the workflows that use them, audited,
and re-wrapped by `klikkflow credentials rotate-key`."""

from __future__ import annotations

import base64
import os
import socket
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import httpx
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.factories.graphql import data, gql
from tests.factories.identity import sign_up
from tests.factories.workflows import create_workflow, link, node, update_workflow

SECRET = "sk-live-7f3a9c2e5b1d4680aa"
CREATE = """mutation ($input: CreateCredentialInput!) { createCredential(input: $input) {
  __typename ... on CredentialSuccess { credential { id name type hints { field value } } }
  ... on ValidationError { fields { path message } } ... on Error { message } } }"""
UPDATE = """mutation ($input: UpdateCredentialInput!) { updateCredential(input: $input) {
  __typename ... on CredentialSuccess { credential { name hints { field value } } }
  ... on ValidationError { fields { path message } } } }"""
TEST = """mutation ($id: ID!, $url: String!) { testCredential(input: {id: $id, url: $url}) {
  __typename ... on CredentialTestResult { ok message status } } }"""
DELETE = """mutation ($id: ID!) { deleteCredential(input: {id: $id}) { __typename
  ... on CredentialInUseError { message workflows { name } } } }"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
async def api() -> AsyncIterator[str]:
    """A third-party API: /me wants `X-Api-Key: SECRET`; /token is an OAuth2 endpoint."""

    async def me(request: Request) -> Response:
        if request.headers.get("x-api-key") == SECRET:
            return JSONResponse({"me": "ok"})
        return JSONResponse({"error": "bad key"}, status_code=401)

    async def token(request: Request) -> Response:
        expected = "Basic " + base64.b64encode(b"client-1:" + SECRET.encode()).decode()
        if request.headers.get("authorization") != expected:
            return JSONResponse({"error": "invalid_client"}, status_code=401)
        return JSONResponse({"access_token": "t-1", "expires_in": 60})

    app = Starlette(routes=[Route("/me", me), Route("/token", token, methods=["POST"])])
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(app, port=port, log_level="warning", lifespan="off"))
    import asyncio

    task = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.02)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    await task


@pytest.fixture(scope="module")
async def owner(platform):
    async with httpx.AsyncClient(timeout=30, trust_env=False) as client:
        return await sign_up(client, platform.router_url, "Credential Keepers")


async def _create(client, platform, account, name, kind, values):
    variables = {"input": {"name": name, "type": kind, "data": values}}
    return data(await gql(client, platform.router_url, CREATE, variables, account.token))[
        "createCredential"
    ]


async def test_values_are_sealed_masked_and_kept_out_of_logs(platform, client, owner):
    from pymongo import AsyncMongoClient

    made = await _create(
        client,
        platform,
        owner,
        "Acme API",
        "httpHeaderAuth",
        {"name": "X-Api-Key", "value": SECRET},
    )
    assert made["__typename"] == "CredentialSuccess", made
    hints = {h["field"]: h["value"] for h in made["credential"]["hints"]}
    assert hints == {"name": "X-Api-Key", "value": "••••" + SECRET[-4:]}
    listed = data(
        await gql(
            client,
            platform.router_url,
            "{ credentials { id name type hints { value } } }",
            token=owner.token,
        )
    )
    assert SECRET not in str(listed)
    mongo: AsyncMongoClient = AsyncMongoClient(platform.mongo_uri)
    try:
        raw = await mongo[platform.settings.mongo_db]["credentials"].find_one({"name": "Acme API"})
    finally:
        await mongo.close()
    assert raw is not None
    assert SECRET not in str(raw)
    assert raw["envelope"]["key_id"]
    logs = Path(platform.settings.data_dir) / "logs"
    assert (logs / "workflows.log").exists()
    for log in logs.glob("*.log"):
        assert SECRET not in log.read_text(errors="replace"), log.name


async def test_bad_values_are_refused_field_by_field(platform, client, owner):
    refused = await _create(
        client, platform, owner, "Broken", "httpHeaderAuth", {"name": "bad header\n", "extra": 1}
    )
    assert refused["__typename"] == "ValidationError"
    paths = {f["path"] for f in refused["fields"]}
    assert {"data.name", "data.extra", "data.value"} <= paths
    unknown = await _create(client, platform, owner, "Unknown", "acmeMagic", {})
    assert unknown["__typename"] == "ValidationError"
    await _create(client, platform, owner, "Twice", "httpBearerAuth", {"token": "a" * 20})
    twice = await _create(client, platform, owner, "Twice", "httpBearerAuth", {"token": "b" * 20})
    assert twice["fields"] == [{"path": "name", "message": "another credential has this name"}]


async def test_testing_a_credential_uses_its_stored_values(platform, client, owner, api):
    made = await _create(
        client,
        platform,
        owner,
        "Checked",
        "httpHeaderAuth",
        {"name": "X-Api-Key", "value": "wrong-value-at-first"},
    )
    cid = made["credential"]["id"]
    first = data(
        await gql(client, platform.router_url, TEST, {"id": cid, "url": f"{api}/me"}, owner.token)
    )["testCredential"]
    assert (first["ok"], first["status"]) == (False, 401)
    # Change only the secret: the header name the client never re-sent is kept.
    changed = data(
        await gql(
            client,
            platform.router_url,
            UPDATE,
            {"input": {"id": cid, "data": {"value": SECRET}}},
            owner.token,
        )
    )
    assert changed["updateCredential"]["__typename"] == "CredentialSuccess"
    second = data(
        await gql(client, platform.router_url, TEST, {"id": cid, "url": f"{api}/me"}, owner.token)
    )["testCredential"]
    assert (second["ok"], second["status"]) == (True, 200)
    renamed = data(
        await gql(
            client,
            platform.router_url,
            UPDATE,
            {"input": {"id": cid, "name": "Checked again"}},
            owner.token,
        )
    )
    assert renamed["updateCredential"]["credential"]["name"] == "Checked again"
    third = data(
        await gql(client, platform.router_url, TEST, {"id": cid, "url": f"{api}/me"}, owner.token)
    )["testCredential"]
    assert third["ok"] is True


async def test_an_oauth2_credential_is_tested_by_fetching_a_token(platform, client, owner, api):
    values = {
        "grantType": "clientCredentials",
        "accessTokenUrl": f"{api}/token",
        "clientId": "client-1",
        "clientSecret": SECRET,
    }
    cid = (await _create(client, platform, owner, "OAuth", "oAuth2Api", values))["credential"]["id"]
    ok = data(await gql(client, platform.router_url, TEST, {"id": cid, "url": ""}, owner.token))
    assert ok["testCredential"]["ok"] is True
    data(
        await gql(
            client,
            platform.router_url,
            UPDATE,
            {"input": {"id": cid, "data": {"clientSecret": "not-it-at-all"}}},
            owner.token,
        )
    )
    bad = data(await gql(client, platform.router_url, TEST, {"id": cid, "url": ""}, owner.token))
    assert bad["testCredential"]["ok"] is False
    assert "401" in bad["testCredential"]["message"]
    assert SECRET not in bad["testCredential"]["message"]


async def test_used_credentials_list_their_workflows_and_are_not_deleted(platform, client, owner):
    cid = (await _create(client, platform, owner, "In use", "httpBearerAuth", {"token": "t" * 24}))[
        "credential"
    ]["id"]
    fetch = node(
        "Fetch",
        "httpRequest",
        typeVersion=4.2,
        parameters={
            "url": "https://api.example.com",
            "authentication": "genericCredentialType",
            "genericAuthType": "httpBearerAuth",
        },
        credentials={"httpBearerAuth": {"id": cid, "name": "In use"}},
    )
    definition = {
        "nodes": [node("Start", "manualTrigger"), fetch],
        "connections": [link("Start", "Fetch")],
    }
    workflow_id = await create_workflow(client, platform.router_url, owner, "Caller", definition)
    used = data(
        await gql(
            client,
            platform.router_url,
            "query ($id: ID!) { credential(id: $id) { usedBy { name } } }",
            {"id": cid},
            owner.token,
        )
    )
    assert used["credential"]["usedBy"] == [{"name": "Caller"}]
    refused = data(await gql(client, platform.router_url, DELETE, {"id": cid}, owner.token))
    assert refused["deleteCredential"]["__typename"] == "CredentialInUseError"
    assert refused["deleteCredential"]["workflows"] == [{"name": "Caller"}]
    definition["nodes"] = definition["nodes"][:1]
    definition["connections"] = []
    await update_workflow(
        client, platform.router_url, owner, id=workflow_id, expectedVersion=1, definition=definition
    )
    deleted = data(await gql(client, platform.router_url, DELETE, {"id": cid}, owner.token))
    assert deleted["deleteCredential"]["__typename"] == "DeleteCredentialSuccess"


async def test_credential_changes_are_audited(platform, client, owner):
    cid = (
        await _create(client, platform, owner, "Audited", "httpBearerAuth", {"token": "z" * 24})
    )["credential"]["id"]
    data(await gql(client, platform.router_url, DELETE, {"id": cid}, owner.token))
    log = data(
        await gql(
            client,
            platform.router_url,
            """query { auditLog(first: 50, filter:
      {actions: ["credential.created", "credential.deleted"]}) { edges { node {
        action targetId actorId } } } }""",
            token=owner.token,
        )
    )["auditLog"]["edges"]
    mine = [
        (e["node"]["action"], e["node"]["actorId"]) for e in log if e["node"]["targetId"] == cid
    ]
    assert mine == [("credential.deleted", owner.user_id), ("credential.created", owner.user_id)]


async def test_viewers_see_credentials_but_cannot_change_them(platform, client, owner):
    key = data(
        await gql(
            client,
            platform.router_url,
            """mutation { createApiKey(input:
      {name: "reader", role: "viewer"}) { ... on CreateApiKeySuccess { secret } } }""",
            token=owner.token,
        )
    )["createApiKey"]["secret"]
    viewer = replace(owner, token=key)
    refused = await _create(client, platform, viewer, "Nope", "httpBearerAuth", {"token": "q" * 20})
    assert refused["__typename"] == "ForbiddenError"
    seen = data(await gql(client, platform.router_url, "{ credentials { name } }", token=key))
    assert {"name": "Acme API"} in seen["credentials"]


async def test_the_credential_type_catalog_marks_secrets(platform, client, owner):
    types = data(
        await gql(
            client,
            platform.router_url,
            "{ credentialTypes { name secretFields schema } }",
            token=owner.token,
        )
    )
    by_name = {t["name"]: t for t in types["credentialTypes"]}
    assert by_name["httpHeaderAuth"]["secretFields"] == ["value"]
    assert by_name["httpHeaderAuth"]["schema"]["properties"]["value"]["writeOnly"] is True


async def test_rotate_key_rewraps_every_credential_and_values_stay_readable(
    platform, client, owner
):
    from klikkflow.kit.crypto import derive_key
    from klikkflow.kit.stores import init_mongo
    from klikkflow.kit.vault import LocalKeyProvider, generate_master_key
    from subgraphs.workflows.credentials import credential as credential_service
    from subgraphs.workflows.models import DOCUMENTS, CredentialDocument

    made = await _create(
        client, platform, owner, "Rotated", "httpHeaderAuth", {"name": "X-Api-Key", "value": SECRET}
    )
    cid = made["credential"]["id"]
    derived = base64.b64encode(derive_key(platform.settings.secret_key, "credentials")).decode()
    new_key = generate_master_key("next")
    keys = f"{new_key},derived-1:{derived}"

    def rotate(master_keys: str) -> subprocess.CompletedProcess[str]:
        env = {
            **os.environ,
            **platform.store_env(platform.settings),
            "KLIKKFLOW_CREDENTIALS_MASTER_KEYS": master_keys,
        }
        command = [sys.executable, "-m", "klikkflow.cli", "credentials", "rotate-key"]
        return subprocess.run(
            command, env=env, capture_output=True, text=True, timeout=60, check=False
        )

    done = rotate(keys)
    assert done.returncode == 0, done.stderr
    assert "re-wrapped under key next" in done.stdout
    mongo = await init_mongo(platform.mongo_uri, platform.settings.mongo_db, DOCUMENTS)
    try:
        left = await CredentialDocument.find({"envelope.key_id": {"$ne": "next"}}).count()
        assert left == 0
        # Only the new key is needed from now on.
        credential_service.configure(platform.settings, LocalKeyProvider(new_key, "unused"))
        values = await credential_service.open_for_run(owner.organization_id, cid)
        assert values == {"name": "X-Api-Key", "value": SECRET}
    finally:
        await mongo.close()
        # Back under the key the running services hold, for the tests after this one.
        back = rotate(f"derived-1:{derived},{new_key}")
        assert back.returncode == 0, back.stderr
