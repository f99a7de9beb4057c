"""Invitations by e-mail (through a real SMTP server), roles, removal and switching."""

from __future__ import annotations

import asyncio
import re
import secrets

from tests.factories.graphql import data, gql
from tests.factories.identity import sign_up

INVITE = """mutation ($email: String!, $role: String!) {
  inviteMember(input: {email: $email, role: $role}) {
    __typename ... on InviteMemberSuccess { invitation { email role } }
    ... on ValidationError { fields { path message } } ... on ForbiddenError { message } } }"""
ACCEPT = """mutation ($token: String!, $name: String!, $password: String!) {
  acceptInvitation(input: {token: $token, name: $name, password: $password}) {
    __typename ... on AuthPayload { accessToken refreshToken role organization { id } user { id } }
    ... on ValidationError { fields { path } } ... on InvalidTokenError { message } } }"""
MEMBERS = "{ members { role user { id email } } }"
CHANGE = """mutation ($id: ID!, $role: String!) {
  changeMemberRole(input: {userId: $id, role: $role}) {
    __typename ... on ChangeMemberRoleSuccess { member { role } }
    ... on ValidationError { fields { message } } ... on ForbiddenError { message } } }"""
REMOVE = """mutation ($id: ID!) { removeMember(input: {userId: $id}) {
  __typename ... on ValidationError { fields { message } } } }"""


async def _mail_token(mailbox, address: str) -> str:
    box, _ = mailbox
    for _ in range(50):
        if box.to(address):
            break
        await asyncio.sleep(0.1)
    [message] = box.to(address)
    body = message.get_content()
    return re.search(r"http://dashboard\.test/invitations/(inv_[\w-]+)", body).group(1)


async def _invite_and_join(client, platform, mailbox, owner, role="editor"):
    email = f"new-{secrets.token_hex(4)}@example.com"
    sent = data(
        await gql(client, platform.router_url, INVITE, {"email": email, "role": role}, owner.token)
    )["inviteMember"]
    assert sent["__typename"] == "InviteMemberSuccess"
    token = await _mail_token(mailbox, email)
    joined = data(
        await gql(
            client,
            platform.router_url,
            ACCEPT,
            {"token": token, "name": "New Person", "password": "violet staircase 42"},
        )
    )["acceptInvitation"]
    return email, token, joined


async def test_an_invitation_mail_lets_a_new_person_join_once(platform, client, mailbox):
    owner = await sign_up(client, platform.router_url)
    email, token, joined = await _invite_and_join(client, platform, mailbox, owner)
    assert joined["__typename"] == "AuthPayload"
    assert joined["role"] == "editor"
    assert joined["organization"]["id"] == owner.organization_id
    members = data(await gql(client, platform.router_url, MEMBERS, token=owner.token))["members"]
    assert [(m["user"]["email"], m["role"]) for m in members] == [
        (owner.email, "owner"),
        (email, "editor"),
    ]
    again = data(
        await gql(
            client,
            platform.router_url,
            ACCEPT,
            {"token": token, "name": "X", "password": "violet staircase 42"},
        )
    )
    assert again["acceptInvitation"]["__typename"] == "InvalidTokenError"


async def test_roles_are_bounded_and_the_last_owner_stays(platform, client, mailbox):
    owner = await sign_up(client, platform.router_url)
    _, _, editor = await _invite_and_join(client, platform, mailbox, owner, role="editor")
    denied = data(
        await gql(
            client,
            platform.router_url,
            INVITE,
            {"email": "x@example.com", "role": "viewer"},
            editor["accessToken"],
        )
    )["inviteMember"]
    assert denied["__typename"] == "ForbiddenError"
    last = data(
        await gql(
            client, platform.router_url, CHANGE, {"id": owner.user_id, "role": "admin"}, owner.token
        )
    )
    assert last["changeMemberRole"]["__typename"] == "ValidationError"
    assert "last owner" in last["changeMemberRole"]["fields"][0]["message"]
    promoted = data(
        await gql(
            client,
            platform.router_url,
            CHANGE,
            {"id": editor["user"]["id"], "role": "admin"},
            owner.token,
        )
    )
    assert promoted["changeMemberRole"]["member"]["role"] == "admin"


async def test_a_removed_member_loses_access_and_refresh(platform, client, mailbox):
    owner = await sign_up(client, platform.router_url)
    _, _, member = await _invite_and_join(client, platform, mailbox, owner, role="viewer")
    removed = data(
        await gql(client, platform.router_url, REMOVE, {"id": member["user"]["id"]}, owner.token)
    )["removeMember"]
    assert removed["__typename"] == "RemoveMemberSuccess"
    members = data(await gql(client, platform.router_url, MEMBERS, token=owner.token))["members"]
    assert member["user"]["id"] not in {m["user"]["id"] for m in members}
    refresh = (
        """mutation ($t: String!) { refreshToken(input: {refreshToken: $t}) { __typename } }"""
    )
    after = data(await gql(client, platform.router_url, refresh, {"t": member["refreshToken"]}))
    assert after["refreshToken"]["__typename"] == "InvalidTokenError"  # the session ended


async def test_switching_to_an_organization_one_belongs_to(platform, client, mailbox):
    alice = await sign_up(client, platform.router_url, "Alice Org")
    bob = await sign_up(client, platform.router_url, "Bob Org")
    email = f"both-{secrets.token_hex(3)}@example.com"
    await gql(client, platform.router_url, INVITE, {"email": email, "role": "viewer"}, alice.token)
    token = await _mail_token(mailbox, email)
    joined = data(
        await gql(
            client,
            platform.router_url,
            ACCEPT,
            {"token": token, "name": "Both", "password": "violet staircase 42"},
        )
    )
    carol = joined["acceptInvitation"]
    orgs = data(
        await gql(
            client,
            platform.router_url,
            "{ myOrganizations { role organization { id } } }",
            token=carol["accessToken"],
        )
    )["myOrganizations"]
    assert [o["organization"]["id"] for o in orgs] == [alice.organization_id]
    switch = """mutation ($id: ID!) { switchOrganization(input: {organizationId: $id}) {
      __typename ... on AuthPayload { organization { id } } } }"""
    refused = data(
        await gql(
            client, platform.router_url, switch, {"id": bob.organization_id}, carol["accessToken"]
        )
    )
    assert refused["switchOrganization"]["__typename"] == "ForbiddenError"
    back = data(
        await gql(
            client, platform.router_url, switch, {"id": alice.organization_id}, carol["accessToken"]
        )
    )
    assert back["switchOrganization"]["organization"]["id"] == alice.organization_id


async def test_a_withdrawn_invitation_link_stops_working(platform, client, mailbox):
    owner = await sign_up(client, platform.router_url)
    email = f"later-{secrets.token_hex(4)}@example.com"
    await gql(client, platform.router_url, INVITE, {"email": email, "role": "viewer"}, owner.token)
    token = await _mail_token(mailbox, email)
    pending = data(
        await gql(client, platform.router_url, "{ invitations { id email } }", token=owner.token)
    )["invitations"]
    [invitation] = [i for i in pending if i["email"] == email]
    revoked = data(
        await gql(
            client,
            platform.router_url,
            "mutation ($id: ID!) { revokeInvitation(input: {id: $id}) { __typename } }",
            {"id": invitation["id"]},
            owner.token,
        )
    )["revokeInvitation"]
    assert revoked["__typename"] == "RevokeInvitationSuccess"
    after = data(
        await gql(client, platform.router_url, "{ invitations { email } }", token=owner.token)
    )["invitations"]
    assert email not in {i["email"] for i in after}
    refused = data(
        await gql(
            client,
            platform.router_url,
            ACCEPT,
            {"token": token, "name": "Late", "password": "violet staircase 42"},
        )
    )
    assert refused["acceptInvitation"]["__typename"] == "InvalidTokenError"
