"""Two-factor log-in through the router: enrolment, challenge, replay, recovery codes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from subgraphs.identity import mfa
from tests.factories.graphql import data, gql
from tests.factories.identity import sign_up

START = "mutation { startMfaEnrolment { secret otpauthUri qrSvg } }"
CONFIRM = """mutation ($c: String!) { confirmMfaEnrolment(input: {code: $c}) {
  __typename ... on MfaEnabled { recoveryCodes } } }"""
LOG_IN = """mutation ($e: String!) { logIn(input: {email: $e, password: "correct horse battery"}) {
  __typename ... on MfaRequired { challenge expiresIn } ... on AuthPayload { accessToken } } }"""
VERIFY = """mutation ($ch: String!, $c: String!) { verifyMfa(input: {challenge: $ch, code: $c}) {
  __typename ... on AuthPayload { accessToken } ... on InvalidCodeError { message } } }"""
DISABLE = """mutation ($c: String!) { disableMfa(input: {code: $c}) { __typename } }"""


def code(secret: str, steps_ahead: int = 0) -> str:
    return mfa.code_at(secret, datetime.now(UTC) + timedelta(seconds=30 * steps_ahead))


async def _challenge(client, router, email) -> str:
    result = data(await gql(client, router, LOG_IN, {"e": email}))["logIn"]
    assert result["__typename"] == "MfaRequired"
    assert result["expiresIn"] == 300
    return result["challenge"]


async def test_enrolled_users_need_a_second_factor_that_works_once(platform, client):
    router = platform.router_url
    account = await sign_up(client, router)
    before = data(await gql(client, router, "{ me { mfaEnabled } }", token=account.token))
    assert before["me"]["mfaEnabled"] is False
    enrolment = data(await gql(client, router, START, token=account.token))["startMfaEnrolment"]
    secret = enrolment["secret"]
    assert enrolment["otpauthUri"].startswith("otpauth://totp/KlikkFlow:")
    assert "<svg" in enrolment["qrSvg"]
    wrong = data(await gql(client, router, CONFIRM, {"c": "000000"}, account.token))
    assert wrong["confirmMfaEnrolment"]["__typename"] == "InvalidCodeError"
    confirming = code(secret)
    enabled = data(await gql(client, router, CONFIRM, {"c": confirming}, account.token))
    recovery = enabled["confirmMfaEnrolment"]["recoveryCodes"]
    assert len(recovery) == 10
    me = data(await gql(client, router, "{ me { mfaEnabled } }", token=account.token))
    assert me["me"]["mfaEnabled"] is True

    challenge = await _challenge(client, router, account.email)
    bad = data(await gql(client, router, VERIFY, {"ch": challenge, "c": "123456"}))["verifyMfa"]
    assert bad["__typename"] == "InvalidCodeError"
    # The code that confirmed enrolment was spent: its time step cannot be replayed.
    replay = data(await gql(client, router, VERIFY, {"ch": challenge, "c": confirming}))
    assert replay["verifyMfa"]["__typename"] == "InvalidCodeError"
    good = data(await gql(client, router, VERIFY, {"ch": challenge, "c": code(secret, 1)}))
    token = good["verifyMfa"]["accessToken"]
    me = data(await gql(client, router, "{ me { id } }", token=token))
    assert me["me"]["id"] == account.user_id
    again = data(await gql(client, router, VERIFY, {"ch": challenge, "c": code(secret, 1)}))
    assert again["verifyMfa"]["__typename"] == "InvalidCodeError"  # challenge is used up

    # A recovery code works once.
    for expected in ("AuthPayload", "InvalidCodeError"):
        challenge = await _challenge(client, router, account.email)
        used = data(await gql(client, router, VERIFY, {"ch": challenge, "c": recovery[0].upper()}))[
            "verifyMfa"
        ]
        assert used["__typename"] == expected

    refused = data(await gql(client, router, DISABLE, {"c": "000000"}, token))["disableMfa"]
    assert refused["__typename"] == "InvalidCodeError"
    off = data(await gql(client, router, DISABLE, {"c": recovery[1]}, token))["disableMfa"]
    assert off["__typename"] == "MfaDisabled"
    plain = data(await gql(client, router, LOG_IN, {"e": account.email}))["logIn"]
    assert plain["__typename"] == "AuthPayload"


async def test_a_challenge_dies_after_five_wrong_codes(platform, client):
    router = platform.router_url
    account = await sign_up(client, router)
    secret = data(await gql(client, router, START, token=account.token))["startMfaEnrolment"][
        "secret"
    ]
    await gql(client, router, CONFIRM, {"c": code(secret)}, account.token)
    challenge = await _challenge(client, router, account.email)
    for _ in range(5):
        await gql(client, router, VERIFY, {"ch": challenge, "c": "000000"})
    late = data(await gql(client, router, VERIFY, {"ch": challenge, "c": code(secret, 1)}))
    assert late["verifyMfa"]["__typename"] == "TooManyAttemptsError"


SECURITY = """mutation ($r: Boolean!) { updateOrganizationSecurity(input: {requireMfa: $r}) {
  __typename ... on Organization { requireMfa } } }"""


async def test_an_organization_can_require_mfa_of_its_members(platform, client):
    router = platform.router_url
    owner = await sign_up(client, router)
    changed = data(await gql(client, router, SECURITY, {"r": True}, owner.token))
    assert changed["updateOrganizationSecurity"] == {
        "__typename": "Organization",
        "requireMfa": True,
    }
    # Signing in again without MFA gives a token that can only enrol.
    restricted = data(await gql(client, router, LOG_IN, {"e": owner.email}))["logIn"]
    token = restricted["accessToken"]
    refused = await gql(client, router, "{ workflows { edges { node { id } } } }", token=token)
    assert "requires two-factor authentication" in refused["errors"][0]["message"]
    who = data(await gql(client, router, "{ me { id mfaEnabled } }", token=token))["me"]
    assert who == {"id": owner.user_id, "mfaEnabled": False}  # it may still say who it is
    colleague = await gql(
        client, router, "query ($id: ID!) { user(id: $id) { id } }", {"id": owner.user_id}, token
    )
    assert "requires two-factor authentication" in colleague["errors"][0]["message"]
    secret = data(await gql(client, router, START, token=token))["startMfaEnrolment"]["secret"]
    enabled = data(await gql(client, router, CONFIRM, {"c": code(secret)}, token))
    assert enabled["confirmMfaEnrolment"]["__typename"] == "MfaEnabled"
    challenge = await _challenge(client, router, owner.email)
    full = data(await gql(client, router, VERIFY, {"ch": challenge, "c": code(secret, 1)}))
    allowed = await gql(
        client,
        router,
        "{ workflows { edges { node { id } } } }",
        token=full["verifyMfa"]["accessToken"],
    )
    assert allowed["data"] == {"workflows": {"edges": []}}
