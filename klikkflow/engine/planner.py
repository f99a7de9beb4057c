"""The pure core: `apply(graph, state, event)` folds an event into the state and
`plan(graph, state)` says what to do next. Neither does I/O or reads the clock."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from klikkflow.engine.graph import Graph
from klikkflow.engine.state import (
    FINAL,
    ErrorInfo,
    Event,
    ExecutionFinished,
    ExecutionParked,
    ExecutionResumed,
    ExecutionStarted,
    ExecutionStatus,
    NodeFailed,
    NodeInterrupted,
    NodeRun,
    NodeStarted,
    NodeStatus,
    NodeSucceeded,
    NodeWaiting,
    Parked,
    Ports,
    Retry,
    State,
    transition,
)

EMPTY_ITEM: list[dict] = [{"json": {}}]


@dataclass(frozen=True)
class RunNode:
    node: str
    run_index: int
    inputs: Ports
    not_before: datetime | None = None  # a retry waits for its backoff
    retry: bool = False


@dataclass(frozen=True)
class Park:
    until: datetime | None
    resumable: bool


@dataclass(frozen=True)
class Finish:
    status: ExecutionStatus
    error: ErrorInfo | None = None


Command = RunNode | Park | Finish


# ---- apply --------------------------------------------------------------------------


def apply(graph: Graph, state: State, event: Event) -> State:
    """Fold one event into `state` (in place, for speed; it is also returned)."""
    handler: Callable[[Graph, State, Any], None] = _APPLY[type(event)]
    handler(graph, state, event)
    state.events += 1
    return state


def _started(graph: Graph, state: State, e: ExecutionStarted) -> None:
    state.status = transition(state.status, "start")
    state.started_at = e.at
    state.start_node = e.start_node
    state.pending[e.start_node] = {"main": list(e.items) or list(EMPTY_ITEM)}


def _node_started(graph: Graph, state: State, e: NodeStarted) -> None:
    state.running.add(e.node)
    if state.retries.pop(e.node, None) is not None:
        run = state.runs[e.node][-1]
        run.status, run.tries, run.error = NodeStatus.RUNNING, run.tries + 1, None
        return
    state.pending.pop(e.node, None)
    state.runs.setdefault(e.node, []).append(
        NodeRun.model_construct(
            run_index=e.run_index, status=NodeStatus.RUNNING, started_at=e.at, inputs=e.inputs
        )
    )


def _deliver(graph: Graph, state: State, node: str, outputs: Ports) -> None:
    for port, items in outputs.items():
        if not items:
            continue
        for target, target_input in graph.routes.get((node, port), ()):
            state.pending.setdefault(target, {}).setdefault(target_input, []).extend(items)


def _node_succeeded(graph: Graph, state: State, e: NodeSucceeded) -> None:
    state.running.discard(e.node)
    run = state.runs[e.node][-1]
    run.status, run.outputs, run.finished_at = NodeStatus.SUCCEEDED, e.outputs, e.at
    if e.node_state is not None:
        state.node_state[e.node] = e.node_state
    if state.parked is not None and state.parked.node == e.node:
        state.parked = None
    _deliver(graph, state, e.node, e.outputs)


def _node_failed(graph: Graph, state: State, e: NodeFailed) -> None:
    state.running.discard(e.node)
    run = state.runs[e.node][-1]
    run.error, run.finished_at = e.error, e.at
    if e.retry_at is not None:
        run.status = NodeStatus.RETRYING
        state.retries[e.node] = Retry.model_construct(
            due=e.retry_at, inputs=run.inputs, tries=run.tries
        )
    else:
        run.status = NodeStatus.FAILED
        state.error = state.error or e.error


def _node_interrupted(graph: Graph, state: State, e: NodeInterrupted) -> None:
    state.running.discard(e.node)
    run = state.runs[e.node][-1]
    run.status = NodeStatus.RETRYING
    state.retries[e.node] = Retry.model_construct(due=e.at, inputs=run.inputs, tries=run.tries)


def _node_waiting(graph: Graph, state: State, e: NodeWaiting) -> None:
    state.running.discard(e.node)
    run = state.runs[e.node][-1]
    run.status = NodeStatus.WAITING
    state.parked = Parked.model_construct(
        node=e.node, run_index=e.run_index, until=e.until, resumable=e.resumable, outputs=e.outputs
    )


def _parked(graph: Graph, state: State, e: ExecutionParked) -> None:
    state.status = transition(state.status, "park")


def _resumed(graph: Graph, state: State, e: ExecutionResumed) -> None:
    state.status = transition(state.status, "resume")
    state.resume_payload = e.payload


def _finished(graph: Graph, state: State, e: ExecutionFinished) -> None:
    name = {
        ExecutionStatus.SUCCEEDED: "succeed",
        ExecutionStatus.FAILED: "fail",
        ExecutionStatus.CANCELLED: "cancel",
    }[e.status]
    state.status = transition(state.status, name)
    state.finished_at = e.at
    state.error = e.error or state.error
    for node in state.running:
        state.runs[node][-1].status = NodeStatus.CANCELLED
    state.running.clear()


_APPLY: dict[type, Callable[..., None]] = {
    ExecutionStarted: _started,
    NodeStarted: _node_started,
    NodeSucceeded: _node_succeeded,
    NodeFailed: _node_failed,
    NodeInterrupted: _node_interrupted,
    NodeWaiting: _node_waiting,
    ExecutionParked: _parked,
    ExecutionResumed: _resumed,
    ExecutionFinished: _finished,
}


# ---- plan ---------------------------------------------------------------------------


def _settled(graph: Graph, state: State, node: str, active: set[str]) -> bool:
    """No more data can reach any input of `node`: nothing upstream of it is active."""
    for port in graph.inputs_of.get(node, ()):
        if graph.upstream.get((node, port), frozenset()) & (active - {node}):
            return False
    return True


def _runs_of(state: State, node: str) -> int:
    return len(state.runs.get(node, ()))


def plan(graph: Graph, state: State) -> list[Command]:
    if state.status in FINAL or state.status in (ExecutionStatus.QUEUED, ExecutionStatus.WAITING):
        return []
    if state.error is not None:  # a node failed for good: the execution stops
        return [Finish(ExecutionStatus.FAILED, state.error)]
    commands: list[Command] = []
    active = state.active_nodes()
    for node, ports in list(state.pending.items()):
        if node in state.running or node in state.retries:
            continue
        impl = graph.nodes[node].impl
        if (impl.waits_for_all_inputs or impl.may_loop) and not _settled(
            graph, state, node, active
        ):
            continue
        commands.append(RunNode(node, _runs_of(state, node), ports))
    for node, node_state in state.node_state.items():
        # A loop whose body produced nothing this round still has to go on (or finish).
        if (
            node_state.get("active")
            and node not in active
            and graph.nodes[node].impl.may_loop
            and _settled(graph, state, node, active)
        ):
            commands.append(RunNode(node, _runs_of(state, node), {}))
    for node, retry in state.retries.items():
        if node not in state.running:
            run_index = state.runs[node][-1].run_index
            commands.append(RunNode(node, run_index, retry.inputs, retry.due, retry=True))
    if commands or state.running:
        return commands
    if state.parked is not None:
        return [Park(state.parked.until, state.parked.resumable)]
    return [Finish(ExecutionStatus.SUCCEEDED)]
