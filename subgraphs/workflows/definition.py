"""Checking a workflow definition before it is stored: size, depth and text limits, the
document schema (`schemas/workflow.schema.json`) and the engine's compile step (node
types, parameters, connections, cycles). Every problem is listed by field path; a
definition that passes is kept as canonical JSON text."""

from __future__ import annotations

import json
from typing import Any

from pydantic import ValidationError

from klikkflow.engine.graph import InvalidWorkflow, compile_workflow
from klikkflow.engine.workflow import Workflow
from klikkflow.kit.errors import InvalidInput
from klikkflow.nodes.registry import NodeRegistry, default_registry

MAX_DEFINITION_BYTES = 2 * 1024 * 1024
MAX_DEPTH = 40
MAX_PROBLEMS = 50
ROOT = "definition"


def _too_deep(value: Any, limit: int) -> bool:
    """Whether `value` nests deeper than `limit`, without recursion (no stack to blow)."""
    todo: list[tuple[Any, int]] = [(value, 0)]
    while todo:
        current, depth = todo.pop()
        if depth > limit:
            return True
        if isinstance(current, dict):
            todo.extend((v, depth + 1) for v in current.values())
        elif isinstance(current, list):
            todo.extend((v, depth + 1) for v in current)
    return False


def check_text(problems: dict[str, str], path: str, value: str) -> None:
    """Text that cannot be stored as UTF-8 (a lone surrogate from a JSON escape)."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        problems[path] = "is not valid UTF-8 text"


def _loc(loc: tuple[int | str, ...]) -> str:
    path = ROOT
    for part in loc:
        path += f"[{part}]" if isinstance(part, int) else f".{part}"
    return path


def canonical(workflow: Workflow) -> str:
    document = workflow.model_dump(by_alias=True, mode="json", exclude={"id"})
    return json.dumps(document, ensure_ascii=False, separators=(",", ":"))


def load(text: str) -> Workflow:
    """A stored definition (already checked when it was saved)."""
    return Workflow.model_validate_json(text)


def check(raw: Any, name: str, registry: NodeRegistry | None = None) -> Workflow:
    """The definition as a Workflow named `name`, or InvalidInput listing every problem."""
    if not isinstance(raw, dict):
        raise InvalidInput({ROOT: "must be a JSON object"})
    if _too_deep(raw, MAX_DEPTH):
        raise InvalidInput({ROOT: f"nests deeper than {MAX_DEPTH} levels"})
    try:
        size = len(json.dumps(raw, ensure_ascii=False).encode("utf-8"))
    except UnicodeEncodeError:
        raise InvalidInput({ROOT: "contains text that is not valid UTF-8"}) from None
    except (TypeError, ValueError) as exc:
        raise InvalidInput({ROOT: f"is not JSON: {exc}"}) from None
    if size > MAX_DEFINITION_BYTES:
        raise InvalidInput(
            {ROOT: f"is {size:,} bytes; the limit is {MAX_DEFINITION_BYTES:,} bytes"}
        )
    try:
        workflow = Workflow.model_validate({**raw, "name": name})
    except ValidationError as exc:
        problems = {_loc(e["loc"]): e["msg"] for e in exc.errors()[:MAX_PROBLEMS]}
        raise InvalidInput(problems) from None
    try:
        compile_workflow(workflow, registry or default_registry())
    except InvalidWorkflow as exc:
        problems = {f"{ROOT}.{p.path}": p.message for p in exc.problems[:MAX_PROBLEMS]}
        raise InvalidInput(problems) from None
    return workflow


def credential_ids(workflow: Workflow) -> list[str]:
    """The credentials a workflow uses: its nodes' own, and those named inside their
    parameters (`credentials: {type: {id, name}}`, as an AI Agent's node tools carry)."""
    found = {ref.id for node in workflow.nodes for ref in node.credentials.values()}
    for node in workflow.nodes:
        found.update(_nested_credential_ids(node.parameters))
    return sorted(found)


def _nested_credential_ids(value: Any) -> set[str]:
    if isinstance(value, list):
        return {i for item in value for i in _nested_credential_ids(item)}
    if not isinstance(value, dict):
        return set()
    found: set[str] = set()
    for key, inner in value.items():
        if key == "credentials" and isinstance(inner, dict):
            found.update(
                ref["id"]
                for ref in inner.values()
                if isinstance(ref, dict) and isinstance(ref.get("id"), str)
            )
        else:
            found.update(_nested_credential_ids(inner))
    return found
