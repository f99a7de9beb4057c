"""The credentials and variables pages over plain HTTP, against the real router and
subgraphs: forms generated from each type's schema, secrets never shown again (not even
after a refused save), testing against a local server, deletion refused while a workflow
uses the credential, and variables that only owners and admins may change."""

from __future__ import annotations

import asyncio
import html
import re
import secrets
from collections.abc import AsyncIterator

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from tests.factories.graphql import data, gql
from tests.factories.identity import Account
from tests.factories.workflows import create_workflow, link, node, update_workflow
from tests.web.conftest import serve

HTMX = {"HX-Request": "true"}

INVITE = """mutation ($email: String!, $role: String!) {
  inviteMember(input: {email: $email, role: $role}) { __typename } }"""
ACCEPT = """mutation ($token: String!) {
  acceptInvitation(input: {token: $token, name: "Eddie Editor", password: "violet staircase 42"}) {
    __typename ... on AuthPayload { accessToken refreshToken } } }"""


async def _signed_up(client: httpx.AsyncClient) -> None:
    await client.get("/signup")
    tag = secrets.token_hex(4)
    account = {
        "email": f"credentials-{tag}@example.com",
        "name": f"Vault Keeper {tag}",
        "password": f"{secrets.token_urlsafe(12)}-Vx9!",
        "organizationName": f"Vault Org {tag}",
        "csrf_token": client.cookies["kf_csrf"],
    }
    response = await client.post("/signup", data=account)
    assert response.status_code == 303, response.text


@pytest.fixture
async def signed_in(web_url: str) -> AsyncIterator[httpx.AsyncClient]:
    """A browser-like client (cookies kept, redirects not followed) of a new owner."""
    async with httpx.AsyncClient(base_url=web_url, trust_env=False, timeout=20) as client:
        await _signed_up(client)
        yield client


def as_account(client: httpx.AsyncClient) -> Account:
    """The signed-in owner, for calling the router directly (setting up workflows)."""
    return Account(client.cookies["kf_token"], "", "", "")


def csrf(client: httpx.AsyncClient) -> dict[str, str]:
    return {"csrf_token": client.cookies["kf_csrf"]}


def visible(markup: str) -> str:
    """The text a person reads in the page's main part."""
    main = markup.split("<main", 1)[-1]
    main = re.sub(r"<(script|style|title)[^>]*>.*?</\1>", " ", main, flags=re.S)
    main = re.sub(r"</?(code|strong|em|span|a|time)\b[^>]*>", "", main)
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", main)).split())


def row(markup: str, name: str) -> str:
    start = markup.index(f'<tr data-credential="{name}"')
    return markup[start : markup.index("</tr>", start)]


def action(markup: str, name: str, verb: str) -> str:
    """The URL of a credential's form (its id is in it): delete, test or save."""
    start = markup.index(f'data-credential="{name}"')
    pattern = r'action="(/credentials/[0-9a-f]{24}' + (f"/{verb}" if verb else "") + ')"'
    found = re.search(pattern, markup[start:])
    assert found, f"no {verb or 'save'} form for {name}"
    return found.group(1)


async def create(client: httpx.AsyncClient, title: str, kind: str, **fields: str) -> httpx.Response:
    form = {"name": title, "type": kind, **{f"data.{k}": v for k, v in fields.items()}}
    response = await client.post("/credentials", data={**form, **csrf(client)}, headers=HTMX)
    assert response.status_code == 200
    assert response.text.lstrip().startswith("<section")  # the fragment, for HTMX
    return response


def a_secret() -> str:
    return f"sk-live-{secrets.token_urlsafe(24)}"


# -- credentials -------------------------------------------------------------------------


async def test_the_credentials_page_needs_a_session(web_url: str) -> None:
    async with httpx.AsyncClient(base_url=web_url, trust_env=False) as client:
        response = await client.get("/credentials")

    assert response.status_code == 303
    assert response.headers["location"] == "/login?next=%2Fcredentials"


async def test_a_new_credential_shows_its_masked_hint_and_never_its_secret(
    signed_in: httpx.AsyncClient,
) -> None:
    empty = await signed_in.get("/credentials")
    assert "No credentials yet" in visible(empty.text)
    assert 'aria-current="page">Credentials</a>' in empty.text
    # The form for the default type (Header Auth) from its schema: the secret is a password.
    assert re.search(r'<input id="new-name" name="data.name" type="text"', empty.text)
    assert re.search(
        r'<input id="new-value" name="data.value" type="password" value=""', empty.text
    )
    secret = a_secret()

    created = await create(signed_in, "Stripe", "httpBearerAuth", token=secret)
    page = await signed_in.get("/credentials")

    assert "Credential “Stripe” saved" in visible(created.text)
    for response in (created, page):
        assert secret not in response.text
        shown = row(response.text, "Stripe")
        assert f"••••{secret[-4:]}" in html.unescape(shown)  # the masked hint
        assert "Bearer Auth" in shown
        assert "no workflow" in visible(shown)
    # The edit form offers the secret empty, to be left as it is.
    edit = page.text[page.text.index('data-credential-tools="Stripe"') :]
    assert re.search(r'name="data.token" type="password" value=""', edit)
    assert "Leave empty to keep the stored value." in edit


async def test_choosing_a_type_swaps_in_its_fields(signed_in: httpx.AsyncClient) -> None:
    fields = await signed_in.get("/credentials/fields?type=oAuth2Api", headers=HTMX)
    plain = await signed_in.get("/credentials/fields?type=oAuth2Api")
    page = await signed_in.get("/credentials?type=httpBasicAuth")

    assert fields.status_code == 200
    assert 'name="data.accessTokenUrl" type="text"' in fields.text
    assert re.search(r'name="data.clientSecret" type="password" value=""', fields.text)
    assert '<select id="new-authentication" name="data.authentication">' in fields.text
    assert '<option value="header" selected>header</option>' in fields.text
    assert "Requests an access token" in fields.text  # what testing it does
    assert plain.status_code == 307  # without htmx: the page with that type chosen
    assert plain.headers["location"].endswith("/credentials?type=oAuth2Api")
    assert '<option value="httpBasicAuth" selected>' in page.text
    assert 'name="data.user"' in page.text


async def test_a_refused_credential_keeps_the_name_but_not_the_secret(
    signed_in: httpx.AsyncClient,
) -> None:
    secret = a_secret()

    refused = await create(signed_in, "Partner API", "httpHeaderAuth", name="X Key", value=secret)

    assert secret not in refused.text
    assert 'data-error="ValidationError"' in refused.text
    form = refused.text[refused.text.index('id="new-credential-form"') :]
    assert re.search(r'name="name" type="text"\s+value="Partner API"', form)  # the name stays
    assert 'value="X Key"' in form  # so do the other fields, to correct
    assert re.search(r'name="data.value" type="password" value=""', form)
    error = re.search(r'data-field-error="data.name">([^<]+)<', form)
    assert error
    assert "header name" in error.group(1)
    assert "No credentials yet" in visible(refused.text)  # nothing was saved


async def test_an_edit_changes_what_was_typed_and_keeps_secrets_left_empty(
    signed_in: httpx.AsyncClient,
) -> None:
    first, second = a_secret(), a_secret()
    page = await create(signed_in, "Partner API", "httpHeaderAuth", name="X-Key", value=first)
    save = action(page.text, "Partner API", "")
    edit = {"name": "Partner API v2", "data.name": "X-Api-Key", "data.value": "", **csrf(signed_in)}

    renamed = await signed_in.post(save, data=edit, headers=HTMX)
    rotated = await signed_in.post(save, data={**edit, "data.value": second}, headers=HTMX)

    shown = html.unescape(row(renamed.text, "Partner API v2"))
    assert "X-Api-Key" in shown
    assert f"••••{first[-4:]}" in shown  # the secret left empty was kept
    assert f"••••{second[-4:]}" in html.unescape(row(rotated.text, "Partner API v2"))
    for response in (renamed, rotated):
        assert "Credential “Partner API v2” saved" in visible(response.text)
        assert first not in response.text
        assert second not in response.text


async def test_testing_a_credential_shows_whether_it_worked(
    signed_in: httpx.AsyncClient,
) -> None:
    secret = a_secret()

    async def me(request: Request) -> JSONResponse:
        if request.headers.get("authorization") != f"Bearer {secret}":
            return JSONResponse({"error": "who are you?"}, status_code=401)
        return JSONResponse({"id": "me"})

    async with serve(Starlette(routes=[Route("/me", me)])) as api:
        await create(signed_in, "Good", "httpBearerAuth", token=secret)
        page = await create(signed_in, "Stale", "httpBearerAuth", token=a_secret())
        url = {"url": f"{api}/me", **csrf(signed_in)}
        worked = await signed_in.post(action(page.text, "Good", "test"), data=url, headers=HTMX)
        failed = await signed_in.post(action(page.text, "Stale", "test"), data=url, headers=HTMX)

    ok = re.search(r'data-test-result="ok">(.*?)</div>', worked.text, re.S)
    assert ok, visible(worked.text)
    assert "It worked." in visible(ok.group(1))
    assert "HTTP 200" in visible(ok.group(1))
    bad = re.search(r'data-test-result="failed">(.*?)</div>', failed.text, re.S)
    assert bad, visible(failed.text)
    assert "It failed." in visible(bad.group(1))
    assert "401" in visible(bad.group(1))
    assert f'value="{api}/me"' in failed.text  # the URL stays, to try again
    assert secret not in worked.text + failed.text


async def test_a_credential_in_use_is_not_deleted_and_its_workflows_are_named(
    signed_in: httpx.AsyncClient, platform
) -> None:
    page = await create(signed_in, "Billing", "httpBearerAuth", token=a_secret())
    delete = action(page.text, "Billing", "delete")
    credential_id = delete.split("/")[2]
    fetch = node(
        "Fetch",
        "httpRequest",
        typeVersion=4.2,
        parameters={
            "url": "https://api.example.com",
            "authentication": "genericCredentialType",
            "genericAuthType": "httpBearerAuth",
        },
        credentials={"httpBearerAuth": {"id": credential_id, "name": "Billing"}},
    )
    definition = {
        "nodes": [node("Start", "manualTrigger"), fetch],
        "connections": [link("Start", "Fetch")],
    }
    owner = as_account(signed_in)
    async with httpx.AsyncClient(trust_env=False, timeout=20) as api:
        workflow_id = await create_workflow(
            api, platform.router_url, owner, "Invoice sync", definition
        )

        used = await signed_in.get("/credentials")
        refused = await signed_in.post(delete, data=csrf(signed_in), headers=HTMX)

        definition = {"nodes": definition["nodes"][:1], "connections": []}
        await update_workflow(
            api,
            platform.router_url,
            owner,
            id=workflow_id,
            expectedVersion=1,
            definition=definition,
        )
    deleted = await signed_in.post(delete, data=csrf(signed_in), headers=HTMX)

    assert f'href="/workflows/{workflow_id}" data-used-by="{workflow_id}">Invoice sync</a>' in row(
        used.text, "Billing"
    )
    banner = re.search(r'data-error="CredentialInUseError">(.*?)</div>', refused.text, re.S)
    assert banner, visible(refused.text)
    assert "Not deleted" in visible(banner.group(1))
    assert f'<a href="/workflows/{workflow_id}">Invoice sync</a>' in banner.group(1)
    assert 'data-credential="Billing"' in refused.text  # still there
    assert "The credential was deleted." in visible(deleted.text)
    assert 'data-credential="Billing"' not in deleted.text


async def test_a_forged_post_without_the_csrf_token_is_refused(
    signed_in: httpx.AsyncClient,
) -> None:
    forged = await signed_in.post(
        "/credentials", data={"name": "Forged", "type": "httpBearerAuth", "data.token": "x" * 20}
    )

    assert forged.status_code == 403
    assert 'data-credential="Forged"' not in (await signed_in.get("/credentials")).text


# -- variables ---------------------------------------------------------------------------


async def test_variables_are_set_changed_and_deleted(signed_in: httpx.AsyncClient) -> None:
    empty = await signed_in.get("/variables")
    assert "No variables yet" in visible(empty.text)
    assert 'id="set-variable-form"' in empty.text

    added = await signed_in.post(
        "/variables", data={"key": "region", "value": "eu-north-1", **csrf(signed_in)}, headers=HTMX
    )
    changed = await signed_in.post(
        "/variables", data={"key": "region", "value": "eu-west-1", **csrf(signed_in)}, headers=HTMX
    )
    refused = await signed_in.post(
        "/variables", data={"key": "1st region", "value": "x", **csrf(signed_in)}, headers=HTMX
    )
    listed = await signed_in.get("/variables")
    deleted = await signed_in.post("/variables/region/delete", data=csrf(signed_in), headers=HTMX)

    assert "The variable region was saved." in visible(added.text)
    assert "eu-north-1" in visible(added.text)
    assert "eu-west-1" in visible(changed.text)
    assert "eu-north-1" not in visible(changed.text)
    assert 'data-error="ValidationError"' in refused.text
    error = re.search(r'data-field-error="key">([^<]+)<', refused.text)
    assert error
    assert "letters, digits and _" in error.group(1)
    assert 'value="1st region"' in refused.text  # kept, to correct
    assert re.search(r'<tr data-variable="region">.*?eu-west-1', listed.text, re.S)
    assert "The variable region was deleted." in visible(deleted.text)
    assert 'data-variable="region"' not in deleted.text


async def test_an_editor_reads_variables_but_may_not_change_them(
    signed_in: httpx.AsyncClient, web_url: str, platform, mailbox
) -> None:
    await signed_in.post(
        "/variables", data={"key": "team", "value": "core", **csrf(signed_in)}, headers=HTMX
    )
    editor = await _join_as(signed_in, platform, mailbox, "editor")
    async with httpx.AsyncClient(base_url=web_url, trust_env=False, timeout=20) as client:
        client.cookies.update(editor)
        page = await client.get("/variables")
        await client.get("/credentials")  # sets the CSRF cookie
        token = csrf(client)
        setting = await client.post(
            "/variables", data={"key": "team", "value": "mine", **token}, headers=HTMX
        )
        deleting = await client.post("/variables/team/delete", data=token, headers=HTMX)
        credentials = await client.get("/credentials")

    assert page.status_code == 200
    assert re.search(r'<tr data-variable="team">.*?core', page.text, re.S)
    assert 'id="set-variable-form"' not in page.text
    assert "/variables/team/delete" not in page.text
    assert "Only owners and admins can set and delete variables." in visible(page.text)
    for refused in (setting, deleting):
        assert 'data-error="ForbiddenError"' in refused.text
        assert "set and delete organization variables" in visible(refused.text)
        assert re.search(r'<tr data-variable="team">.*?core', refused.text, re.S)
    # Editors may manage credentials: their form is there.
    assert 'id="new-credential-form"' in credentials.text


async def test_a_viewer_reads_credentials_but_may_not_change_them(
    signed_in: httpx.AsyncClient, web_url: str, platform, mailbox
) -> None:
    page = await create(signed_in, "Shared", "httpBearerAuth", token=a_secret())
    delete = action(page.text, "Shared", "delete")
    viewer = await _join_as(signed_in, platform, mailbox, "viewer")
    async with httpx.AsyncClient(base_url=web_url, trust_env=False, timeout=20) as client:
        client.cookies.update(viewer)
        listed = await client.get("/credentials")
        refused = await client.post(delete, data=csrf(client), headers=HTMX)

    assert 'data-credential="Shared"' in listed.text
    assert 'id="new-credential-form"' not in listed.text
    assert "/delete" not in listed.text
    assert "Only editors, admins and owners can" in visible(listed.text)
    assert 'data-error="ForbiddenError"' in refused.text
    assert "delete credentials" in visible(refused.text)
    assert 'data-credential="Shared"' in refused.text


async def _join_as(owner: httpx.AsyncClient, platform, mailbox, role: str) -> dict[str, str]:
    """A new member of the owner's organization with ``role``: their session cookies."""
    box, _ = mailbox
    email = f"member-{secrets.token_hex(4)}@example.com"
    async with httpx.AsyncClient(trust_env=False, timeout=20) as api:
        invited = data(
            await gql(
                api,
                platform.router_url,
                INVITE,
                {"email": email, "role": role},
                owner.cookies["kf_token"],
            )
        )
        assert invited["inviteMember"]["__typename"] == "InviteMemberSuccess", invited
        for _ in range(50):
            if box.to(email):
                break
            await asyncio.sleep(0.1)
        [message] = box.to(email)
        token = re.search(r"/invitations/(inv_[\w-]+)", message.get_content()).group(1)
        joined = data(await gql(api, platform.router_url, ACCEPT, {"token": token}))
    payload = joined["acceptInvitation"]
    assert payload["__typename"] == "AuthPayload", payload
    return {"kf_token": payload["accessToken"], "kf_refresh": payload["refreshToken"]}
