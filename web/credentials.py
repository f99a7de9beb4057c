"""The credentials page: the list (masked hints, which workflows use each), a form per
credential type generated from its JSON Schema, edit, test and delete.

Secret values travel one way only, from the form to the router. No page ever shows one:
secret inputs are always rendered empty, also after a refused save, and an edit sends a
secret only when someone typed a new one (the router keeps the fields left out).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from web.forms import ERROR_FIELDS, ERROR_MESSAGE, Outcome, error_text, outcome
from web.graphql_client import JSON
from web.session import Api, read_form, token_claims
from web.templating import is_htmx, render
from web.viewer import load_viewer, render_page

# Who may create, change, test and delete credentials; viewers only read.
EDITOR_ROLES = ("owner", "admin", "editor")

TYPE_FIELDS = "name displayName test secretFields schema"

CREDENTIALS_QUERY = f"""\
query Credentials {{
  credentialTypes {{ {TYPE_FIELDS} }}
  credentials {{
    id name type hints {{ field value }} owner {{ id name }} updatedAt usedBy {{ id name }}
  }}
}}
"""

TYPES_QUERY = f"query CredentialTypes {{ credentialTypes {{ {TYPE_FIELDS} }} }}"

CREDENTIAL_QUERY = f"""\
query Credential($id: ID!) {{
  credentialTypes {{ {TYPE_FIELDS} }}
  credential(id: $id) {{ id name type hints {{ field value }} }}
}}
"""

CREATE = f"""\
mutation CreateCredential($input: CreateCredentialInput!) {{
  createCredential(input: $input) {{
    __typename ... on CredentialSuccess {{ credential {{ id name }} }} {ERROR_FIELDS}
  }}
}}
"""

UPDATE = f"""\
mutation UpdateCredential($input: UpdateCredentialInput!) {{
  updateCredential(input: $input) {{
    __typename ... on CredentialSuccess {{ credential {{ id name }} }} {ERROR_FIELDS}
  }}
}}
"""

DELETE = f"""\
mutation DeleteCredential($input: CredentialIdInput!) {{
  deleteCredential(input: $input) {{
    __typename
    ... on DeleteCredentialSuccess {{ id }}
    ... on CredentialInUseError {{ workflows {{ id name }} }}
    {ERROR_MESSAGE}
  }}
}}
"""

TEST = f"""\
mutation TestCredential($input: TestCredentialInput!) {{
  testCredential(input: $input) {{
    __typename ... on CredentialTestResult {{ ok message status }} {ERROR_MESSAGE}
  }}
}}
"""


@dataclass(frozen=True)
class CredentialField:
    """One input of a credential form, read from the type's JSON Schema."""

    key: str  # the credential's field, e.g. ``token``
    label: str
    kind: str  # text, password, select, checkbox or number
    required: bool
    secret: bool
    hint: str = ""
    options: tuple[str, ...] = ()
    default: str = ""

    @property
    def input_name(self) -> str:
        return f"data.{self.key}"


def form_fields(kind: JSON) -> list[CredentialField]:
    """The inputs of a credential type, in its schema's order."""
    schema = kind.get("schema") or {}
    required = set(schema.get("required") or ())
    secrets = set(kind.get("secretFields") or ())
    fields = []
    for key, prop in (schema.get("properties") or {}).items():
        secret = key in secrets or prop.get("writeOnly") is True or prop.get("format") == "password"
        options = tuple(str(o) for o in prop.get("enum") or ())
        if "const" in prop:
            options = (str(prop["const"]),)
        if secret:
            input_kind = "password"
        elif options:
            input_kind = "select"
        elif prop.get("type") == "boolean":
            input_kind = "checkbox"
        elif prop.get("type") in ("integer", "number"):
            input_kind = "number"
        else:
            input_kind = "text"
        default = prop.get("default")
        fields.append(
            CredentialField(
                key=key,
                label=str(prop.get("title") or key),
                kind=input_kind,
                required=key in required,
                secret=secret,
                hint=str(prop.get("description") or ""),
                options=options,
                default="" if default is None or secret else str(default),
            )
        )
    return fields


def _typed(field: CredentialField, text: str) -> Any:
    if field.kind == "checkbox":
        return text.lower() in ("true", "on", "1")
    if field.kind == "number":
        try:
            return int(text)
        except ValueError:
            try:
                return float(text)
            except ValueError:
                return text  # the router names the field that is not a number
    return text


def read_data(
    form: dict[str, str],
    raw: dict[str, str],
    fields: list[CredentialField],
    stored: dict[str, str] | None = None,
) -> dict[str, Any]:
    """The ``data`` to send. Secrets come from ``raw`` (not stripped: a secret is sent as
    typed) and only when typed. Creating (``stored`` None) leaves empty fields out so the
    type's defaults apply; editing sends the other fields only when they differ from
    ``stored`` (their current, non-secret values)."""
    data: dict[str, Any] = {}
    for field in fields:
        if field.secret:
            value = raw.get(field.input_name, "")
            if value:
                data[field.key] = value
            continue
        if field.kind == "checkbox":
            text = "true" if field.input_name in form else "false"
        else:
            text = form.get(field.input_name, "")
        if stored is None:
            if text or field.kind == "checkbox":
                data[field.key] = _typed(field, text)
        elif text != stored.get(field.key, "") and not (
            field.kind == "checkbox" and str(_typed(field, text)) == stored.get(field.key)
        ):
            data[field.key] = _typed(field, text)
    return data


def echo(form: dict[str, str], fields: list[CredentialField]) -> dict[str, str]:
    """What to show again in a refused form: the non-secret fields only."""
    return {
        f.input_name: form.get(f.input_name, "")
        for f in fields
        if not f.secret and f.input_name in form
    }


def full_paths(result: Outcome) -> Outcome:
    """The outcome with field errors keyed by their full path (``data.name`` and ``name``
    are different inputs: the header name and the credential's name)."""
    if result.ok:
        return result
    fields = {
        str(f.get("path", "")): str(f.get("message", ""))
        for f in result.result.get("fields") or []
        if isinstance(f, dict)
    }
    return Outcome(result.typename, result.result, message=result.message, fields=fields)


def _by_name(types: list[JSON]) -> dict[str, JSON]:
    return {str(t.get("name")): t for t in types if isinstance(t, dict)}


def _stored(credential: JSON) -> dict[str, str]:
    return {str(h["field"]): str(h["value"]) for h in credential.get("hints") or []}


async def _types(request: Request) -> dict[str, JSON]:
    response = await Api(request).call(TYPES_QUERY)
    return _by_name((response.data or {}).get("credentialTypes") or [])


def _raw_form(form: Any) -> dict[str, str]:
    return {k: v for k, v in form.items() if isinstance(v, str)}


# -- pages ------------------------------------------------------------------------------


async def credentials_page(request: Request) -> Response:
    viewer = await load_viewer(request, required=True)
    new_type = request.query_params.get("type")
    return await _render(request, {"viewer": viewer, "new_type": new_type})


async def credential_fields(request: Request) -> Response:
    """The new-credential form's inputs for one type (swapped in when the type changes)."""
    type_name = request.query_params.get("type", "")
    if not is_htmx(request):
        return RedirectResponse(request.url_for("credentials").include_query_params(type=type_name))
    kind = (await _types(request)).get(type_name)
    context = {
        "kind": kind,
        "fields": form_fields(kind) if kind else [],
        "values": {},
        "errors": {},
        "id_prefix": "new",
        "editing": False,
    }
    return render(request, "partials/credentials_fields.html", context)


async def create_credential(request: Request) -> Response:
    form = await read_form(request)
    raw = _raw_form(await request.form())
    type_name = form.get("type", "")
    types = await _types(request)
    fields = form_fields(types[type_name]) if type_name in types else []
    name = form.get("name", "")
    variables = {"input": {"name": name, "type": type_name, "data": read_data(form, raw, fields)}}
    result = full_paths(outcome(await Api(request).call(CREATE, variables), "createCredential"))
    if not result.ok:
        create_form = {"name": name, **echo(form, fields)}
        extra = {"create_outcome": result, "create_form": create_form, "new_type": type_name}
        return await _render(request, extra)
    created = result.get("credential") or {}
    notice = f"Credential “{created.get('name', name)}” saved. Its secrets are not shown again."
    return await _render(request, {"notice": notice, "new_type": type_name})


async def update_credential(request: Request) -> Response:
    form = await read_form(request)
    raw = _raw_form(await request.form())
    credential_id = request.path_params["credential_id"]
    loaded = (await Api(request).call(CREDENTIAL_QUERY, {"id": credential_id})).data or {}
    credential = loaded.get("credential")
    if not isinstance(credential, dict):
        result = Outcome("NotFoundError", message="This credential no longer exists.")
        return await _render(request, {"row_outcome": result})
    kind = _by_name(loaded.get("credentialTypes") or []).get(str(credential["type"]))
    fields = form_fields(kind) if kind else []
    changes: dict[str, Any] = {"id": credential_id}
    name = form.get("name", "")
    if name != credential["name"]:
        changes["name"] = name
    data = read_data(form, raw, fields, stored=_stored(credential))
    if data:
        changes["data"] = data
    response = await Api(request).call(UPDATE, {"input": changes})
    result = full_paths(outcome(response, "updateCredential"))
    if not result.ok:
        edit_form = {"name": name, **echo(form, fields)}
        extra = {"edit_id": credential_id, "edit_outcome": result, "edit_form": edit_form}
        return await _render(request, extra)
    saved = result.get("credential") or {}
    return await _render(request, {"notice": f"Credential “{saved.get('name', name)}” saved."})


async def delete_credential(request: Request) -> Response:
    await read_form(request)
    credential_id = request.path_params["credential_id"]
    variables = {"input": {"id": credential_id}}
    result = outcome(await Api(request).call(DELETE, variables), "deleteCredential")
    if not result.ok:
        return await _render(request, {"row_outcome": result, "row_id": credential_id})
    return await _render(request, {"notice": "The credential was deleted."})


async def test_credential(request: Request) -> Response:
    form = await read_form(request)
    credential_id = request.path_params["credential_id"]
    url = form.get("url", "")
    variables = {"input": {"id": credential_id, "url": url}}
    result = outcome(await Api(request).call(TEST, variables), "testCredential")
    extra = {"test_id": credential_id, "test_url": url, "test_outcome": result}
    return await _render(request, extra)


async def _render(request: Request, extra: dict[str, Any]) -> Response:
    response = await Api(request).call(CREDENTIALS_QUERY)
    data = response.data or {}
    types = [t for t in data.get("credentialTypes") or [] if isinstance(t, dict)]
    by_name = _by_name(types)
    new_type = extra.get("new_type")
    if new_type not in by_name:
        new_type = "httpHeaderAuth" if "httpHeaderAuth" in by_name else next(iter(by_name), None)
    context: dict[str, Any] = {
        "nav": "credentials",
        "credentials": data.get("credentials") or [],
        "types": types,
        "types_by_name": by_name,
        "fields_of": {name: form_fields(kind) for name, kind in by_name.items()},
        "can_edit": token_claims(request).get("role") in EDITOR_ROLES,
        "load_error": error_text(response) if response.errors else None,
        "notice": None,
        "create_outcome": Outcome(),
        "create_form": {},
        "edit_id": None,
        "edit_outcome": Outcome(),
        "edit_form": {},
        "row_outcome": None,
        "row_id": None,
        "test_id": None,
        "test_url": "",
        "test_outcome": None,
        **extra,
        "new_type": new_type,
    }
    return await render_page(
        request, "pages/credentials.html", context, fragment="partials/credentials.html"
    )
