"""The dashboard's ASGI app: ``uvicorn web.app:create_app --factory``."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TypedDict

import httpx
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from klikkflow.kit.settings import WebSettings
from web import (
    accounts,
    ai,
    analytics,
    api_keys,
    audit,
    credentials,
    executions,
    knowledge,
    members,
    profile,
    sso,
    variables,
    workflows,
)
from web.graphql_client import RouterUnavailable
from web.probes import healthz, readyz
from web.session import LoginRequired, RefreshCoalescer, SessionCookieMiddleware, login_url
from web.status import status_page, status_partial
from web.templating import is_htmx, render

STATIC_DIR = Path(__file__).parent / "static"

# Fail fast: a page waits on the router at most this long before showing it unreachable.
ROUTER_TIMEOUT_SECONDS = 3.0

GET, POST = ["GET"], ["POST"]
GET_POST = ["GET", "POST"]


class WebState(TypedDict):
    """Lifespan state, read by handlers as ``request.state.<key>``."""

    settings: WebSettings
    http: httpx.AsyncClient
    refreshes: RefreshCoalescer


async def _login_required(request: Request, exc: Exception) -> Response:
    """No usable session: to the log-in page, and back here afterwards."""
    target = login_url(request)
    if is_htmx(request):  # a fragment request: have htmx load the page instead
        return Response(status_code=204, headers={"HX-Redirect": target})
    return RedirectResponse(target, status_code=303)


async def _router_unavailable(request: Request, exc: Exception) -> Response:
    reason = exc.reason if isinstance(exc, RouterUnavailable) else str(exc)
    message = f"The router did not answer ({reason}). Try again in a moment."
    if is_htmx(request):
        return render(request, "partials/message.html", {"message": message})
    context = {"title": "Router unreachable", "message": message, "viewer": None}
    return render(request, "pages/message.html", context, status_code=503)


async def _http_error(request: Request, exc: Exception) -> Response:
    status = exc.status_code if isinstance(exc, HTTPException) else 500
    detail = exc.detail if isinstance(exc, HTTPException) else "Internal error"
    titles = {403: "Forbidden", 404: "Not found", 405: "Method not allowed"}
    context = {"title": titles.get(status, "Error"), "message": detail, "viewer": None}
    if is_htmx(request):
        return render(request, "partials/message.html", context, status_code=status)
    return render(request, "pages/message.html", context, status_code=status)


def create_app(settings: WebSettings | None = None) -> Starlette:
    settings = settings if settings is not None else WebSettings()

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[WebState]:
        # trust_env=False: the router is an internal service; proxy variables meant for
        # the outside world must not send dashboard traffic (and tokens) elsewhere.
        async with httpx.AsyncClient(timeout=ROUTER_TIMEOUT_SECONDS, trust_env=False) as http:
            yield {"settings": settings, "http": http, "refreshes": RefreshCoalescer()}

    routes = [
        Route("/", status_page, name="home"),
        Route("/status", status_page, name="status"),
        Route("/partials/status", status_partial, name="status_partial"),
        # Accounts
        Route("/signup", accounts.signup, methods=GET_POST, name="signup"),
        Route("/login", accounts.login, methods=GET_POST, name="login"),
        Route("/login/mfa", accounts.login_mfa, methods=POST, name="login_mfa"),
        Route("/login/sso", accounts.login_sso, methods=POST, name="login_sso"),
        Route("/sso/callback", accounts.sso_callback, methods=GET, name="sso_callback"),
        Route("/saml/acs", accounts.saml_acs, methods=POST, name="saml_acs"),
        Route("/logout", accounts.logout, methods=POST, name="logout"),
        Route("/switch", accounts.switch_organization, methods=POST, name="switch_organization"),
        Route("/invitations/{token}", accounts.invitation, methods=GET_POST, name="invitation"),
        Route("/reset-password", accounts.reset_request, methods=GET_POST, name="reset_request"),
        Route(
            "/reset-password/{token}",
            accounts.reset_password,
            methods=GET_POST,
            name="reset_password",
        ),
        Route("/verify-email/{token}", accounts.verify_email, methods=GET, name="verify_email"),
        # Organization
        Route("/members", members.members_page, methods=GET, name="members"),
        Route("/members/invite", members.invite_member, methods=POST, name="invite_member"),
        Route(
            "/members/{user_id}/role",
            members.change_role,
            methods=POST,
            name="change_member_role",
        ),
        Route(
            "/members/{user_id}/remove", members.remove_member, methods=POST, name="remove_member"
        ),
        Route(
            "/members/invitations/{invitation_id}/revoke",
            members.revoke_invitation,
            methods=POST,
            name="revoke_invitation",
        ),
        Route("/api-keys", api_keys.api_keys_page, methods=GET, name="api_keys"),
        Route("/api-keys", api_keys.create_api_key, methods=POST, name="create_api_key"),
        Route(
            "/api-keys/{key_id}/revoke",
            api_keys.revoke_api_key,
            methods=POST,
            name="revoke_api_key",
        ),
        Route("/audit", audit.audit_page, methods=GET, name="audit"),
        Route("/sso", sso.sso_page, methods=GET, name="sso"),
        Route("/sso/oidc", sso.configure_oidc, methods=POST, name="configure_oidc"),
        Route("/sso/saml", sso.configure_saml, methods=POST, name="configure_saml"),
        # You
        Route("/profile", profile.profile_page, methods=GET, name="profile"),
        Route(
            "/profile/sessions/{session_id}/revoke",
            profile.revoke_session,
            methods=POST,
            name="revoke_session",
        ),
        Route("/profile/mfa/start", profile.start_mfa, methods=POST, name="start_mfa"),
        Route("/profile/mfa/confirm", profile.confirm_mfa, methods=POST, name="confirm_mfa"),
        Route("/profile/mfa/disable", profile.disable_mfa, methods=POST, name="disable_mfa"),
        # Workflows
        Route("/workflows", workflows.workflows_page, methods=GET, name="workflows"),
        Route("/workflows", workflows.create_workflow, methods=POST, name="create_workflow"),
        Route("/workflows/import", workflows.import_workflow, methods=POST, name="import_workflow"),
        Route("/workflows/{workflow_id}", workflows.workflow_page, methods=GET, name="workflow"),
        Route(
            "/workflows/{workflow_id}/nodes/{node_id}",
            workflows.save_node,
            methods=POST,
            name="save_node",
        ),
        Route(
            "/workflows/{workflow_id}/definition",
            workflows.save_definition,
            methods=POST,
            name="save_definition",
        ),
        Route(
            "/workflows/{workflow_id}/archive",
            workflows.archive_workflow,
            methods=POST,
            name="archive_workflow",
        ),
        Route(
            "/workflows/{workflow_id}/restore",
            workflows.restore_workflow,
            methods=POST,
            name="restore_workflow",
        ),
        Route(
            "/workflows/{workflow_id}/activate",
            workflows.activate_workflow,
            methods=POST,
            name="activate_workflow",
        ),
        Route(
            "/workflows/{workflow_id}/deactivate",
            workflows.deactivate_workflow,
            methods=POST,
            name="deactivate_workflow",
        ),
        Route(
            "/workflows/{workflow_id}/versions/{number}/publish",
            workflows.publish_version,
            methods=POST,
            name="publish_version",
        ),
        Route(
            "/workflows/{workflow_id}/versions/{number}/rollback",
            workflows.rollback_version,
            methods=POST,
            name="rollback_version",
        ),
        Route(
            "/workflows/{workflow_id}/diff",
            workflows.workflow_diff,
            methods=GET,
            name="workflow_diff",
        ),
        Route(
            "/workflows/{workflow_id}/export",
            workflows.export_workflow,
            methods=GET,
            name="export_workflow",
        ),
        Route(
            "/workflows/{workflow_id}/run",
            executions.run_workflow,
            methods=POST,
            name="run_workflow",
        ),
        Route(
            "/workflows/{workflow_id}/executions",
            executions.workflow_executions_page,
            methods=GET,
            name="workflow_executions",
        ),
        # Executions
        Route("/executions", executions.executions_page, methods=GET, name="executions"),
        Route(
            "/executions/{execution_id}", executions.execution_page, methods=GET, name="execution"
        ),
        Route(
            "/executions/{execution_id}/events",
            executions.execution_events,
            methods=GET,
            name="execution_events",
        ),
        Route(
            "/executions/{execution_id}/cancel",
            executions.cancel_execution,
            methods=POST,
            name="cancel_execution",
        ),
        Route(
            "/executions/{execution_id}/rerun",
            executions.rerun_execution,
            methods=POST,
            name="rerun_execution",
        ),
        Route(
            "/executions/{execution_id}/retry",
            executions.retry_execution,
            methods=POST,
            name="retry_execution",
        ),
        Route(
            "/executions/{execution_id}/delete",
            executions.delete_execution,
            methods=POST,
            name="delete_execution",
        ),
        # Credentials and variables
        Route("/credentials", credentials.credentials_page, methods=GET, name="credentials"),
        Route(
            "/credentials", credentials.create_credential, methods=POST, name="create_credential"
        ),
        Route(
            "/credentials/fields",
            credentials.credential_fields,
            methods=GET,
            name="credential_fields",
        ),
        Route(
            "/credentials/{credential_id}",
            credentials.update_credential,
            methods=POST,
            name="update_credential",
        ),
        Route(
            "/credentials/{credential_id}/delete",
            credentials.delete_credential,
            methods=POST,
            name="delete_credential",
        ),
        Route(
            "/credentials/{credential_id}/test",
            credentials.test_credential,
            methods=POST,
            name="test_credential",
        ),
        Route("/variables", variables.variables_page, methods=GET, name="variables"),
        Route("/variables", variables.set_variable, methods=POST, name="set_variable"),
        Route(
            "/variables/{key}/delete",
            variables.delete_variable,
            methods=POST,
            name="delete_variable",
        ),
        # AI: the hub, describe a workflow, templates, knowledge bases, analytics
        Route("/ai", ai.ai_page, methods=GET, name="ai"),
        Route("/analytics", analytics.analytics_page, methods=GET, name="analytics"),
        Route("/ai/describe", ai.describe_page, methods=GET, name="describe_workflow"),
        Route("/ai/describe", ai.generate_workflow, methods=POST, name="generate_workflow"),
        Route("/ai/templates", ai.template_suggestions, methods=GET, name="template_suggestions"),
        Route(
            "/ai/templates/{template_id}/use", ai.use_template, methods=POST, name="use_template"
        ),
        Route(
            "/knowledge-bases",
            knowledge.knowledge_bases_page,
            methods=GET,
            name="knowledge_bases",
        ),
        Route(
            "/knowledge-bases",
            knowledge.create_knowledge_base,
            methods=POST,
            name="create_knowledge_base",
        ),
        Route(
            "/knowledge-bases/{kb_id}",
            knowledge.knowledge_base_page,
            methods=GET,
            name="knowledge_base",
        ),
        Route(
            "/knowledge-bases/{kb_id}/delete",
            knowledge.delete_knowledge_base,
            methods=POST,
            name="delete_knowledge_base",
        ),
        Route(
            "/knowledge-bases/{kb_id}/search",
            knowledge.search_knowledge_base,
            methods=GET,
            name="search_knowledge_base",
        ),
        Route(
            "/knowledge-bases/{kb_id}/documents",
            knowledge.upload_document,
            methods=POST,
            name="upload_document",
        ),
        Route(
            "/knowledge-bases/{kb_id}/documents/{document_id}/delete",
            knowledge.delete_document,
            methods=POST,
            name="delete_document",
        ),
        Route("/healthz", healthz, name="healthz"),
        Route("/readyz", readyz, name="readyz"),
        Mount("/static", StaticFiles(directory=STATIC_DIR), name="static"),
    ]
    return Starlette(
        routes=routes,
        lifespan=lifespan,
        middleware=[Middleware(SessionCookieMiddleware)],
        exception_handlers={
            LoginRequired: _login_required,
            RouterUnavailable: _router_unavailable,
            HTTPException: _http_error,
        },
    )
