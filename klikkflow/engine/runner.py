"""Drives one execution: asks the planner what is ready, runs those nodes concurrently,
turns each outcome into events, applies them, and hands every event to `on_event` (the
worker persists and publishes them; the CLI prints them). No arq, redis, database or
HTTP here: callers pass in what a node may need (credentials, sub-workflows)."""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from klikkflow.engine.context import (  # noqa: PLC2701
    CredentialLoader,
    RunContext,
    SubWorkflowRunner,
    _no_credentials,
    _no_sub_workflows,
)
from klikkflow.engine.expressions import ExpressionEngine, ExpressionError
from klikkflow.engine.graph import Graph
from klikkflow.engine.planner import Finish, Park, RunNode, apply, plan
from klikkflow.engine.state import (
    ErrorInfo,
    Event,
    ExecutionFinished,
    ExecutionParked,
    ExecutionResumed,
    ExecutionStarted,
    ExecutionStatus,
    NodeFailed,
    NodeInterrupted,
    NodeStarted,
    NodeSucceeded,
    NodeWaiting,
    Ports,
    State,
)
from klikkflow.engine.workflow import OnError
from klikkflow.nodes.base import MAIN, NodeError, Wait

EventSink = Callable[[Event], Awaitable[None]]


class EnginePool:
    """Idle expression engines by compiled workflow version (a Graph), at most `limit` in
    all, the least recently used version's dropped first. A run takes one that an earlier
    run of its version left, with the templates it compiled, or makes a new one; an
    engine goes back only if its expressions changed nothing shared
    (ExpressionEngine.reusable). For one event loop: take and give never await."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._idle: OrderedDict[int, tuple[Graph, list[ExpressionEngine]]] = OrderedDict()
        self._count = 0

    def take(self, graph: Graph) -> ExpressionEngine | None:
        entry = self._idle.get(id(graph))  # (an entry holds its graph: ids stay unique)
        if entry is None or not entry[1]:
            return None
        self._idle.move_to_end(id(graph))
        self._count -= 1
        return entry[1].pop()

    def give(self, graph: Graph, engine: ExpressionEngine) -> None:
        if not engine.reusable():
            engine.close()
            return
        entry = self._idle.setdefault(id(graph), (graph, []))
        self._idle.move_to_end(id(graph))
        entry[1].append(engine)
        self._count += 1
        while self._count > self.limit:
            key, (_, engines) = next(iter(self._idle.items()))
            engines.pop(0).close()
            self._count -= 1
            if not engines:
                del self._idle[key]


class NoStartNode(Exception):
    pass


def _utcnow() -> datetime:
    return datetime.now(UTC)


async def _discard(event: Event) -> None:
    return None


def error_info(node: str, exc: BaseException) -> ErrorInfo:
    if isinstance(exc, NodeError):
        return ErrorInfo(
            message=str(exc),
            node=node,
            type="NodeError",
            description=exc.description,
            item_index=exc.item_index,
        )
    if isinstance(exc, ExpressionError):
        return ErrorInfo(
            message=str(exc), node=node, type="ExpressionError", item_index=exc.item_index
        )
    return ErrorInfo(message=f"{type(exc).__name__}: {exc}", node=node, type=type(exc).__name__)


@dataclass
class Runner:
    graph: Graph
    execution_id: str = "local"
    variables: dict[str, Any] = field(default_factory=dict)
    mode: str = "manual"
    on_event: EventSink = _discard
    credentials_loader: CredentialLoader = _no_credentials
    sub_workflows: SubWorkflowRunner = _no_sub_workflows
    clock: Callable[[], datetime] = _utcnow
    max_concurrency: int = 16
    max_output_bytes: int | None = None  # per node run (JSON); None: no limit
    default_timeout: int | None = None  # seconds, when the workflow sets none
    node_extras: dict[str, Any] = field(default_factory=dict)  # see RunContext.extras
    resume_url: str | None = None  # `$execution.resumeUrl`: a call to it wakes a Wait
    engines: EnginePool | None = None  # where the expression engine comes from, goes back
    state: State = field(default_factory=State)

    def __post_init__(self) -> None:
        workflow = self.graph.workflow
        reused = self.engines.take(self.graph) if self.engines is not None else None
        if reused is not None:
            reused.restart(
                execution_id=self.execution_id,
                variables=self.variables,
                mode=self.mode,
                resume_url=self.resume_url,
            )
        self.expressions = reused or ExpressionEngine(
            execution_id=self.execution_id,
            workflow={"id": workflow.id, "name": workflow.name, "active": False},
            variables=self.variables,
            timezone=workflow.settings.timezone,
            mode=self.mode,
            resume_url=self.resume_url,
        )
        self._closed = False
        self._tasks: dict[str, asyncio.Task[list[Event]]] = {}
        self._stopped: list[asyncio.Task[list[Event]]] = []  # cancelled, maybe not over yet

    # ---- entry points ----------------------------------------------------------------

    def start_node(self, requested: str | None) -> str:
        if requested is not None:
            if requested not in self.graph.nodes:
                raise NoStartNode(f"no node named {requested!r}")
            return requested
        triggers = self.graph.trigger_nodes()
        if len(triggers) == 1:
            return triggers[0]
        manual = [t for t in triggers if self.graph.nodes[t].spec.type == "manualTrigger"]
        if len(manual) == 1:
            return manual[0]
        raise NoStartNode(
            "name the node to start from: the workflow has "
            + (f"{len(triggers)} trigger nodes" if triggers else "no trigger node")
        )

    async def run(self, items: list[dict] | None = None, start: str | None = None) -> State:
        node = self.start_node(start)
        started = ExecutionStarted.model_construct(
            at=self.clock(), start_node=node, items=items or []
        )
        await self._emit(started)
        return await self.drive()

    async def resume(self, payload: Any = None) -> State:
        """Wake a parked execution (the state was rebuilt from its events)."""
        parked = self.state.parked
        assert parked is not None, "the execution is not parked"
        self._restore_outputs()
        await self._emit(ExecutionResumed(at=self.clock(), payload=payload))
        outputs = parked.outputs
        if payload is not None:
            outputs = {
                MAIN: [{"json": payload if isinstance(payload, dict) else {"data": payload}}]
            }
        await self._emit(
            NodeSucceeded.model_construct(
                at=self.clock(), node=parked.node, run_index=parked.run_index, outputs=outputs
            )
        )
        return await self.drive()

    async def cancel(self, reason: ErrorInfo | None = None) -> None:
        for task in self._tasks.values():
            task.cancel()
        if self.state.status not in (
            ExecutionStatus.SUCCEEDED,
            ExecutionStatus.FAILED,
            ExecutionStatus.CANCELLED,
        ):
            await self._emit(
                ExecutionFinished(at=self.clock(), status=ExecutionStatus.CANCELLED, error=reason)
            )

    async def recover(self) -> State:
        """Go on with an execution whose process died (the state was rebuilt from its
        events): nodes that had started and not finished run again with the same inputs;
        nodes that finished keep their checkpointed outputs and do not run again."""
        self._restore_outputs()
        for node in sorted(self.state.running):
            run = self.state.runs[node][-1]
            await self._emit(NodeInterrupted(at=self.clock(), node=node, run_index=run.run_index))
        return await self.drive()

    def replay(self, events: list[Event]) -> State:
        """Rebuild the state from an event log (a checkpoint) without running anything."""
        for event in events:
            apply(self.graph, self.state, event)
        self._restore_outputs()
        return self.state

    # ---- the loop --------------------------------------------------------------------

    async def drive(self) -> State:
        timeout = self.graph.workflow.settings.timeout_seconds or self.default_timeout
        deadline = (time.monotonic() + timeout) if timeout else None
        scheduled: set[str] = set()
        try:
            while True:
                commands = plan(self.graph, self.state)
                if not commands and not self._tasks:
                    return self.state  # final (e.g. cancelled meanwhile)
                for command in commands:
                    if isinstance(command, Finish):
                        await self._finish(command)
                        return self.state
                    if isinstance(command, Park):
                        await self._emit(ExecutionParked(at=self.clock()))
                        return self.state
                    if command.node not in scheduled and len(self._tasks) < self.max_concurrency:
                        scheduled.add(command.node)
                        await self._launch(command)
                if not self._tasks:
                    continue  # every command was a state change: plan again
                remaining = None if deadline is None else deadline - time.monotonic()
                done, _ = await asyncio.wait(
                    self._tasks.values(), timeout=remaining, return_when=asyncio.FIRST_COMPLETED
                )
                if not done:
                    await self._time_out(timeout or 0)
                    return self.state
                for task in done:
                    node = next(n for n, t in self._tasks.items() if t is task)
                    del self._tasks[node]
                    scheduled.discard(node)
                    if task.cancelled():
                        continue
                    for event in task.result():
                        await self._emit(event)
        finally:
            for task in self._tasks.values():
                task.cancel()
            self._stopped.extend(self._tasks.values())
            self._tasks.clear()

    async def _launch(self, command: RunNode) -> None:
        if command.not_before is not None:
            delay = (command.not_before - self.clock()).total_seconds()
        else:
            delay = 0.0
        started = NodeStarted.model_construct(
            at=self.clock(), node=command.node, run_index=command.run_index, inputs=command.inputs
        )
        if delay <= 0:
            await self._emit(started)
        self._tasks[command.node] = asyncio.create_task(
            self._execute(command, None if delay <= 0 else (delay, started))
        )

    async def _finish(self, command: Finish) -> None:
        await self._emit(
            ExecutionFinished(at=self.clock(), status=command.status, error=command.error)
        )

    async def _time_out(self, seconds: int) -> None:
        for task in self._tasks.values():
            task.cancel()
        error = ErrorInfo(
            message=f"the execution exceeded its timeout of {seconds} s", type="Timeout"
        )
        await self._emit(
            ExecutionFinished(at=self.clock(), status=ExecutionStatus.FAILED, error=error)
        )

    async def _emit(self, event: Event) -> None:
        apply(self.graph, self.state, event)
        await self.on_event(event)

    # ---- one node --------------------------------------------------------------------

    async def _execute(
        self, command: RunNode, deferred: tuple[float, NodeStarted] | None
    ) -> list[Event]:
        events: list[Event] = []
        if deferred is not None:  # a retry: sleep the backoff, then start
            await asyncio.sleep(deferred[0])
            started = deferred[1].model_copy(update={"at": self.clock()})
            await self._emit(started)
        spec = self.graph.nodes[command.node].spec
        # The node works on a copy of its state; the event carries the new state, so a
        # replay of the events rebuilds exactly what the run saw.
        before = self.state.node_state.get(spec.name, {})
        node_state = dict(before)  # nodes assign new values to keys, never mutate them
        try:
            result = await self._call(command, node_state)
            if not isinstance(result, Wait):
                self._check_size(spec.name, result)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            return events + self._failure(command, exc)
        if isinstance(result, Wait):
            return events + [
                NodeWaiting.model_construct(
                    at=self.clock(),
                    node=spec.name,
                    run_index=command.run_index,
                    until=result.until,
                    resumable=result.resumable,
                    outputs=result.outputs,
                )
            ]
        self._remember(spec.name, result)
        changed = node_state.keys() != before.keys() or any(
            node_state[k] is not before[k] for k in node_state
        )
        return events + [
            NodeSucceeded.model_construct(
                at=self.clock(),
                node=spec.name,
                run_index=command.run_index,
                outputs=result,
                node_state=node_state if changed else None,
            )
        ]

    def _check_size(self, node: str, outputs: Ports) -> None:
        """One node's output is capped, so one run cannot exhaust the worker or the log."""
        if self.max_output_bytes is None:
            return
        size = len(orjson.dumps(outputs, default=str, option=orjson.OPT_NON_STR_KEYS))
        if size > self.max_output_bytes:
            raise NodeError(
                f"the output of {node!r} is {size:,} bytes, over the limit of "
                f"{self.max_output_bytes:,} bytes per node run",
                description="return fewer or smaller items, or split the work in batches",
            )

    async def _call(self, command: RunNode, node_state: dict[str, Any]) -> Ports | Wait:
        node = self.graph.nodes[command.node]
        spec, inputs = node.spec, command.inputs
        pinned = self.graph.workflow.pin_data.get(spec.name)
        if pinned is not None:
            return {node.outputs[0]: [{"json": j} for j in pinned]}
        if spec.disabled:
            return {node.outputs[0] if node.outputs else MAIN: inputs.get(MAIN, [])}
        ctx = RunContext(
            node=spec,
            expressions=self.expressions,
            execution_id=self.execution_id,
            workflow_id=self.graph.workflow.id,
            workflow_name=self.graph.workflow.name,
            run_index=command.run_index,
            timezone=self.graph.workflow.settings.timezone,
            node_state=node_state,
            resume_payload=self.state.resume_payload,
            clock=self.clock,
            credentials_loader=self.credentials_loader,
            sub_workflows=self.sub_workflows,
            extras=self.node_extras,
        )
        return await node.impl.run(ctx, node.params, inputs)

    def _failure(self, command: RunNode, exc: Exception) -> list[Event]:
        node = self.graph.nodes[command.node]
        spec = node.spec
        info = error_info(spec.name, exc)
        run = self.state.runs[spec.name][-1]
        if spec.retry is not None and run.tries < spec.retry.max_tries:
            due = self.clock() + timedelta(milliseconds=spec.retry.delay_ms(run.tries))
            return [
                NodeFailed(
                    at=self.clock(),
                    node=spec.name,
                    run_index=command.run_index,
                    error=info,
                    retry_at=due,
                )
            ]
        if spec.on_error == OnError.STOP:
            return [
                NodeFailed(at=self.clock(), node=spec.name, run_index=command.run_index, error=info)
            ]
        failed_items = [
            {"json": {**item.get("json", {}), "error": info.message}, "pairedItem": {"item": i}}
            for i, item in enumerate(command.inputs.get(MAIN, []) or [{"json": {}}])
        ]
        port = "error" if spec.on_error == OnError.ERROR_OUTPUT else node.outputs[0]
        outputs = {port: failed_items}
        self._remember(spec.name, outputs)
        return [
            NodeSucceeded.model_construct(
                at=self.clock(), node=spec.name, run_index=command.run_index, outputs=outputs
            )
        ]

    def _remember(self, node: str, outputs: Ports) -> None:
        outputs_of_node = self.graph.nodes[node].outputs
        first = outputs.get(outputs_of_node[0], []) if outputs_of_node else []
        # `$node["X"]` / `$("X")` read the main (first) output of X's latest run.
        self.expressions.set_node_output(
            node,
            first or next(iter(outputs.values()), []),
            run_index=len(self.state.runs.get(node, [])) - 1,
        )

    def _restore_outputs(self) -> None:
        for node, runs in self.state.runs.items():
            for run in reversed(runs):
                if run.outputs is not None:
                    self._remember(node, run.outputs)
                    break

    def close(self) -> None:
        if self._closed:  # (twice would give the engine back twice)
            return
        self._closed = True
        # A node's task that has not ended yet (cancelled) might still use the engine.
        running = any(not t.done() for t in [*self._tasks.values(), *self._stopped])
        if self.engines is not None and not running:
            self.engines.give(self.graph, self.expressions)
        else:
            self.expressions.close()
