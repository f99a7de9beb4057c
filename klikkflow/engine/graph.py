"""A workflow compiled for running: node types resolved, parameters validated, edges
indexed, upstream sets precomputed. Every problem is collected (not just the first) and
named by node and field path, so a workflow is refused whole before it runs."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

from pydantic import ValidationError

from klikkflow.engine.workflow import NodeSpec, Workflow
from klikkflow.nodes.base import NodeType, Parameters
from klikkflow.nodes.registry import NodeRegistry, RegistryError


@dataclass(frozen=True)
class Problem:
    path: str  # e.g. nodes["Enrich"].parameters.assignments
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


class InvalidWorkflow(Exception):
    def __init__(self, problems: list[Problem]) -> None:
        super().__init__("; ".join(str(p) for p in problems))
        self.problems = problems


@dataclass
class CompiledNode:
    spec: NodeSpec
    impl: NodeType
    params: Parameters
    outputs: tuple[str, ...]


@dataclass
class Graph:
    workflow: Workflow
    nodes: dict[str, CompiledNode]
    # (source, output port) -> [(target, input port)]
    routes: dict[tuple[str, str], list[tuple[str, str]]] = field(default_factory=dict)
    # (target, input port) -> every node upstream of that port (transitively)
    upstream: dict[tuple[str, str], frozenset[str]] = field(default_factory=dict)
    inputs_of: dict[str, set[str]] = field(default_factory=dict)  # node -> connected inputs

    def trigger_nodes(self) -> list[str]:
        return [name for name, n in self.nodes.items() if n.impl.is_trigger]


def _node_path(name: str) -> str:
    return f"nodes[{name!r}]"


def _compile_node(
    spec: NodeSpec, registry: NodeRegistry, problems: list[Problem]
) -> CompiledNode | None:
    try:
        cls = registry.get(spec.type, spec.type_version)
    except RegistryError as exc:
        problems.append(Problem(f"{_node_path(spec.name)}.type", str(exc)))
        return None
    try:
        params = cls.Params.model_validate(spec.parameters)
    except ValidationError as exc:
        for error in exc.errors():
            where = ".".join(str(p) for p in error["loc"])
            problems.append(
                Problem(f"{_node_path(spec.name)}.parameters.{where}".rstrip("."), error["msg"])
            )
        return None
    impl = cls()
    return CompiledNode(spec, impl, params, impl.output_ports(params))


def _check_unique(workflow: Workflow, problems: list[Problem]) -> None:
    seen_names: set[str] = set()
    seen_ids: set[str] = set()
    for spec in workflow.nodes:
        if spec.name in seen_names:
            problems.append(Problem(_node_path(spec.name), "another node has the same name"))
        if spec.id in seen_ids:
            problems.append(Problem(_node_path(spec.name) + ".id", f"id {spec.id!r} is used twice"))
        seen_names.add(spec.name)
        seen_ids.add(spec.id)


def _index_edges(graph: Graph, problems: list[Problem]) -> None:
    for i, edge in enumerate(graph.workflow.connections):
        path = f"connections[{i}]"
        source, target = graph.nodes.get(edge.source), graph.nodes.get(edge.target)
        known = {n.name for n in graph.workflow.nodes}
        if edge.source not in known:
            problems.append(Problem(f"{path}.source", f"no node named {edge.source!r}"))
        if edge.target not in known:
            problems.append(Problem(f"{path}.target", f"no node named {edge.target!r}"))
        if source is None or target is None:
            continue  # its node already has a problem listed
        if edge.source_output not in source.outputs and edge.source_output != "error":
            problems.append(
                Problem(
                    f"{path}.sourceOutput",
                    f"{edge.source!r} has no output {edge.source_output!r} "
                    f"(outputs: {', '.join(source.outputs)})",
                )
            )
        if edge.target_input not in target.impl.inputs:
            problems.append(
                Problem(
                    f"{path}.targetInput",
                    f"{edge.target!r} has no input {edge.target_input!r} "
                    f"(inputs: {', '.join(target.impl.inputs) or 'none'})",
                )
            )
        graph.routes.setdefault((edge.source, edge.source_output), []).append(
            (edge.target, edge.target_input)
        )
        graph.inputs_of.setdefault(edge.target, set()).add(edge.target_input)


def _check_cycles(graph: Graph, problems: list[Problem]) -> None:
    """A cycle is allowed only if it passes through a loop node (Loop Over Items)."""
    children: dict[str, set[str]] = defaultdict(set)
    for (source, _), targets in graph.routes.items():
        if graph.nodes[source].impl.may_loop:
            continue  # cutting loop nodes must leave an acyclic graph
        for target, _ in targets:
            if not graph.nodes[target].impl.may_loop:
                children[source].add(target)
    state: dict[str, int] = {}  # 1 = on the stack, 2 = done
    for root in graph.nodes:
        if state.get(root):
            continue
        stack = [(root, iter(sorted(children[root])))]
        state[root] = 1
        while stack:
            node, it = stack[-1]
            nxt = next(it, None)
            if nxt is None:
                state[node] = 2
                stack.pop()
            elif state.get(nxt) == 1:
                cycle = [n for n, _ in stack][[n for n, _ in stack].index(nxt) :] + [nxt]
                problems.append(
                    Problem(_node_path(nxt), "cycle without a loop node: " + " -> ".join(cycle))
                )
                return
            elif not state.get(nxt):
                state[nxt] = 1
                stack.append((nxt, iter(sorted(children[nxt]))))


def _upstream(graph: Graph) -> None:
    parents: dict[str, set[str]] = defaultdict(set)
    port_parents: dict[tuple[str, str], set[str]] = defaultdict(set)
    for (source, _), targets in graph.routes.items():
        for target, port in targets:
            parents[target].add(source)
            port_parents[(target, port)].add(source)
    closure: dict[str, frozenset[str]] = {}

    def ancestors(node: str) -> frozenset[str]:
        if node in closure:
            return closure[node]
        seen: set[str] = set()
        todo = list(parents[node])
        while todo:
            current = todo.pop()
            if current not in seen:
                seen.add(current)
                todo.extend(parents[current])
        closure[node] = frozenset(seen)
        return closure[node]

    for (target, port), sources in port_parents.items():
        if graph.nodes[target].impl.waits_for_all_inputs or graph.nodes[target].impl.may_loop:
            found: set[str] = set(sources)
            for source in sources:
                found |= ancestors(source)
            graph.upstream[(target, port)] = frozenset(found - {target})


def compile_workflow(workflow: Workflow, registry: NodeRegistry) -> Graph:
    problems: list[Problem] = []
    _check_unique(workflow, problems)
    compiled = {}
    for spec in workflow.nodes:
        node = _compile_node(spec, registry, problems)
        if node is not None:
            compiled[spec.name] = node
    graph = Graph(workflow, compiled)
    _index_edges(graph, problems)
    for name in workflow.pin_data:
        if name not in {n.name for n in workflow.nodes}:
            problems.append(Problem(f"pinData[{name!r}]", "no node with that name"))
    if not problems:
        _check_cycles(graph, problems)
    if problems:
        raise InvalidWorkflow(problems)
    _upstream(graph)
    return graph
