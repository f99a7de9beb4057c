"""The AI pages: the AI hub, and "describe a workflow": a description, a language-model
credential and model go to ``generateWorkflow``; the new draft opens in the workflow
editor, a refused design shows the model's problems. As the description is typed the
shipped templates closest to it are offered (``recommendTemplates``), each one importable
as a new workflow.
"""

from __future__ import annotations

from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from web.forms import ERROR_FIELDS, Outcome, error_text, outcome
from web.graphql_client import JSON
from web.session import Api, read_form, token_claims
from web.templating import is_htmx, render
from web.viewer import load_viewer, render_page

# Who may create workflows; viewers only look.
EDITOR_ROLES = ("owner", "admin", "editor")
LLM_CREDENTIAL_TYPES = {"openAiApi": "OpenAI-compatible", "anthropicApi": "Anthropic"}
MAX_DESCRIPTION = 4000
SUGGESTIONS = 4
LIBRARY_SIZE = 50  # recommendTemplates' largest page: the whole shipped library
# How long the model may take per answer; a design takes up to three (two repairs).
ANSWER_TIMEOUT_SECONDS = 120.0
GENERATION_TIMEOUT_SECONDS = 3 * ANSWER_TIMEOUT_SECONDS + 30.0
# Suggested model names per provider; any other name the provider knows works too.
MODEL_SUGGESTIONS = (
    "gpt-4o-mini",
    "gpt-4o",
    "gpt-4.1",
    "claude-sonnet-4-5",
    "claude-haiku-4-5",
    "llama3.1",
    "qwen2.5",
)

HUB_QUERY = """\
query AiHub {
  knowledgeBases(first: 100) { id documentCount }
  openai: credentials(type: "openAiApi") { id }
  anthropic: credentials(type: "anthropicApi") { id }
}
"""

CREDENTIALS_QUERY = """\
query LanguageModelCredentials {
  openai: credentials(type: "openAiApi") { id name type }
  anthropic: credentials(type: "anthropicApi") { id name type }
}
"""

RECOMMEND_QUERY = """\
query RecommendTemplates($query: String!, $first: Int!) {
  recommendTemplates(query: $query, first: $first) { id name description tags score }
}
"""

LIBRARY_QUERY = """\
query TemplateLibrary($first: Int!) {
  recommendTemplates(query: "", first: $first) { id name description tags definition }
}
"""

GENERATE = f"""\
mutation GenerateWorkflow($input: GenerateWorkflowInput!) {{
  generateWorkflow(input: $input) {{
    __typename
    ... on GenerateWorkflowSuccess {{ workflow {{ id }} attempts model }}
    ... on GenerationRefusedError {{ reasons attempts usage {{ totalTokens }} }}
    ... on LanguageModelError {{ failure status retryable }}
    {ERROR_FIELDS}
  }}
}}
"""

IMPORT = f"""\
mutation ImportTemplate($input: ImportWorkflowInput!) {{
  importWorkflow(input: $input) {{
    __typename
    ... on CreateWorkflowSuccess {{ workflow {{ id name }} }}
    ... on UnsupportedNodesError {{ nodes {{ name type }} }}
    {ERROR_FIELDS}
  }}
}}
"""


def _can_edit(request: Request) -> bool:
    return token_claims(request).get("role") in EDITOR_ROLES


def _open_workflow(request: Request, workflow_id: str) -> Response:
    url = str(request.url_for("workflow", workflow_id=workflow_id).path)
    if is_htmx(request):
        return Response(status_code=204, headers={"HX-Redirect": url})
    return RedirectResponse(url, status_code=303)


# -- the hub ---------------------------------------------------------------------------


async def ai_page(request: Request) -> Response:
    viewer = await load_viewer(request, required=True)
    response = await Api(request).call(HUB_QUERY)
    data = response.data or {}
    bases = data.get("knowledgeBases") or []
    context = {
        "viewer": viewer,
        "nav": "ai",
        "knowledge_base_count": len(bases),
        "document_count": sum(int(b.get("documentCount") or 0) for b in bases),
        "model_credential_count": len(data.get("openai") or []) + len(data.get("anthropic") or []),
        "load_error": error_text(response) if response.errors else None,
    }
    return await render_page(request, "pages/ai.html", context)


# -- describe a workflow ---------------------------------------------------------------


async def _credentials(request: Request) -> tuple[list[JSON], str | None]:
    response = await Api(request).call(CREDENTIALS_QUERY)
    data = response.data or {}
    found = [
        {**c, "kind": LLM_CREDENTIAL_TYPES.get(str(c.get("type")), c.get("type"))}
        for key in ("openai", "anthropic")
        for c in data.get(key) or []
        if isinstance(c, dict)
    ]
    return found, error_text(response) if response.errors else None


async def _render_describe(request: Request, extra: dict[str, Any]) -> Response:
    credentials, load_error = await _credentials(request)
    context: dict[str, Any] = {
        "nav": "ai",
        "credentials": credentials,
        "load_error": load_error,
        "can_edit": _can_edit(request),
        "models": MODEL_SUGGESTIONS,
        "max_description": MAX_DESCRIPTION,
        "form": {},
        "outcome": Outcome(),
        "suggestions": None,
        **extra,
    }
    return await render_page(
        request, "pages/describe.html", context, fragment="partials/describe_form.html"
    )


async def describe_page(request: Request) -> Response:
    viewer = await load_viewer(request, required=True)
    return await _render_describe(request, {"viewer": viewer})


def _refusal(result: Outcome) -> Outcome:
    """The outcome with a model's failure told in words a person acts on."""
    if result.typename != "LanguageModelError":
        return result
    failure = result.get("failure")
    if failure == "TIMEOUT":
        advice = "The model did not answer in time. Try again, or a faster model."
    elif result.get("retryable"):
        advice = "The provider may be busy: try again in a moment."
    else:
        advice = "Check the credential's key, base URL and the model's name."
    return Outcome(result.typename, result.result, message=f"{result.message} {advice}")


async def generate_workflow(request: Request) -> Response:
    form = await read_form(request)
    variables = {
        "input": {
            "description": form.get("description", ""),
            "credentialId": form.get("credentialId", ""),
            "model": form.get("model", ""),
            "timeoutSeconds": ANSWER_TIMEOUT_SECONDS,
        }
    }
    response = await Api(request).call(GENERATE, variables, timeout=GENERATION_TIMEOUT_SECONDS)
    result = _refusal(outcome(response, "generateWorkflow", "GenerateWorkflowSuccess"))
    if result.ok:
        return _open_workflow(request, str((result.get("workflow") or {})["id"]))
    return await _render_describe(request, {"form": form, "outcome": result})


# -- templates -------------------------------------------------------------------------


async def _suggestions(request: Request, query: str) -> JSON:
    variables = {"query": query[:1000], "first": SUGGESTIONS}
    response = await Api(request).call(RECOMMEND_QUERY, variables)
    found = (response.data or {}).get("recommendTemplates")
    if not isinstance(found, list):
        return {"query": query, "templates": [], "error": error_text(response) or "No answer."}
    return {"query": query, "templates": found, "error": None}


async def template_suggestions(request: Request) -> Response:
    """The templates closest to what is typed so far (an HTMX fragment)."""
    query = " ".join(request.query_params.get("description", "").split())
    suggestions = await _suggestions(request, query) if query else None
    context = {"suggestions": suggestions, "can_edit": _can_edit(request)}
    return render(request, "partials/template_suggestions.html", context)


async def use_template(request: Request) -> Response:
    """Import a shipped template as a new workflow of the organization and open it."""
    form = await read_form(request)
    template_id = request.path_params["template_id"]
    response = await Api(request).call(LIBRARY_QUERY, {"first": LIBRARY_SIZE})
    library = (response.data or {}).get("recommendTemplates") or []
    template = next((t for t in library if isinstance(t, dict) and t["id"] == template_id), None)
    if template is None:
        raise HTTPException(404, error_text(response) or "No such template.")
    variables = {
        "input": {
            "document": template["definition"],
            "name": template["name"],
            "tags": list(template.get("tags") or []),
        }
    }
    result = outcome(await Api(request).call(IMPORT, variables), "importWorkflow")
    if result.ok:
        return _open_workflow(request, str((result.get("workflow") or {})["id"]))
    query = form.get("description", "")
    suggestions = await _suggestions(request, query) if query else None
    context = {
        "suggestions": suggestions,
        "can_edit": _can_edit(request),
        "use_error": f"“{template['name']}” was not imported: {result.message}",
    }
    if is_htmx(request):
        return render(request, "partials/template_suggestions.html", context)
    return await _render_describe(request, context)
