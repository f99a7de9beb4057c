"""The API keys page: list, create (the secret is shown once), revoke."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from web.forms import ERROR_FIELDS, ERROR_MESSAGE, Outcome, error_text, outcome
from web.session import Api, read_form
from web.viewer import load_viewer, render_page

API_KEYS_QUERY = """\
query ApiKeys {
  apiKeys { id name prefix role createdAt expiresAt lastUsedAt revoked }
}
"""

CREATE = f"""\
mutation CreateApiKey($input: CreateApiKeyInput!) {{
  createApiKey(input: $input) {{
    __typename
    ... on CreateApiKeySuccess {{ secret apiKey {{ id name prefix role }} }}
    {ERROR_FIELDS}
  }}
}}
"""

REVOKE = f"""\
mutation RevokeApiKey($input: RevokeApiKeyInput!) {{
  revokeApiKey(input: $input) {{ __typename ... on RevokeApiKeySuccess {{ id }} {ERROR_MESSAGE} }}
}}
"""


async def api_keys_page(request: Request) -> Response:
    viewer = await load_viewer(request, required=True)
    return await _render(request, {"viewer": viewer})


async def create_api_key(request: Request) -> Response:
    form = await read_form(request)
    days = form.get("expiresInDays", "")
    fields: dict[str, Any] = {"name": form.get("name", ""), "role": form.get("role", "viewer")}
    if days:
        if not days.isdigit():
            result = Outcome(message="API key refused", fields={"expiresInDays": "not a number"})
            return await _render(request, {"create_outcome": result, "create_form": form})
        fields["expiresInDays"] = int(days)
    result = outcome(await Api(request).call(CREATE, {"input": fields}), "createApiKey")
    if not result.ok:
        return await _render(request, {"create_outcome": result, "create_form": form})
    return await _render(request, {"created": result.result})


async def revoke_api_key(request: Request) -> Response:
    await read_form(request)
    variables = {"input": {"id": request.path_params["key_id"]}}
    result = outcome(await Api(request).call(REVOKE, variables), "revokeApiKey")
    notice = "The key was revoked; it stops working within 30 s." if result.ok else None
    return await _render(request, {"revoke_outcome": result, "notice": notice})


async def _render(request: Request, extra: dict[str, Any]) -> Response:
    response = await Api(request).call(API_KEYS_QUERY)
    keys = (response.data or {}).get("apiKeys")
    context: dict[str, Any] = {
        "nav": "api_keys",
        "keys": keys or [],
        # Only owners and admins may see keys: the router says so in an error.
        "load_error": error_text(response) if response.errors or keys is None else None,
        "create_outcome": Outcome(),
        "create_form": {},
        "created": None,
        "revoke_outcome": None,
        "notice": None,
        **extra,
    }
    return await render_page(
        request, "pages/api_keys.html", context, fragment="partials/api_keys.html"
    )
