"""Node types by (type, version): the built-ins plus plugins from the `klikkflow.nodes`
entry-point group. Registration refuses malformed node classes and version collisions."""

from __future__ import annotations

import re
from collections.abc import Iterable
from functools import cache
from importlib.metadata import entry_points

from pydantic import BaseModel

from klikkflow.nodes.base import NodeType

ENTRY_POINT_GROUP = "klikkflow.nodes"
TYPE_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9]*(\.[A-Za-z][A-Za-z0-9]*)*$")
CATEGORIES = frozenset({"trigger", "flow", "data", "transform", "core", "ai"})


class RegistryError(Exception):
    pass


class UnknownNodeType(RegistryError):
    def __init__(self, node_type: str, version: float, known: list[float]) -> None:
        if known:
            listed = ", ".join(f"{v:g}" for v in known)
            message = f"node type {node_type!r} has no version {version:g} (known: {listed})"
        else:
            message = f"unknown node type {node_type!r}"
        super().__init__(message)
        self.node_type, self.version = node_type, version


def _describe(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def _check(cls: type) -> list[str]:
    problems = []
    if not (isinstance(cls, type) and issubclass(cls, NodeType)):
        return [f"{cls!r} is not a NodeType subclass"]
    if not TYPE_NAME.match(getattr(cls, "type", "") or ""):
        problems.append("`type` must be a dotted name of letters and digits, e.g. acme.crmLookup")
    for attr in ("display_name", "description"):
        if not isinstance(getattr(cls, attr, None), str) or not getattr(cls, attr):
            problems.append(f"`{attr}` must be a non-empty string")
    if getattr(cls, "category", None) not in CATEGORIES:
        problems.append(f"`category` must be one of {sorted(CATEGORIES)}")
    params = getattr(cls, "Params", None)
    if not (isinstance(params, type) and issubclass(params, BaseModel)):
        problems.append("`Params` must be a pydantic model")
    else:
        try:
            params.model_json_schema()
        except Exception as exc:  # a model pydantic cannot describe is unusable in the editor
            problems.append(f"`Params` has no JSON Schema: {exc}")
    if not cls.versions() or any(v <= 0 for v in cls.versions()):
        problems.append("versions must be positive numbers")
    if not cls.outputs and not cls.inputs:
        problems.append("a node needs at least one port")
    return problems


class NodeRegistry:
    def __init__(self) -> None:
        self._types: dict[tuple[str, float], type[NodeType]] = {}

    def register(self, cls: type[NodeType]) -> type[NodeType]:
        problems = _check(cls)
        if problems:
            raise RegistryError(f"invalid node class {_describe(cls)}: " + "; ".join(problems))
        for version in cls.versions():
            key = (cls.type, float(version))
            existing = self._types.get(key)
            if existing is not None and existing is not cls:
                raise RegistryError(
                    f"node type {cls.type!r} version {version:g} is registered twice: "
                    f"by {_describe(existing)} and by {_describe(cls)}"
                )
            self._types[key] = cls
        return cls

    def register_all(self, classes: Iterable[type[NodeType]]) -> None:
        for cls in classes:
            self.register(cls)

    def versions(self, node_type: str) -> list[float]:
        return sorted(v for t, v in self._types if t == node_type)

    def get(self, node_type: str, version: float) -> type[NodeType]:
        found = self._types.get((node_type, float(version)))
        if found is None:
            raise UnknownNodeType(node_type, version, self.versions(node_type))
        return found

    def all(self) -> list[tuple[str, float, type[NodeType]]]:
        return sorted((t, v, cls) for (t, v), cls in self._types.items())

    def load_entry_points(self, group: str = ENTRY_POINT_GROUP) -> None:
        """Each entry point names a NodeType class or an iterable of them."""
        for entry in entry_points(group=group):
            try:
                loaded = entry.load()
            except Exception as exc:
                raise RegistryError(
                    f"plugin {entry.name!r} ({entry.value}) failed to load: {exc}"
                ) from exc
            classes = loaded if isinstance(loaded, list | tuple) else [loaded]
            for cls in classes:
                try:
                    self.register(cls)
                except RegistryError as exc:
                    raise RegistryError(f"plugin {entry.name!r}: {exc}") from exc


@cache
def default_registry() -> NodeRegistry:
    from klikkflow.nodes.builtin import BUILTIN_NODES

    registry = NodeRegistry()
    registry.register_all(BUILTIN_NODES)
    registry.load_entry_points()
    return registry
