"""The members page: who belongs to the organization, pending invitations, roles, removal."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from web.forms import ERROR_FIELDS, ERROR_MESSAGE, Outcome, error_text, outcome
from web.session import Api, read_form, token_claims
from web.viewer import MANAGER_ROLES, load_viewer, render_page

MEMBERS_QUERY = """\
query Members {
  me { id }
  members { role joinedAt user { id name email } }
}
"""

# Only owners and admins may list invitations: asked for only when the viewer manages.
MEMBERS_AND_INVITATIONS_QUERY = """\
query MembersAndInvitations {
  me { id }
  members { role joinedAt user { id name email } }
  invitations { id email role expiresAt }
}
"""

INVITE = f"""\
mutation Invite($input: InviteMemberInput!) {{
  inviteMember(input: $input) {{
    __typename
    ... on InviteMemberSuccess {{ invitation {{ email role expiresAt }} }}
    {ERROR_FIELDS}
  }}
}}
"""

CHANGE_ROLE = f"""\
mutation ChangeRole($input: ChangeMemberRoleInput!) {{
  changeMemberRole(input: $input) {{
    __typename
    ... on ChangeMemberRoleSuccess {{ member {{ role user {{ name }} }} }}
    {ERROR_FIELDS}
  }}
}}
"""

REMOVE = f"""\
mutation Remove($input: RemoveMemberInput!) {{
  removeMember(input: $input) {{
    __typename ... on RemoveMemberSuccess {{ userId }} {ERROR_FIELDS}
  }}
}}
"""


async def members_page(request: Request) -> Response:
    viewer = await load_viewer(request, required=True)
    return await _render(request, {"viewer": viewer})


async def invite_member(request: Request) -> Response:
    form = await read_form(request)
    variables = {"input": {"email": form.get("email", ""), "role": form.get("role", "viewer")}}
    result = outcome(await Api(request).call(INVITE, variables), "inviteMember")
    invited = result.get("invitation") if result.ok else None
    notice = f"Invitation sent to {invited['email']} as {invited['role']}." if invited else None
    invite_form = {} if result.ok else {"email": form.get("email", ""), "role": form.get("role")}
    return await _render(
        request, {"invite_outcome": result, "invite_form": invite_form, "notice": notice}
    )


async def change_role(request: Request) -> Response:
    form = await read_form(request)
    user_id = request.path_params["user_id"]
    variables = {"input": {"userId": user_id, "role": form.get("role", "")}}
    result = outcome(await Api(request).call(CHANGE_ROLE, variables), "changeMemberRole")
    member = result.get("member") if result.ok else None
    notice = f"{member['user']['name']} is now {member['role']}." if member else None
    return await _render(request, {"row_outcome": result, "row_user": user_id, "notice": notice})


async def remove_member(request: Request) -> Response:
    await read_form(request)
    user_id = request.path_params["user_id"]
    variables = {"input": {"userId": user_id}}
    result = outcome(await Api(request).call(REMOVE, variables), "removeMember")
    notice = "The member was removed; their sessions here ended." if result.ok else None
    return await _render(request, {"row_outcome": result, "row_user": user_id, "notice": notice})


REVOKE_INVITATION = f"""\
mutation RevokeInvitation($input: RevokeInvitationInput!) {{
  revokeInvitation(input: $input) {{
    __typename ... on RevokeInvitationSuccess {{ id }} {ERROR_MESSAGE}
  }}
}}
"""


async def revoke_invitation(request: Request) -> Response:
    await read_form(request)
    invitation_id = request.path_params["invitation_id"]
    variables = {"input": {"id": invitation_id}}
    result = outcome(await Api(request).call(REVOKE_INVITATION, variables), "revokeInvitation")
    notice = "The invitation was revoked; its link no longer works." if result.ok else None
    return await _render(request, {"row_outcome": result, "notice": notice})


async def _render(request: Request, extra: dict[str, Any]) -> Response:
    role = token_claims(request).get("role")
    can_manage = role in MANAGER_ROLES
    query = MEMBERS_AND_INVITATIONS_QUERY if can_manage else MEMBERS_QUERY
    response = await Api(request).call(query)
    data = response.data or {}
    context: dict[str, Any] = {
        "nav": "members",
        "members": data.get("members") or [],
        "invitations": data.get("invitations") or [],
        "me_id": (data.get("me") or {}).get("id"),
        "can_manage": can_manage,
        "load_error": error_text(response) if response.errors else None,
        "invite_outcome": Outcome(),
        "invite_form": {},
        "row_outcome": None,
        "row_user": None,
        "notice": None,
        **extra,
    }
    return await render_page(
        request, "pages/members.html", context, fragment="partials/members.html"
    )
