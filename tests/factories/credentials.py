"""Credentials through the router, for tests."""

from __future__ import annotations

from typing import Any

import httpx

from tests.factories.graphql import data, gql
from tests.factories.identity import Account

CREATE_CREDENTIAL = """mutation ($input: CreateCredentialInput!) { createCredential(input: $input) {
  __typename ... on CredentialSuccess { credential { id } }
  ... on ValidationError { fields { path message } } ... on Error { message } } }"""


async def create_credential(
    client: httpx.AsyncClient,
    router_url: str,
    account: Account,
    kind: str,
    values: dict[str, Any],
    name: str = "",
) -> str:
    """A stored credential's id (creating it must succeed)."""
    variables = {"input": {"name": name or f"{kind} credential", "type": kind, "data": values}}
    result = data(await gql(client, router_url, CREATE_CREDENTIAL, variables, account.token))[
        "createCredential"
    ]
    assert result["__typename"] == "CredentialSuccess", result
    return str(result["credential"]["id"])
