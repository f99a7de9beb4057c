"""Execution state and the events that change it.

`apply(state, event)` is the only way state changes, so replaying an execution's event
log from the start gives the same state: that is how a worker resumes a checkpoint.
Status changes go through named transitions (FROM_STATES -> TO_STATE), Prefect-style.
"""

from __future__ import annotations

import copy
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field

Item = dict[str, Any]
Ports = dict[str, list[Item]]


class ExecutionStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    WAITING = "waiting"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


class NodeStatus(StrEnum):
    RUNNING = "running"
    WAITING = "waiting"
    RETRYING = "retrying"  # failed, another try is scheduled
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


FINAL = frozenset({ExecutionStatus.SUCCEEDED, ExecutionStatus.FAILED, ExecutionStatus.CANCELLED})
ACTIVE = frozenset({ExecutionStatus.QUEUED, ExecutionStatus.RUNNING, ExecutionStatus.WAITING})

# Named transitions: name -> (the states it may leave, the state it enters).
TRANSITIONS: dict[str, tuple[frozenset[ExecutionStatus], ExecutionStatus]] = {
    "start": (frozenset({ExecutionStatus.QUEUED}), ExecutionStatus.RUNNING),
    "park": (frozenset({ExecutionStatus.RUNNING}), ExecutionStatus.WAITING),
    "resume": (frozenset({ExecutionStatus.WAITING}), ExecutionStatus.RUNNING),
    "succeed": (frozenset({ExecutionStatus.RUNNING}), ExecutionStatus.SUCCEEDED),
    "fail": (ACTIVE, ExecutionStatus.FAILED),
    "cancel": (ACTIVE, ExecutionStatus.CANCELLED),
}


class IllegalTransition(Exception):
    def __init__(self, name: str, current: ExecutionStatus) -> None:
        super().__init__(f"cannot {name} an execution that is {current.value}")
        self.name, self.current = name, current


def transition(current: ExecutionStatus, name: str) -> ExecutionStatus:
    from_states, to_state = TRANSITIONS[name]
    if current not in from_states:
        raise IllegalTransition(name, current)
    return to_state


class ErrorInfo(BaseModel):
    message: str
    node: str | None = None
    type: str = "NodeError"
    description: str = ""
    item_index: int | None = None


# ---- events -------------------------------------------------------------------------


class _Event(BaseModel):
    at: datetime


class ExecutionStarted(_Event):
    type: Literal["execution.started"] = "execution.started"
    start_node: str
    items: list[Item]


class NodeStarted(_Event):
    type: Literal["node.started"] = "node.started"
    node: str
    run_index: int
    inputs: Ports  # what the run consumed


class NodeSucceeded(_Event):
    type: Literal["node.succeeded"] = "node.succeeded"
    node: str
    run_index: int
    outputs: Ports
    node_state: dict[str, Any] | None = None  # the node's own state after the run (loops)


class NodeFailed(_Event):
    type: Literal["node.failed"] = "node.failed"
    node: str
    run_index: int
    error: ErrorInfo
    retry_at: datetime | None = None  # set: another try with the same inputs is due then


class NodeInterrupted(_Event):
    """The process running the node died before it finished (a worker crash found on
    recovery): the run is tried again with the same inputs. Nodes run at least once."""

    type: Literal["node.interrupted"] = "node.interrupted"
    node: str
    run_index: int


class NodeWaiting(_Event):
    type: Literal["node.waiting"] = "node.waiting"
    node: str
    run_index: int
    until: datetime | None
    resumable: bool
    outputs: Ports  # emitted when the wait ends


class ExecutionParked(_Event):
    type: Literal["execution.parked"] = "execution.parked"


class ExecutionResumed(_Event):
    type: Literal["execution.resumed"] = "execution.resumed"
    payload: Any = None


class ExecutionFinished(_Event):
    type: Literal["execution.finished"] = "execution.finished"
    status: ExecutionStatus
    error: ErrorInfo | None = None


Event = Annotated[
    ExecutionStarted
    | NodeStarted
    | NodeSucceeded
    | NodeFailed
    | NodeInterrupted
    | NodeWaiting
    | ExecutionParked
    | ExecutionResumed
    | ExecutionFinished,
    Field(discriminator="type"),
]


# ---- state --------------------------------------------------------------------------


class NodeRun(BaseModel):
    run_index: int
    status: NodeStatus
    started_at: datetime
    finished_at: datetime | None = None
    inputs: Ports
    outputs: Ports | None = None
    error: ErrorInfo | None = None
    tries: int = 1


class Retry(BaseModel):
    due: datetime
    inputs: Ports
    tries: int  # tries made so far


class Parked(BaseModel):
    node: str
    run_index: int
    until: datetime | None
    resumable: bool
    outputs: Ports


class State(BaseModel):
    status: ExecutionStatus = ExecutionStatus.QUEUED
    started_at: datetime | None = None
    finished_at: datetime | None = None
    start_node: str | None = None
    runs: dict[str, list[NodeRun]] = Field(default_factory=dict)
    pending: dict[str, Ports] = Field(default_factory=dict)  # node -> port -> items to consume
    running: set[str] = Field(default_factory=set)
    retries: dict[str, Retry] = Field(default_factory=dict)
    node_state: dict[str, dict[str, Any]] = Field(default_factory=dict)
    parked: Parked | None = None
    resume_payload: Any = None
    error: ErrorInfo | None = None  # the failure that stops the execution
    events: int = 0  # how many events were applied

    def copy_deep(self) -> State:
        return copy.deepcopy(self)

    def last_run(self, node: str) -> NodeRun | None:
        runs = self.runs.get(node)
        return runs[-1] if runs else None

    def active_nodes(self) -> set[str]:
        """Nodes that may still produce data: running, retrying, parked or fed."""
        active = set(self.running) | set(self.retries) | set(self.pending)
        if self.parked is not None:
            active.add(self.parked.node)
        return active


def last_output(state: State) -> list[Item]:
    """What a finished execution returns to its caller (a parent workflow, a webhook in
    lastNode mode): the first output port of the node that finished last, as in n8n."""
    finished = [
        run
        for runs in state.runs.values()
        for run in runs
        if run.status == NodeStatus.SUCCEEDED and run.finished_at is not None and run.outputs
    ]
    if not finished:
        return []
    last = max(finished, key=lambda run: run.finished_at or datetime.min)
    assert last.outputs is not None
    return next((items for items in last.outputs.values() if items), [])
