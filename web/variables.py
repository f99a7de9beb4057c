"""The variables page: the organization's ``$vars``, set (create or change) and delete.

Everyone in the organization reads them; only owners and admins may change them, so the
forms are offered to them only (the router refuses anyone else in any case).
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from web.forms import ERROR_FIELDS, ERROR_MESSAGE, Outcome, error_text, outcome
from web.session import Api, read_form, token_claims
from web.viewer import MANAGER_ROLES, load_viewer, render_page

VARIABLES_QUERY = "query Variables { variables { key value updatedAt } }"

SET = f"""\
mutation SetVariable($input: SetVariableInput!) {{
  setVariable(input: $input) {{
    __typename ... on SetVariableSuccess {{ variable {{ key value }} }} {ERROR_FIELDS}
  }}
}}
"""

DELETE = f"""\
mutation DeleteVariable($input: VariableKeyInput!) {{
  deleteVariable(input: $input) {{
    __typename ... on DeleteVariableSuccess {{ key deleted }} {ERROR_MESSAGE}
  }}
}}
"""


async def variables_page(request: Request) -> Response:
    viewer = await load_viewer(request, required=True)
    return await _render(request, {"viewer": viewer})


async def set_variable(request: Request) -> Response:
    form = await read_form(request)
    raw = await request.form()
    value = raw.get("value")  # as typed: spaces may matter in a value
    key = form.get("key", "")
    variables = {"input": {"key": key, "value": value if isinstance(value, str) else ""}}
    result = outcome(await Api(request).call(SET, variables), "setVariable")
    if not result.ok:
        set_form = {"key": key, "value": variables["input"]["value"]}
        return await _render(request, {"set_outcome": result, "set_form": set_form})
    return await _render(request, {"notice": f"The variable {key} was saved."})


async def delete_variable(request: Request) -> Response:
    await read_form(request)
    key = request.path_params["key"]
    result = outcome(await Api(request).call(DELETE, {"input": {"key": key}}), "deleteVariable")
    if not result.ok:
        return await _render(request, {"row_outcome": result})
    gone = result.get("deleted")
    notice = f"The variable {key} was deleted." if gone else f"There was no variable {key}."
    return await _render(request, {"notice": notice})


async def _render(request: Request, extra: dict[str, Any]) -> Response:
    response = await Api(request).call(VARIABLES_QUERY)
    context: dict[str, Any] = {
        "nav": "variables",
        "variables": (response.data or {}).get("variables") or [],
        "can_manage": token_claims(request).get("role") in MANAGER_ROLES,
        "load_error": error_text(response) if response.errors else None,
        "notice": None,
        "set_outcome": Outcome(),
        "set_form": {},
        "row_outcome": None,
        **extra,
    }
    return await render_page(
        request, "pages/variables.html", context, fragment="partials/variables.html"
    )
