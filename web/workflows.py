"""The workflow pages: the list (search, tags, archived, paging, create, import) and one
workflow (its graph, a form per node, the JSON, versions with diff, publish, rollback,
and its triggers: activate, deactivate, webhook endpoints and schedules).

Every save names the version it was made from (``expectedVersion``): when someone saved
since, the router answers VersionConflictError and nothing is overwritten.
"""

from __future__ import annotations

import json
import re
from typing import Any
from urllib.parse import urlencode

from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from web.forms import ERROR_FIELDS, ERROR_MESSAGE, Outcome, error_text, outcome
from web.graphql_client import JSON
from web.session import Api, read_form, token_claims
from web.templating import is_htmx, render
from web.viewer import load_viewer, render_page
from web.workflow_forms import (
    FormProblem,
    node_of_path,
    param_fields,
    read_parameters,
)
from web.workflow_graph import render_svg

PAGE_SIZE = 20
VERSIONS_SHOWN = 50
MAX_IMPORT_BYTES = 2 * 1024 * 1024

LIST_QUERY = """\
query Workflows($first: Int!, $after: String, $filter: WorkflowFilterInput) {
  workflows(first: $first, after: $after, filter: $filter) {
    edges {
      cursor
      node { id name description tags version activeVersion active archived updatedAt }
    }
    pageInfo { hasNextPage endCursor }
  }
  workflowTags
}
"""

WORKFLOW_FIELDS = """\
id name description tags version definition activeVersion active archived archivedAt
updatedAt owner { id name email } savedBy { id name }
webhooks { path method node version } schedules { node timezone nextRunAt }
"""

DETAIL_QUERY = f"""\
query Workflow($id: ID!, $versions: Int!) {{
  workflow(id: $id) {{
    {WORKFLOW_FIELDS}
    versions(first: $versions) {{
      edges {{ node {{ number message author {{ name }} createdAt published }} }}
      pageInfo {{ hasNextPage }}
    }}
  }}
  nodeTypes {{ type version displayName category trigger inputs outputs parametersSchema }}
}}
"""

DIFF_QUERY = """\
query WorkflowDiff($id: ID!, $older: Int!, $newer: Int!) {
  workflowDiff(workflowId: $id, older: $older, newer: $newer) {
    __typename
    ... on WorkflowDiffView {
      older newer nodesAdded nodesRemoved pinDataChanged
      nodesChanged { id name changes { path before after } }
      connectionsAdded { source sourceOutput target targetInput }
      connectionsRemoved { source sourceOutput target targetInput }
      settingsChanged { path before after }
    }
    ... on Error { message }
  }
}
"""

EXPORT_QUERY = """\
query ExportWorkflow($id: ID!, $version: Int) {
  workflow(id: $id) { name version }
  exportWorkflow(id: $id, version: $version)
}
"""

CREATE = f"""\
mutation CreateWorkflow($input: CreateWorkflowInput!) {{
  createWorkflow(input: $input) {{
    __typename ... on CreateWorkflowSuccess {{ workflow {{ id name }} }} {ERROR_FIELDS}
  }}
}}
"""

IMPORT = f"""\
mutation ImportWorkflow($input: ImportWorkflowInput!) {{
  importWorkflow(input: $input) {{
    __typename
    ... on CreateWorkflowSuccess {{ workflow {{ id name }} }}
    ... on UnsupportedNodesError {{ nodes {{ name type }} }}
    {ERROR_FIELDS}
  }}
}}
"""

UPDATE = f"""\
mutation UpdateWorkflow($input: UpdateWorkflowInput!) {{
  updateWorkflow(input: $input) {{
    __typename
    ... on WorkflowSuccess {{ workflow {{ version }} }}
    ... on VersionConflictError {{ expectedVersion currentVersion }}
    {ERROR_FIELDS}
  }}
}}
"""

_CHANGE_SELECTION = f"""\
    __typename
    ... on WorkflowSuccess {{ workflow {{ version activeVersion archived }} }}
    ... on VersionConflictError {{ expectedVersion currentVersion }}
    {ERROR_MESSAGE}
"""

ARCHIVE = f"""\
mutation ArchiveWorkflow($input: WorkflowIdInput!) {{
  archiveWorkflow(input: $input) {{ {_CHANGE_SELECTION} }}
}}
"""

RESTORE = f"""\
mutation RestoreWorkflow($input: WorkflowIdInput!) {{
  restoreWorkflow(input: $input) {{ {_CHANGE_SELECTION} }}
}}
"""

PUBLISH = f"""\
mutation PublishWorkflowVersion($input: PublishWorkflowVersionInput!) {{
  publishWorkflowVersion(input: $input) {{ {_CHANGE_SELECTION} }}
}}
"""

ROLLBACK = f"""\
mutation RollbackWorkflow($input: RollbackWorkflowInput!) {{
  rollbackWorkflow(input: $input) {{ {_CHANGE_SELECTION} }}
}}
"""

ACTIVATE = f"""\
mutation ActivateWorkflow($input: WorkflowIdInput!) {{
  activateWorkflow(input: $input) {{
    __typename
    ... on WorkflowSuccess {{ workflow {{ active activeVersion }} }}
    ... on WebhookPathTakenError {{ path method workflowId }}
    {ERROR_FIELDS}
  }}
}}
"""

DEACTIVATE = f"""\
mutation DeactivateWorkflow($input: WorkflowIdInput!) {{
  deactivateWorkflow(input: $input) {{ {_CHANGE_SELECTION} }}
}}
"""

WORKFLOW_NAME_QUERY = "query WorkflowName($id: ID!) { workflow(id: $id) { id name } }"

# What "New workflow" starts from: a trigger and a first step, or nothing.
STARTERS: dict[str, tuple[str, dict[str, Any]]] = {
    "manual": (
        "Manual trigger → Edit Fields",
        {
            "nodes": [
                {"id": "start", "name": "Start", "type": "manualTrigger", "typeVersion": 1,
                 "position": [0, 0], "parameters": {}},
                {"id": "fields", "name": "Edit Fields", "type": "set", "typeVersion": 3.4,
                 "position": [260, 0],
                 "parameters": {"mode": "manual", "assignments": {"assignments": []}}},
            ],
            "connections": [{"source": "Start", "target": "Edit Fields"}],
        },
    ),
    "webhook": (
        "Webhook → Respond to Webhook",
        {
            "nodes": [
                {"id": "webhook", "name": "Webhook", "type": "webhook", "typeVersion": 2,
                 "position": [0, 0],
                 "parameters": {"path": "incoming", "httpMethod": "POST",
                                "responseMode": "responseNode"}},
                {"id": "respond", "name": "Respond", "type": "respondToWebhook",
                 "typeVersion": 1.1, "position": [260, 0],
                 "parameters": {"respondWith": "firstIncomingItem"}},
            ],
            "connections": [{"source": "Webhook", "target": "Respond"}],
        },
    ),
    "blank": ("Empty", {"nodes": [], "connections": []}),
}  # fmt: skip


def _tags(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def _done(request: Request, url: str) -> Response:
    """After a create or import: to the new workflow's page (htmx follows HX-Redirect)."""
    if is_htmx(request):
        return Response(status_code=204, headers={"HX-Redirect": url})
    return RedirectResponse(url, status_code=303)


def _field_paths(result: Outcome) -> list[tuple[str, str]]:
    """Every (path, message) of a ValidationError, with its full path."""
    return [
        (str(f.get("path", "")), str(f.get("message", "")))
        for f in result.get("fields") or []
        if isinstance(f, dict)
    ]


# -- the list ------------------------------------------------------------------------


def _list_filter(request: Request) -> dict[str, Any]:
    params = request.query_params
    return {
        "search": params.get("search", "").strip(),
        "tags": [t for t in params.getlist("tag") if t],
        "archived": params.get("archived") in ("1", "on", "true"),
    }


def _list_url(request: Request, filters: dict[str, Any], after: str | None) -> str:
    query = [("search", filters["search"])] if filters["search"] else []
    query += [("tag", t) for t in filters["tags"]]
    query += [("archived", "1")] if filters["archived"] else []
    query += [("after", after)] if after else []
    return str(request.url_for("workflows").path) + ("?" + urlencode(query) if query else "")


async def workflows_page(request: Request) -> Response:
    filters = _list_filter(request)
    after = request.query_params.get("after") or None
    variables = {"first": PAGE_SIZE, "after": after, "filter": filters}
    response = await Api(request).call(LIST_QUERY, variables)
    data = response.data or {}
    connection = data.get("workflows") or {}
    page_info = connection.get("pageInfo") or {}
    more_url = None
    if page_info.get("hasNextPage"):
        more_url = _list_url(request, filters, page_info.get("endCursor"))
    context = {
        "workflows": [e["node"] for e in connection.get("edges") or []],
        "known_tags": data.get("workflowTags") or [],
        "filters": filters,
        "after": after,
        "more_url": more_url,
        "load_error": error_text(response) if response.errors else None,
    }
    if is_htmx(request) and request.headers.get("HX-Target") == "workflow-more":
        return render(request, "partials/workflow_rows.html", context)
    if is_htmx(request) and request.headers.get("HX-Target") == "workflow-list":
        return render(request, "partials/workflow_list.html", context)
    return await _list_page(request, context)


async def _list_page(request: Request, extra: dict[str, Any]) -> Response:
    context: dict[str, Any] = {
        "nav": "workflows",
        "workflows": [],
        "known_tags": [],
        "filters": {"search": "", "tags": [], "archived": False},
        "after": None,
        "more_url": None,
        "load_error": None,
        "starters": {k: label for k, (label, _) in STARTERS.items()},
        "create_outcome": Outcome(),
        "create_form": {},
        "import_outcome": Outcome(),
        "import_form": {},
        **extra,
    }
    if "viewer" not in context:
        context["viewer"] = await load_viewer(request, required=True)
    return render(request, "pages/workflows.html", context)


async def create_workflow(request: Request) -> Response:
    form = await read_form(request)
    _label, definition = STARTERS.get(form.get("starter", ""), STARTERS["blank"])
    fields = {
        "name": form.get("name", ""),
        "description": form.get("description", ""),
        "tags": _tags(form.get("tags", "")),
        "definition": definition,
        "message": "Created",
    }
    result = outcome(await Api(request).call(CREATE, {"input": fields}), "createWorkflow")
    if result.ok:
        return _done(request, f"/workflows/{result.get('workflow')['id']}")
    context = {"create_outcome": result, "create_form": form}
    if is_htmx(request):
        return render(request, "partials/workflow_create_form.html", _form_context(context))
    return await _list_page(request, context)


def _form_context(extra: dict[str, Any]) -> dict[str, Any]:
    return {
        "starters": {k: label for k, (label, _) in STARTERS.items()},
        "create_outcome": Outcome(),
        "create_form": {},
        "import_outcome": Outcome(),
        "import_form": {},
        **extra,
    }


async def _import_text(request: Request, form: dict[str, str]) -> str:
    upload = (await request.form()).get("file")
    if isinstance(upload, UploadFile) and upload.filename:
        content = await upload.read(MAX_IMPORT_BYTES + 1)
        if len(content) > MAX_IMPORT_BYTES:
            raise ValueError(f"The file is larger than {MAX_IMPORT_BYTES // 1024 // 1024} MB.")
        try:
            return content.decode("utf-8")
        except UnicodeDecodeError:
            raise ValueError("The file is not UTF-8 text.") from None
    return form.get("document", "")


async def import_workflow(request: Request) -> Response:
    form = await read_form(request)
    try:
        text = await _import_text(request, form)
        if not text.strip():
            raise ValueError("Paste the workflow's JSON or choose a .json file.")
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        problem = f"That is not JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}."
        result = Outcome("InvalidJson", message=problem)
    except ValueError as exc:
        result = Outcome("InvalidJson", message=str(exc))
    else:
        variables = {
            "input": {
                "document": document,
                "name": form.get("name") or None,
                "tags": _tags(form.get("tags", "")),
            }
        }
        result = outcome(await Api(request).call(IMPORT, variables), "importWorkflow")
        if result.ok:
            return _done(request, f"/workflows/{result.get('workflow')['id']}")
    context = {
        "import_outcome": result,
        "import_form": form,
        "import_paths": _field_paths(result),
        "unsupported": result.get("nodes") or [],
    }
    if is_htmx(request):
        return render(request, "partials/workflow_import_form.html", _form_context(context))
    return await _list_page(request, context)


# -- one workflow --------------------------------------------------------------------


def _type_index(node_types: list[JSON]) -> dict[tuple[str, float], JSON]:
    return {(str(t["type"]), float(t["version"])): t for t in node_types}


def _type_of(node: JSON, types: dict[tuple[str, float], JSON]) -> JSON | None:
    try:
        return types.get((str(node.get("type")), float(node.get("typeVersion") or 1)))
    except (TypeError, ValueError):
        return None


async def _load(request: Request, workflow_id: str) -> tuple[JSON, dict[tuple[str, float], JSON]]:
    variables = {"id": workflow_id, "versions": VERSIONS_SHOWN}
    response = await Api(request).call(DETAIL_QUERY, variables)
    workflow = (response.data or {}).get("workflow")
    if not isinstance(workflow, dict):
        detail = error_text(response) if response.errors else "No such workflow."
        raise HTTPException(404, detail)
    return workflow, _type_index((response.data or {}).get("nodeTypes") or [])


def _node_views(workflow: JSON, types: dict[tuple[str, float], JSON], extra: JSON) -> list[JSON]:
    """Each node with its form's inputs (what was typed, after a refused save)."""
    typed: dict[str, dict[str, Any]] = extra.get("node_values") or {}
    errors: dict[str, dict[str, str]] = extra.get("node_errors") or {}
    views = []
    for node in workflow["definition"].get("nodes") or []:
        kind = _type_of(node, types) or {}
        schema = kind.get("parametersSchema") or {}
        parameters = typed.get(node["id"], node.get("parameters") or {})
        views.append(
            {
                "node": node,
                "type": kind,
                "fields": param_fields(schema, parameters, errors.get(node["name"], {})),
                "unknown_type": not kind,
            }
        )
    return views


async def _render_detail(request: Request, workflow_id: str, extra: dict[str, Any]) -> Response:
    workflow, types = await _load(request, workflow_id)
    definition = workflow["definition"]
    versions = [e["node"] for e in workflow["versions"]["edges"]]
    context: dict[str, Any] = {
        "nav": "workflows",
        "workflow": workflow,
        "graph": render_svg(definition, types, workflow["name"]),
        "nodes": _node_views(workflow, types, extra),
        "versions": versions,
        "more_versions": workflow["versions"]["pageInfo"]["hasNextPage"],
        "json_text": json.dumps(definition, indent=2, ensure_ascii=False),
        "notice": None,
        "outcome": None,  # a banner for the header's and the versions' actions
        "node_outcome": None,
        "node_id": None,  # the node whose form was just submitted
        "json_outcome": None,
        "json_paths": [],
        "stale_version": None,  # the version a refused form was made from
        "diff": None,
        "diff_error": None,
        "node_other_errors": [],
        "diff_older": max(workflow["version"] - 1, 1),
        "diff_newer": workflow["version"],
        "triggers": trigger_view(workflow, token_claims(request).get("org")),
        "activation_notice": None,
        "activation_outcome": None,  # why Activate or Deactivate was refused
        **extra,
    }
    return await render_page(
        request, "pages/workflow.html", context, fragment="partials/workflow_detail.html"
    )


async def workflow_page(request: Request) -> Response:
    viewer = await load_viewer(request, required=True)
    return await _render_detail(request, request.path_params["workflow_id"], {"viewer": viewer})


def _conflict_text(result: Outcome) -> str:
    current = result.get("currentVersion")
    expected = result.get("expectedVersion")
    return (
        f"Someone saved version {current} since you loaded version {expected}; "
        "reload to see it. Your changes were not saved."
    )


def _refusal(result: Outcome) -> Outcome:
    """The outcome with a conflict put in words a person acts on."""
    if result.typename == "VersionConflictError":
        return Outcome(result.typename, result.result, message=_conflict_text(result))
    return result


async def _save(request: Request, workflow_id: str, form: dict[str, str], fields: JSON) -> Outcome:
    try:
        expected = int(form.get("expectedVersion", ""))
    except ValueError:
        raise HTTPException(400, "The form does not say which version it was made from.") from None
    variables = {
        "input": {
            "id": workflow_id,
            "expectedVersion": expected,
            "message": form.get("message", ""),
            **fields,
        }
    }
    return _refusal(outcome(await Api(request).call(UPDATE, variables), "updateWorkflow"))


def _node_by_id(definition: JSON, node_id: str) -> JSON:
    for node in definition.get("nodes") or []:
        if node.get("id") == node_id:
            return node
    raise HTTPException(404, "That node is no longer in the workflow.")


async def save_node(request: Request) -> Response:
    """Save one node's parameters from its generated form as a new version."""
    workflow_id, node_id = request.path_params["workflow_id"], request.path_params["node_id"]
    form = await read_form(request)
    workflow, types = await _load(request, workflow_id)
    definition = workflow["definition"]
    node = _node_by_id(definition, node_id)
    schema = (_type_of(node, types) or {}).get("parametersSchema") or {}
    base = {"node_id": node_id}
    try:
        parameters = read_parameters(form, node.get("parameters") or {}, schema)
    except FormProblem as exc:
        problem = Outcome("FormProblem", message="Some inputs could not be read.")
        typed = _typed_parameters(form, node)
        extra = {"node_outcome": problem, "node_errors": {node["name"]: exc.problems}}
        return await _render_detail(request, workflow_id, {**base, **extra, **typed})
    nodes = [
        {**n, "parameters": parameters} if n.get("id") == node_id else n
        for n in definition.get("nodes") or []
    ]
    if not form.get("message"):
        form["message"] = f"Edited {node['name']}"
    result = await _save(request, workflow_id, form, {"definition": {**definition, "nodes": nodes}})
    if result.ok:
        notice = f"Saved {node['name']}: version {result.get('workflow')['version']}."
        return await _render_detail(request, workflow_id, {**base, "notice": notice})
    errors: dict[str, dict[str, str]] = {}
    for path, message in _field_paths(result):
        name, param = node_of_path(path, nodes)
        if name and param:
            errors.setdefault(name, {})[param] = message
    extra = {
        "node_outcome": result,
        "node_errors": errors,
        "node_values": {node_id: parameters},
        "stale_version": form.get("expectedVersion"),
        "node_other_errors": [
            (p, m) for p, m in _field_paths(result) if not node_of_path(p, nodes)[1]
        ],
    }
    return await _render_detail(request, workflow_id, {**base, **extra})


def _typed_parameters(form: dict[str, str], node: JSON) -> dict[str, Any]:
    """What was typed into a form that could not be read, to show it again."""
    typed = dict(node.get("parameters") or {})
    for key in form:
        if key.startswith("kind."):
            name = key.removeprefix("kind.")
            typed[name] = form.get("p." + name, "")
    return {"node_values": {node["id"]: typed}}


async def save_definition(request: Request) -> Response:
    """Save the whole definition from the JSON view as a new version."""
    workflow_id = request.path_params["workflow_id"]
    form = await read_form(request)
    text = form.get("definition", "")
    keep = {"json_text": text, "stale_version": form.get("expectedVersion")}
    try:
        definition = json.loads(text)
    except json.JSONDecodeError as exc:
        problem = f"That is not JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}."
        return await _render_detail(
            request, workflow_id, {**keep, "json_outcome": Outcome("InvalidJson", message=problem)}
        )
    if not form.get("message"):
        form["message"] = "Edited the JSON"
    result = await _save(request, workflow_id, form, {"definition": definition})
    if result.ok:
        notice = f"Saved the JSON: version {result.get('workflow')['version']}."
        return await _render_detail(request, workflow_id, {"notice": notice})
    extra = {"json_outcome": result, "json_paths": _field_paths(result)}
    return await _render_detail(request, workflow_id, {**keep, **extra})


async def _change(
    request: Request, mutation: str, root: str, fields: JSON, notice: str
) -> Response:
    workflow_id = request.path_params["workflow_id"]
    variables = {"input": {"id": workflow_id, **fields}}
    result = _refusal(outcome(await Api(request).call(mutation, variables), root))
    extra: dict[str, Any] = {"outcome": result}
    if result.ok:
        extra["notice"] = notice.format(**(result.get("workflow") or {}))
    return await _render_detail(request, workflow_id, extra)


async def archive_workflow(request: Request) -> Response:
    await read_form(request)
    return await _change(request, ARCHIVE, "archiveWorkflow", {}, "Archived: it no longer runs.")


async def restore_workflow(request: Request) -> Response:
    await read_form(request)
    return await _change(request, RESTORE, "restoreWorkflow", {}, "Restored.")


def _number(request: Request) -> int:
    try:
        return int(request.path_params["number"])
    except ValueError:
        raise HTTPException(404, "No such version.") from None


async def publish_version(request: Request) -> Response:
    await read_form(request)
    number = _number(request)
    notice = f"Version {number} is published: triggers and production runs use it."
    return await _change(request, PUBLISH, "publishWorkflowVersion", {"version": number}, notice)


async def rollback_version(request: Request) -> Response:
    form = await read_form(request)
    number = _number(request)
    try:
        expected = int(form.get("expectedVersion", ""))
    except ValueError:
        raise HTTPException(400, "The form does not say which version it was made from.") from None
    notice = f"Rolled back to version {number}: saved as version {{version}} and published."
    fields = {"version": number, "expectedVersion": expected}
    return await _change(request, ROLLBACK, "rollbackWorkflow", fields, notice)


# -- triggers ------------------------------------------------------------------------


def _latest_webhooks(definition: JSON) -> list[JSON]:
    """The Webhook nodes of the latest saved version: what its test URLs answer."""
    found = []
    for node in definition.get("nodes") or []:
        if node.get("type") != "webhook" or node.get("disabled"):
            continue
        parameters = node.get("parameters") or {}
        path = str(parameters.get("path") or "").strip("/")
        if path:
            method = str(parameters.get("httpMethod") or "GET")
            found.append({"node": node.get("name"), "path": path, "method": method})
    return found


def trigger_view(workflow: JSON, organization_id: Any) -> JSON:
    """The webhook endpoints as URL paths on the executions service, one row per
    Webhook node: its production URL (the published version's, while the workflow is
    on) and its test URL (the latest saved version's, on or off); and the schedules."""
    org = organization_id if isinstance(organization_id, str) else "<organization id>"
    rows: dict[str, JSON] = {}
    for hook in workflow.get("webhooks") or []:
        path = str(hook["path"]).strip("/")
        rows[str(hook["node"])] = {
            "node": hook["node"],
            "production": {"method": hook["method"], "url": f"/webhook/{org}/{path}"},
            "test": None,
        }
    for hook in _latest_webhooks(workflow.get("definition") or {}):
        row = rows.setdefault(str(hook["node"]), {"node": hook["node"], "production": None})
        row["test"] = {
            "method": hook["method"],
            "url": f"/webhook-test/{org}/{workflow['id']}/{hook['path']}",
        }
    return {"webhooks": list(rows.values()), "schedules": workflow.get("schedules") or []}


async def _activation_refusal(request: Request, result: Outcome) -> JSON:
    """What to tell about a refused Activate: the message, the problems of a
    ValidationError, and for a webhook path in use, the workflow that holds it."""
    refusal: JSON = {
        "typename": result.typename or "error",
        "message": result.message,
        "problems": list(result.fields.values()),
        "holder": None,
    }
    if result.typename == "WebhookPathTakenError":
        path = str(result.get("path") or "").strip("/")
        refusal["message"] = (
            f"{result.get('method')} /{path} is already used by another active workflow; "
            "nothing was turned on. Turn that workflow off or change this Webhook's path."
        )
        holder_id = result.get("workflowId")
        if holder_id:
            response = await Api(request).call(WORKFLOW_NAME_QUERY, {"id": holder_id})
            holder = (response.data or {}).get("workflow")
            name = holder.get("name") if isinstance(holder, dict) else None
            refusal["holder"] = {"id": holder_id, "name": name or "the workflow holding it"}
    return refusal


async def activate_workflow(request: Request) -> Response:
    await read_form(request)
    workflow_id = request.path_params["workflow_id"]
    variables = {"input": {"id": workflow_id}}
    result = outcome(await Api(request).call(ACTIVATE, variables), "activateWorkflow")
    if result.ok:
        published = (result.get("workflow") or {}).get("activeVersion")
        notice = f"On: version {published}'s webhooks and schedules run."
        return await _render_detail(request, workflow_id, {"activation_notice": notice})
    refusal = await _activation_refusal(request, result)
    return await _render_detail(request, workflow_id, {"activation_outcome": refusal})


async def deactivate_workflow(request: Request) -> Response:
    await read_form(request)
    workflow_id = request.path_params["workflow_id"]
    variables = {"input": {"id": workflow_id}}
    result = _refusal(outcome(await Api(request).call(DEACTIVATE, variables), "deactivateWorkflow"))
    if result.ok:
        notice = "Off: its webhooks answer 404 and its schedules do not fire."
        return await _render_detail(request, workflow_id, {"activation_notice": notice})
    refusal = await _activation_refusal(request, result)
    return await _render_detail(request, workflow_id, {"activation_outcome": refusal})


# -- diff and export -------------------------------------------------------------------


def _shown_json(value: Any) -> str:
    return "—" if value is None else json.dumps(value, ensure_ascii=False, sort_keys=True)


def _diff_view(diff: JSON) -> JSON:
    """The diff with every before/after value as text to show."""

    def changes(items: list[JSON]) -> list[JSON]:
        return [
            {**c, "before": _shown_json(c["before"]), "after": _shown_json(c["after"])}
            for c in items
        ]

    return {
        **diff,
        "nodesChanged": [
            {**n, "changes": changes(n["changes"])} for n in diff.get("nodesChanged") or []
        ],
        "settingsChanged": changes(diff.get("settingsChanged") or []),
    }


async def workflow_diff(request: Request) -> Response:
    workflow_id = request.path_params["workflow_id"]
    try:
        older = int(request.query_params.get("older", ""))
        newer = int(request.query_params.get("newer", ""))
    except ValueError:
        raise HTTPException(400, "Choose two versions to compare.") from None
    variables = {"id": workflow_id, "older": older, "newer": newer}
    response = await Api(request).call(DIFF_QUERY, variables)
    found = (response.data or {}).get("workflowDiff") or {}
    if found.get("__typename") == "WorkflowDiffView":
        context: dict[str, Any] = {"diff": _diff_view(found), "diff_error": None}
    else:
        message = found.get("message") or error_text(response) or "No diff."
        context = {"diff": None, "diff_error": message}
    context |= {"diff_older": older, "diff_newer": newer}
    if is_htmx(request):
        return render(request, "partials/workflow_diff.html", context)
    viewer = await load_viewer(request, required=True)
    return await _render_detail(request, workflow_id, {"viewer": viewer, **context})


def _filename(name: str, version: int) -> str:
    slug = re.sub(r"[^A-Za-z0-9]+", "-", name).strip("-").lower()[:60] or "workflow"
    return f"{slug}-v{version}.json"


async def export_workflow(request: Request) -> Response:
    """The KlikkFlow JSON of a version (the latest by default), as a download."""
    workflow_id = request.path_params["workflow_id"]
    version_text = request.query_params.get("version", "")
    version = int(version_text) if version_text.isdigit() else None
    variables = {"id": workflow_id, "version": version}
    response = await Api(request).call(EXPORT_QUERY, variables)
    data = response.data or {}
    document, workflow = data.get("exportWorkflow"), data.get("workflow")
    if document is None or not isinstance(workflow, dict):
        raise HTTPException(404, error_text(response) or "No such workflow or version.")
    filename = _filename(str(workflow["name"]), version or int(workflow["version"]))
    body = json.dumps(document, indent=2, ensure_ascii=False) + "\n"
    return Response(
        body,
        media_type="application/json",
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )
