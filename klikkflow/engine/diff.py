"""What changed between two versions of a workflow: nodes added, removed and changed
(each change a field path with its value before and after), connections added and
removed, and settings changed. Nodes are matched by their stable id, so a renamed node
shows as one changed node, not as one removed and one added."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from klikkflow.engine.workflow import Connection, Workflow

_MISSING = object()


@dataclass(frozen=True)
class Change:
    path: str  # e.g. parameters.assignments[0].value
    before: Any  # None when the field was added
    after: Any  # None when the field was removed


@dataclass(frozen=True)
class NodeChange:
    id: str
    name: str  # the name in the newer version
    changes: list[Change]


@dataclass
class WorkflowDiff:
    nodes_added: list[str] = field(default_factory=list)  # names in the newer version
    nodes_removed: list[str] = field(default_factory=list)  # names in the older version
    nodes_changed: list[NodeChange] = field(default_factory=list)
    connections_added: list[Connection] = field(default_factory=list)
    connections_removed: list[Connection] = field(default_factory=list)
    settings_changed: list[Change] = field(default_factory=list)
    pin_data_changed: list[str] = field(default_factory=list)  # node names

    @property
    def empty(self) -> bool:
        return not any(
            (
                self.nodes_added,
                self.nodes_removed,
                self.nodes_changed,
                self.connections_added,
                self.connections_removed,
                self.settings_changed,
                self.pin_data_changed,
            )
        )


def _walk(before: Any, after: Any, path: str, out: list[Change]) -> None:
    if isinstance(before, dict) and isinstance(after, dict):
        for key in list(before) + [k for k in after if k not in before]:
            sub = f"{path}.{key}" if path else str(key)
            _walk(before.get(key, _MISSING), after.get(key, _MISSING), sub, out)
    elif isinstance(before, list) and isinstance(after, list) and len(before) == len(after):
        for i, (b, a) in enumerate(zip(before, after, strict=True)):
            _walk(b, a, f"{path}[{i}]", out)
    elif before != after:
        out.append(
            Change(
                path,
                None if before is _MISSING else before,
                None if after is _MISSING else after,
            )
        )


def _edge(c: Connection) -> tuple[str, str, str, str]:
    return (c.source, c.source_output, c.target, c.target_input)


def diff(older: Workflow, newer: Workflow) -> WorkflowDiff:
    result = WorkflowDiff()
    old_nodes = {n.id: n for n in older.nodes}
    new_nodes = {n.id: n for n in newer.nodes}
    result.nodes_added = [n.name for i, n in new_nodes.items() if i not in old_nodes]
    result.nodes_removed = [n.name for i, n in old_nodes.items() if i not in new_nodes]
    for node_id, new in new_nodes.items():
        old = old_nodes.get(node_id)
        if old is None:
            continue
        changes: list[Change] = []
        _walk(old.model_dump(by_alias=True), new.model_dump(by_alias=True), "", changes)
        if changes:
            result.nodes_changed.append(NodeChange(node_id, new.name, changes))
    old_edges = {_edge(c): c for c in older.connections}
    new_edges = {_edge(c): c for c in newer.connections}
    result.connections_added = [c for k, c in new_edges.items() if k not in old_edges]
    result.connections_removed = [c for k, c in old_edges.items() if k not in new_edges]
    _walk(
        older.settings.model_dump(by_alias=True, mode="json"),
        newer.settings.model_dump(by_alias=True, mode="json"),
        "",
        result.settings_changed,
    )
    pinned = set(older.pin_data) | set(newer.pin_data)
    result.pin_data_changed = sorted(
        name for name in pinned if older.pin_data.get(name) != newer.pin_data.get(name)
    )
    return result
