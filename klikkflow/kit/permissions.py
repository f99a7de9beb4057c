"""The permission matrix: which role may do what, enforced by every subgraph.

Roles rank owner > admin > editor > viewer; each action names the least role it needs.
Reading data of one's own organization needs only membership (any role) and is not
listed. `klikkflow permissions` prints this table (the README shows it)."""

from __future__ import annotations

from klikkflow.kit.auth import ROLES, Viewer
from klikkflow.kit.errors import NotAllowed

# action -> the least role allowed to do it
MATRIX: dict[str, str] = {
    "workflow.create": "editor",
    "workflow.update": "editor",
    "workflow.publish": "editor",
    "workflow.run": "editor",
    "credential.manage": "editor",
    "variable.manage": "admin",
    "knowledge_base.create": "editor",
    "knowledge_base.update": "editor",
    "knowledge_base.delete": "editor",
    "member.invite": "admin",
    "member.change_role": "admin",
    "member.remove": "admin",
    "api_key.manage": "admin",
    "audit.read": "admin",
    "sso.configure": "admin",
    "organization.security": "admin",
}

DESCRIPTIONS: dict[str, str] = {
    "workflow.create": "create workflows",
    "workflow.update": "edit, archive and restore workflows",
    "workflow.publish": "publish and roll back workflow versions",
    "workflow.run": "run workflows",
    "credential.manage": "create, change, test and delete credentials",
    "variable.manage": "set and delete organization variables",
    "knowledge_base.create": "create knowledge bases",
    "knowledge_base.update": "add and delete documents of knowledge bases, re-embed them",
    "knowledge_base.delete": "delete knowledge bases",
    "member.invite": "invite members",
    "member.change_role": "change roles",
    "member.remove": "remove members",
    "api_key.manage": "create, list and revoke API keys",
    "audit.read": "read the audit log",
    "sso.configure": "configure single sign-on",
    "organization.security": "change the organization's security settings",
}


def allowed(viewer: Viewer, action: str) -> bool:
    return ROLES.index(viewer.role) <= ROLES.index(MATRIX[action])


def require(viewer: Viewer, action: str) -> None:
    if not allowed(viewer, action):
        raise NotAllowed(DESCRIPTIONS[action])


def table() -> str:
    """The matrix as a Markdown table, one column per role."""
    rows = ["| action | " + " | ".join(ROLES) + " |", "|---|" + "---|" * len(ROLES)]
    for action, least in MATRIX.items():
        marks = ["yes" if ROLES.index(r) <= ROLES.index(least) else "—" for r in ROLES]
        rows.append(f"| {DESCRIPTIONS[action]} | " + " | ".join(marks) + " |")
    return "\n".join(rows)
