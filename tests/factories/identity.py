from __future__ import annotations

import secrets
from dataclasses import dataclass

import httpx

from tests.factories.graphql import data, gql

SIGN_UP = """
mutation SignUp($input: SignUpInput!) {
  signUp(input: $input) {
    __typename
    ... on AuthPayload {
      accessToken refreshToken role user { id email } organization { id name }
    }
    ... on ValidationError { message fields { path message } }
  }
}
"""


@dataclass
class Account:
    token: str
    user_id: str
    organization_id: str
    email: str


async def sign_up(client: httpx.AsyncClient, router_url: str, org: str = "Acme") -> Account:
    email = f"user-{secrets.token_hex(4)}@example.com"
    result = data(
        await gql(
            client,
            router_url,
            SIGN_UP,
            {
                "input": {
                    "email": email,
                    "name": "Test User",
                    "password": "correct horse battery",
                    "organizationName": org,
                }
            },
        )
    )["signUp"]
    assert result["__typename"] == "AuthPayload", result
    return Account(result["accessToken"], result["user"]["id"], result["organization"]["id"], email)
