"""Every node type KlikkFlow ships."""

from __future__ import annotations

from klikkflow.nodes.ai import AI_NODES
from klikkflow.nodes.base import NodeType
from klikkflow.nodes.code import CODE_NODES
from klikkflow.nodes.control import CONTROL_NODES
from klikkflow.nodes.data import DATA_NODES
from klikkflow.nodes.flow import FLOW_NODES
from klikkflow.nodes.http import HTTP_NODES
from klikkflow.nodes.transform import TRANSFORM_NODES
from klikkflow.nodes.triggers import TRIGGER_NODES

BUILTIN_NODES: list[type[NodeType]] = [
    *TRIGGER_NODES,
    *CONTROL_NODES,
    *FLOW_NODES,
    *DATA_NODES,
    *TRANSFORM_NODES,
    *HTTP_NODES,
    *CODE_NODES,
    *AI_NODES,
]
