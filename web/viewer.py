"""Who is signed in, for the page header, and rendering pages that show it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from web.graphql_client import JSON
from web.session import Api, LoginRequired, has_session, token_claims
from web.templating import is_htmx, render

VIEWER_QUERY = """\
query Viewer {
  me { id name email emailVerified }
  myOrganizations { role organization { id name slug } }
}
"""

ROLES = ("owner", "admin", "editor", "viewer")
MANAGER_ROLES = ("owner", "admin")


@dataclass(frozen=True)
class Membership:
    id: str
    name: str
    slug: str
    role: str


@dataclass(frozen=True)
class Viewer:
    id: str
    name: str
    email: str
    email_verified: bool
    organization_id: str | None  # the active organization (the token's)
    role: str | None  # the role there (the token's)
    memberships: list[Membership] = field(default_factory=list)

    @property
    def organization(self) -> Membership | None:
        return next((m for m in self.memberships if m.id == self.organization_id), None)

    @property
    def can_manage(self) -> bool:
        return self.role in MANAGER_ROLES


def viewer_from(data: JSON, claims: dict[str, Any]) -> Viewer | None:
    me = data.get("me")
    if not isinstance(me, dict):
        return None
    memberships = [
        Membership(
            id=str(m["organization"]["id"]),
            name=str(m["organization"]["name"]),
            slug=str(m["organization"]["slug"]),
            role=str(m["role"]),
        )
        for m in data.get("myOrganizations") or []
        if isinstance(m, dict) and isinstance(m.get("organization"), dict)
    ]
    organization_id = claims.get("org") if isinstance(claims.get("org"), str) else None
    role = claims.get("role") if isinstance(claims.get("role"), str) else None
    return Viewer(
        id=str(me["id"]),
        name=str(me["name"]),
        email=str(me["email"]),
        email_verified=bool(me.get("emailVerified")),
        organization_id=organization_id,
        role=role,
        memberships=sorted(memberships, key=lambda m: m.name.lower()),
    )


async def load_viewer(request: Request, *, required: bool) -> Viewer | None:
    """The signed-in viewer; None when anonymous (or LoginRequired when ``required``)."""
    if not has_session(request):
        if required:
            raise LoginRequired()
        return None
    try:
        response = await Api(request).call(VIEWER_QUERY)
    except LoginRequired:
        if required:
            raise
        return None
    viewer = viewer_from(response.data or {}, token_claims(request))
    if viewer is None and required:
        raise LoginRequired(expired=True)
    return viewer


async def render_page(
    request: Request,
    template: str,
    context: dict[str, Any],
    *,
    fragment: str | None = None,
    status_code: int = 200,
) -> Response:
    """Render a page with the header's viewer, or only ``fragment`` for HTMX.

    HTMX swaps only 2xx answers, so a fragment always comes back 200: its errors are
    shown inline. A full page keeps ``status_code``. Pass ``viewer`` in ``context`` when
    the handler already loaded it (None for "anonymous").
    """
    if fragment and is_htmx(request):
        return render(request, fragment, context)
    if "viewer" not in context:
        context = {**context, "viewer": await load_viewer(request, required=False)}
    return render(request, template, context, status_code=status_code)
