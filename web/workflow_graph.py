"""A workflow's graph as server-rendered SVG: a box per node, a curve per connection.

Boxes sit at the nodes' saved ``position`` (n8n's canvas coordinates). When those say
nothing (every node at the same spot, as in hand-written JSON) the nodes are laid out in
columns by their depth from the triggers, in the order they are listed.

The markup is built here, with every text escaped, so the page template only inserts it.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from xml.sax.saxutils import escape, quoteattr

from markupsafe import Markup

NODE_WIDTH = 180
NODE_HEIGHT = 52  # at least; a box with many ports grows to give each label room
PORT_SPACING = 20
COLUMN_GAP = 80  # between columns of the automatic layout
ROW_GAP = 36
MARGIN = 40
MAIN = "main"


@dataclass
class Box:
    """A node as drawn: its top-left corner and the ports its lines use."""

    id: str
    name: str
    type: str
    label: str  # the node type's name for people
    x: float
    y: float
    disabled: bool = False
    outputs: list[str] = field(default_factory=list)
    inputs: list[str] = field(default_factory=list)

    @property
    def height(self) -> float:
        return max(NODE_HEIGHT, PORT_SPACING * (max(len(self.outputs), len(self.inputs)) + 1))

    def port_y(self, ports: list[str], port: str) -> float:
        """Ports share the box's side evenly, in their order."""
        index = ports.index(port) if port in ports else 0
        return self.y + self.height * (index + 1) / (len(ports) + 1)


@dataclass(frozen=True)
class Link:
    source: str
    source_output: str
    target: str
    target_input: str


def _links(definition: Mapping[str, Any]) -> list[Link]:
    return [
        Link(
            str(c.get("source", "")),
            str(c.get("sourceOutput") or MAIN),
            str(c.get("target", "")),
            str(c.get("targetInput") or MAIN),
        )
        for c in definition.get("connections") or []
        if isinstance(c, dict)
    ]


def _position(node: Mapping[str, Any]) -> tuple[float, float]:
    position = node.get("position")
    if isinstance(position, Sequence) and len(position) == 2:
        try:
            return float(position[0]), float(position[1])
        except (TypeError, ValueError):
            pass
    return 0.0, 0.0


def depths(names: Sequence[str], links: Iterable[Link]) -> dict[str, int]:
    """Each node's column: the longest path to it from a node nothing leads into.

    Edges that close a cycle (a loop back to an earlier node) are ignored, so every
    node gets a column even in a graph with loops.
    """
    successors: dict[str, list[str]] = defaultdict(list)
    for link in links:
        if link.source in names and link.target in names and link.source != link.target:
            successors[link.source].append(link.target)
    # Depth-first from each unvisited node in listed order; back edges close cycles.
    order: list[str] = []
    state: dict[str, int] = {}  # 1 = on the stack, 2 = done
    back_edges: set[tuple[str, str]] = set()
    for root in names:
        if root in state:
            continue
        stack: list[tuple[str, int]] = [(root, 0)]
        state[root] = 1
        while stack:
            node, index = stack.pop()
            nexts = successors[node]
            if index < len(nexts):
                stack.append((node, index + 1))
                child = nexts[index]
                if state.get(child) == 1:
                    back_edges.add((node, child))
                elif child not in state:
                    state[child] = 1
                    stack.append((child, 0))
            else:
                state[node] = 2
                order.append(node)
    depth = dict.fromkeys(names, 0)
    for node in reversed(order):  # a topological order once back edges are dropped
        for child in successors[node]:
            if (node, child) not in back_edges:
                depth[child] = max(depth[child], depth[node] + 1)
    return depth


def _auto_layout(boxes: list[Box], links: list[Link]) -> None:
    depth = depths([b.name for b in boxes], links)
    filled: dict[int, float] = defaultdict(float)  # each column's height so far
    for box in boxes:
        column = depth[box.name]
        box.x = column * (NODE_WIDTH + COLUMN_GAP)
        box.y = filled[column]
        filled[column] += box.height + ROW_GAP
    # Centre each column on the tallest one.
    tallest = max(filled.values(), default=0.0)
    for box in boxes:
        box.y += (tallest - filled[depth[box.name]]) / 2


def layout(
    definition: Mapping[str, Any], node_types: Mapping[tuple[str, float], Mapping[str, Any]]
) -> tuple[list[Box], list[Link]]:
    """Boxes (positioned, their origin at 0,0) and the connections between them."""
    links = _links(definition)
    boxes: list[Box] = []
    for node in definition.get("nodes") or []:
        if not isinstance(node, dict):
            continue
        kind = node_types.get(_type_key(node), {})
        x, y = _position(node)
        boxes.append(
            Box(
                id=str(node.get("id", "")),
                name=str(node.get("name", "")),
                type=str(node.get("type", "")),
                label=str(kind.get("displayName") or node.get("type", "")),
                x=x,
                y=y,
                disabled=bool(node.get("disabled")),
                outputs=[str(p) for p in kind.get("outputs") or [MAIN]],
                inputs=[str(p) for p in kind.get("inputs") or [MAIN]],
            )
        )
    _keep_used_ports(boxes, links)
    if len({(b.x, b.y) for b in boxes}) < len(boxes):
        _auto_layout(boxes, links)
    left = min((b.x for b in boxes), default=0.0)
    top = min((b.y for b in boxes), default=0.0)
    for box in boxes:
        box.x -= left
        box.y -= top
    return boxes, links


def _used(declared: list[str], used: list[str]) -> list[str]:
    """The ports lines leave or enter: declared ones in their order, then the rest (a
    Switch's outputs come from its rules)."""
    ordered = [p for p in declared if p in used]
    ordered += [p for p in dict.fromkeys(used) if p not in ordered]
    return ordered or [MAIN]


def _keep_used_ports(boxes: list[Box], links: list[Link]) -> None:
    for box in boxes:
        box.outputs = _used(box.outputs, [k.source_output for k in links if k.source == box.name])
        box.inputs = _used(box.inputs, [k.target_input for k in links if k.target == box.name])


def _type_key(node: Mapping[str, Any]) -> tuple[str, float]:
    try:
        version = float(node.get("typeVersion") or 1)
    except (TypeError, ValueError):
        version = 1.0
    return str(node.get("type", "")), version


def _text(x: float, y: float, text: str, css: str, anchor: str = "start") -> str:
    return (
        f'<text x="{x:.0f}" y="{y:.0f}" class="{css}" text-anchor="{anchor}">{escape(text)}</text>'
    )


def _shorten(text: str, limit: int = 22) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _node_svg(box: Box) -> str:
    css = "wf-node wf-node-disabled" if box.disabled else "wf-node"
    return (
        f"<a href={quoteattr('#node-' + box.id)} class={quoteattr(css)}"
        f" data-node={quoteattr(box.name)} data-type={quoteattr(box.type)}>"
        f"<title>{escape(f'{box.name} ({box.label})')}</title>"
        f'<rect x="{box.x:.0f}" y="{box.y:.0f}" width="{NODE_WIDTH}" height="{box.height:.0f}"'
        ' rx="8"/>'
        + _text(box.x + 12, box.y + box.height / 2 - 4, _shorten(box.name), "wf-node-name")
        + _text(box.x + 12, box.y + box.height / 2 + 14, _shorten(box.label, 26), "wf-node-type")
        + "</a>"
    )


def _link_svg(link: Link, boxes: Mapping[str, Box]) -> str:
    source, target = boxes.get(link.source), boxes.get(link.target)
    if source is None or target is None:
        return ""  # a dangling connection: validation lists it
    x1 = source.x + NODE_WIDTH
    y1 = source.port_y(source.outputs, link.source_output)
    x2 = target.x
    y2 = target.port_y(target.inputs, link.target_input)
    bend = max(40.0, abs(x2 - x1) / 2)
    path = (
        f"M{x1:.0f},{y1:.0f} C{x1 + bend:.0f},{y1:.0f} {x2 - bend:.0f},{y2:.0f} {x2:.0f},{y2:.0f}"
    )
    description = f"{link.source} ({link.source_output}) → {link.target} ({link.target_input})"
    parts = [
        f'<g class="wf-link" data-source={quoteattr(link.source)}'
        f" data-source-output={quoteattr(link.source_output)}"
        f" data-target={quoteattr(link.target)} data-target-input={quoteattr(link.target_input)}>",
        f"<title>{escape(description)}</title>",
        f'<path d="{path}" marker-end="url(#wf-arrow)"/>',
    ]
    if link.source_output != MAIN:
        parts.append(_text(x1 + 6, y1 - 5, link.source_output, "wf-port"))
    if link.target_input != MAIN:
        parts.append(_text(x2 - 8, y2 - 5, link.target_input, "wf-port", anchor="end"))
    parts.append("</g>")
    return "".join(parts)


def render_svg(
    definition: Mapping[str, Any],
    node_types: Mapping[tuple[str, float], Mapping[str, Any]],
    title: str,
) -> Markup:
    """The workflow's graph as an ``<svg>`` element (empty workflows get a note)."""
    boxes, links = layout(definition, node_types)
    width = max((b.x for b in boxes), default=0) + NODE_WIDTH + 2 * MARGIN
    height = max((b.y + b.height for b in boxes), default=NODE_HEIGHT) + 2 * MARGIN
    by_name = {b.name: b for b in boxes}
    summary = f"{len(boxes)} nodes, {len(links)} connections"
    body = [
        f'<svg class="wf-graph" xmlns="http://www.w3.org/2000/svg" role="img"'
        f' viewBox="{-MARGIN} {-MARGIN} {width:.0f} {height:.0f}"'
        f' width="{width:.0f}" height="{height:.0f}" aria-labelledby="wf-graph-title">',
        f'<title id="wf-graph-title">{escape(f"{title}: {summary}")}</title>',
        '<defs><marker id="wf-arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7"'
        ' markerHeight="7" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z"/></marker>'
        "</defs>",
        *(_link_svg(link, by_name) for link in links),
        *(_node_svg(box) for box in boxes),
        "</svg>",
    ]
    return Markup("".join(body))
