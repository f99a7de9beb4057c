"""Translate n8n workflow JSON into a KlikkFlow workflow: node types lose their
`n8n-nodes-base.` prefix, port indexes become the node type's named ports, and
parameters and `{{ }}` expressions are carried over as they are (our expression language
is n8n's). Nodes we do not support are listed, never silently dropped."""

from __future__ import annotations

from typing import Any

from klikkflow.engine.workflow import Workflow
from klikkflow.nodes.registry import NodeRegistry, RegistryError

PREFIXES = ("n8n-nodes-base.", "@n8n/n8n-nodes-langchain.")


class UnsupportedNodes(Exception):
    def __init__(self, nodes: list[tuple[str, str]]) -> None:
        listed = ", ".join(f"{name} ({node_type})" for name, node_type in nodes)
        super().__init__(f"unsupported n8n nodes: {listed}")
        self.nodes = nodes


def is_n8n(document: dict[str, Any]) -> bool:
    return isinstance(document.get("connections"), dict)


def _type(n8n_type: str) -> str:
    for prefix in PREFIXES:
        if n8n_type.startswith(prefix):
            return n8n_type[len(prefix) :]
    return n8n_type


def from_n8n(document: dict[str, Any], registry: NodeRegistry) -> Workflow:
    nodes, unsupported, ports = [], [], {}
    for node in document.get("nodes", []):
        node_type, version = _type(node["type"]), float(node.get("typeVersion", 1))
        try:
            cls = registry.get(node_type, version)
        except RegistryError:
            unsupported.append((node["name"], node["type"]))
            continue
        params = cls.Params.model_validate(node.get("parameters", {}))
        ports[node["name"]] = (cls.inputs, cls().output_ports(params))
        nodes.append(
            {
                "id": node.get("id") or node["name"],
                "name": node["name"],
                "type": node_type,
                "typeVersion": version,
                "parameters": node.get("parameters", {}),
                "position": node.get("position", [0, 0]),
                "disabled": node.get("disabled", False),
                "credentials": {
                    kind: {"id": str(ref.get("id", "")), "name": ref.get("name", "")}
                    for kind, ref in (node.get("credentials") or {}).items()
                },
                **_error_policy(node),
            }
        )
    if unsupported:
        raise UnsupportedNodes(unsupported)
    connections = []
    for source, by_kind in document["connections"].items():
        for index, targets in enumerate(by_kind.get("main", [])):
            for target in targets or []:
                outputs = ports[source][1]
                inputs = ports[target["node"]][0]
                connections.append(
                    {
                        "source": source,
                        "sourceOutput": outputs[index] if index < len(outputs) else "error",
                        "target": target["node"],
                        "targetInput": inputs[target.get("index", 0)] if inputs else "main",
                    }
                )
    return Workflow.model_validate(
        {
            "id": document.get("id"),
            "name": document.get("name") or "Imported from n8n",
            "nodes": nodes,
            "connections": connections,
            "settings": {"timezone": document.get("settings", {}).get("timezone", "UTC")},
            "pinData": document.get("pinData") or {},
        }
    )


def _error_policy(node: dict[str, Any]) -> dict[str, Any]:
    policy: dict[str, Any] = {}
    on_error = node.get("onError")
    if on_error == "continueRegularOutput" or node.get("continueOnFail"):
        policy["onError"] = "continue"
    elif on_error == "continueErrorOutput":
        policy["onError"] = "errorOutput"
    if node.get("retryOnFail"):
        policy["retry"] = {
            "maxTries": int(node.get("maxTries", 3)),
            "waitMs": int(node.get("waitBetweenTries", 1000)),
            "backoff": 1.0,
        }
    return policy
