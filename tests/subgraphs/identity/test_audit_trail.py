"""Security events land in the audit log, readable by admins through the router, and
`klikkflow audit verify` checks the chains in the platform's own database."""

from __future__ import annotations

import os
import subprocess
import sys

from tests.factories.graphql import data, gql
from tests.factories.identity import sign_up

AUDIT = """query ($actions: [String!]) { auditLog(first: 10, filter: {actions: $actions}) {
  edges { node { action actorId targetId data } } } }"""
LOG_IN = """mutation ($e: String!, $p: String!) { logIn(input: {email: $e, password: $p}) {
  __typename } }"""


async def test_sign_up_and_log_ins_are_audited_and_the_chain_verifies(platform, client):
    owner = await sign_up(client, platform.router_url)
    await gql(client, platform.router_url, LOG_IN, {"e": owner.email, "p": "not my password"})
    await gql(client, platform.router_url, LOG_IN, {"e": owner.email, "p": "correct horse battery"})
    result = data(await gql(client, platform.router_url, AUDIT, {"actions": None}, owner.token))
    actions = [e["node"]["action"] for e in result["auditLog"]["edges"]]
    assert actions == ["auth.login.succeeded", "auth.login.failed", "auth.signup.succeeded"]
    failed = result["auditLog"]["edges"][1]["node"]
    assert failed["targetId"] == owner.user_id
    assert "password" not in str(failed["data"])  # what was typed as a password never lands

    only = data(
        await gql(
            client, platform.router_url, AUDIT, {"actions": ["auth.login.failed"]}, owner.token
        )
    )
    assert [e["node"]["action"] for e in only["auditLog"]["edges"]] == ["auth.login.failed"]

    env = {
        **os.environ,
        "KLIKKFLOW_MONGO_URI": platform.mongo_uri,
        "KLIKKFLOW_MONGO_DB": platform.settings.mongo_db,
        "KLIKKFLOW_SECRET_KEY": platform.settings.secret_key,
    }
    verified = subprocess.run(
        [
            sys.executable,
            "-m",
            "klikkflow.cli",
            "audit",
            "verify",
            "--organization",
            owner.organization_id,
        ],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert "3 entries, chain intact" in verified.stdout


async def test_the_audit_log_of_another_organization_is_out_of_reach(platform, client):
    alice = await sign_up(client, platform.router_url)
    bob = await sign_up(client, platform.router_url)
    seen = data(await gql(client, platform.router_url, AUDIT, {"actions": None}, bob.token))
    targets = {e["node"]["targetId"] for e in seen["auditLog"]["edges"]}
    assert alice.organization_id not in targets
    assert alice.user_id not in {e["node"]["actorId"] for e in seen["auditLog"]["edges"]}
