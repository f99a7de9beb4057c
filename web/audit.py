"""The audit log page: newest first, 50 a page, filtered by action."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import Response

from web.forms import error_text
from web.session import Api
from web.viewer import load_viewer, render_page

PAGE_SIZE = 50

AUDIT_QUERY = """\
query Audit($first: Int!, $after: String, $filter: AuditLogFilter) {
  auditLog(first: $first, after: $after, filter: $filter) {
    edges { cursor node { seq at actorKind actorId action targetKind targetId ip data } }
    pageInfo { hasNextPage endCursor }
  }
}
"""

# Offered in the filter's suggestions; any other action can be typed in.
KNOWN_ACTIONS = (
    "auth.signup.succeeded",
    "auth.login.succeeded",
    "auth.login.failed",
    "auth.mfa.failed",
    "auth.sso.login",
    "auth.password_reset",
    "mfa.enabled",
    "mfa.disabled",
    "member.invited",
    "member.joined",
    "member.role_changed",
    "member.removed",
    "api_key.created",
    "api_key.revoked",
    "organization.security_changed",
    "sso.config_changed",
)

FORBIDDEN_MESSAGE = "only owners and admins can read the audit log"


async def audit_page(request: Request) -> Response:
    viewer = None if _htmx(request) else await load_viewer(request, required=True)
    action = request.query_params.get("action", "").strip()
    after = request.query_params.get("after") or None
    variables: dict[str, Any] = {"first": PAGE_SIZE, "after": after}
    if action:
        variables["filter"] = {"actions": [a.strip() for a in action.split(",") if a.strip()]}
    response = await Api(request).call(AUDIT_QUERY, variables)
    log = (response.data or {}).get("auditLog") or {}
    problem = error_text(response) if response.errors else None
    page_info = log.get("pageInfo") or {}
    older_url = None
    if page_info.get("hasNextPage") and page_info.get("endCursor"):
        query = {"after": page_info["endCursor"], **({"action": action} if action else {})}
        older_url = f"{request.url.path}?{urlencode(query)}"
    context = {
        "nav": "audit",
        "viewer": viewer,
        "entries": [_entry(edge["node"]) for edge in log.get("edges") or []],
        "action": action,
        "after": after,
        "older_url": older_url,
        "forbidden": bool(problem and FORBIDDEN_MESSAGE in problem),
        "problem": problem,
        "known_actions": KNOWN_ACTIONS,
    }
    return await render_page(
        request, "pages/audit.html", context, fragment="partials/audit_table.html"
    )


def _entry(node: dict[str, Any]) -> dict[str, Any]:
    data = node.get("data")
    details = json.dumps(data, sort_keys=True, ensure_ascii=False) if data else ""
    return {**node, "details": details}


def _htmx(request: Request) -> bool:
    return request.headers.get("HX-Request", "").lower() == "true"
