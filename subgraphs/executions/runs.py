"""Running an execution inside a worker job: load the pinned workflow version, rebuild
the state from the event log, drive the engine, and append every engine event to the
log (MongoDB) and its live stream (Redis) as it happens.

Delivery: the log is the checkpoint. A worker holds a lease on each execution it runs
(a Redis key it renews every few seconds, listed with its expiry in one sorted set of
leased executions). A worker that dies stops renewing; within LEASE_SECONDS the
recovery sweep (every worker runs it, one at a time) sees an execution whose lease
lapsed (in that set, or running in MongoDB without a lease, when Redis lost its keys)
and enqueues it again. The next run replays the log, gives
every node that had started but not finished a `node.interrupted` event and runs it
again with the same inputs: nodes run at least once, a node that finished never runs
again, and two workers never drive one execution at the same time."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import uuid
import weakref
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from arq.connections import ArqRedis
from async_lru import alru_cache
from beanie import PydanticObjectId
from bson import ObjectId
from pydantic import BaseModel, Field, TypeAdapter
from redis.asyncio import Redis
from redis.commands.core import AsyncScript

from klikkflow.engine.context import SubWorkflowRunner
from klikkflow.engine.graph import Graph, InvalidWorkflow, compile_workflow
from klikkflow.engine.runner import EnginePool, NoStartNode, Runner
from klikkflow.engine.state import (
    ErrorInfo,
    Event,
    ExecutionFinished,
    ExecutionStatus,
    NodeFailed,
    NodeStarted,
    NodeSucceeded,
    State,
)
from klikkflow.kit import metrics
from klikkflow.kit.auth import Viewer
from klikkflow.nodes.base import Item, NodeError
from klikkflow.nodes.http import SsrfPolicy
from klikkflow.nodes.registry import default_registry
from subgraphs.executions import writes
from subgraphs.executions.models import (
    TERMINAL,
    ExecutionDocument,
    now,
)
from subgraphs.executions.models import ExecutionStatus as Status
from subgraphs.executions.repository import log_page, repository
from subgraphs.executions.service import RUN_EXECUTION, resume_path
from subgraphs.executions.service import execution as execution_service
from subgraphs.workflows.credentials import credential as credential_service
from subgraphs.workflows.service import VersionNotFound, WorkflowNotFound
from subgraphs.workflows.service import workflow as workflow_service
from subgraphs.workflows.variables import variables as variable_service

log = logging.getLogger("klikkflow.executions")
MAX_SUB_WORKFLOW_DEPTH = 10
GRAPH_CACHE = 256
# Expression engines kept between runs of a workflow version, in all (~0.2 MB each and
# what they compiled): a run that finds one skips the new QuickJS context and compiling.
IDLE_ENGINES = 64
_ENGINES = EnginePool(IDLE_ENGINES)
VARIABLES_TTL = 2.0
LEASE_SECONDS = 10
RENEW_SECONDS = 2
SWEEP_LOCK = "klikkflow:executions:sweep"
SWEEP_BATCH = 500
# Lua: `now`, Redis' clock in ms (every worker's lease and slot scores use that one clock).
_NOW_MS = """
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
"""
# Set once by the first sweep of a Redis: when it is gone, Redis lost what it held.
REDIS_EPOCH = "klikkflow:executions:epoch"
LEASED = "klikkflow:executions:leased"  # execution id -> when its lease lapses (ms)
# KEYS: lease, cancel flag, LEASED; ARGV: owner, life (ms), execution id. The lease
# (taken: 1, else 0) and the execution's cancel flag, in one round trip.
_ACQUIRE = (
    """
if not redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  return {0, redis.call('GET', KEYS[2])}
end
"""
    + _NOW_MS
    + """
redis.call('ZADD', KEYS[3], now + tonumber(ARGV[2]), ARGV[3])
return {1, redis.call('GET', KEYS[2])}
"""
)
# Renew or release a lease only while it is still ours. KEYS: lease, LEASED; ARGV:
# owner, life (ms), execution id.
_RENEW = (
    """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
"""
    + _NOW_MS
    + """
redis.call('ZADD', KEYS[2], now + tonumber(ARGV[2]), ARGV[3])
return redis.call('PEXPIRE', KEYS[1], ARGV[2])
"""
)
_RELEASE = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('ZREM', KEYS[2], ARGV[2])
return redis.call('DEL', KEYS[1])
"""


CANCEL_POLL_SECONDS = 0.25
CANCEL_FLAG_SECONDS = 86_400


def cancel_key(execution_id: str) -> str:
    return f"klikkflow:execution:{execution_id}:cancel"


class _CancelWatch:
    """Cancel flags of every execution this worker drives, read with one MGET every
    CANCEL_POLL_SECONDS (not a poll per execution). A cancelled execution's sub-workflows
    that it waits for are cancelled with it."""

    def __init__(self) -> None:
        self.running: dict[str, tuple[Runner, str | None]] = {}  # id -> runner, parent id
        self._task: asyncio.Task[None] | None = None

    def watch(self, redis: Redis, execution: ExecutionDocument, runner: Runner) -> None:
        parent = str(execution.parent_id) if execution.parent_id else None
        self.running[str(execution.id)] = (runner, parent)
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._poll(redis))

    def forget(self, execution_id: str) -> None:
        self.running.pop(execution_id, None)

    async def _poll(self, redis: Redis) -> None:
        while self.running:
            await asyncio.sleep(CANCEL_POLL_SECONDS)
            ids = list(self.running)
            try:
                flags = await redis.mget([cancel_key(i) for i in ids]) if ids else []
                for execution_id, by in zip(ids, flags, strict=True):
                    if by is not None and execution_id in self.running:
                        await self._cancel(redis, execution_id, by)
            except Exception:  # Redis away for a moment: try again next time
                log.warning("reading cancel flags failed", exc_info=True)

    async def _cancel(self, redis: Redis, execution_id: str, by: str) -> None:
        runner, _ = self.running.pop(execution_id)
        children = [c for c, (_, parent) in self.running.items() if parent == execution_id]
        for child in children:  # seen on the next poll, recorded by the child's own run
            await redis.set(cancel_key(child), f"{by} (with its parent)", ex=CANCEL_FLAG_SECONDS)
        await runner.cancel(_cancelled_by(by))


_cancel_watch = _CancelWatch()


def _cancelled_by(by: str) -> ErrorInfo:
    return ErrorInfo(message=f"cancelled by {by}", type="Cancelled")


def lease_key(execution_id: str) -> str:
    return f"klikkflow:execution:{execution_id}:lease"


# A sorted set per organization of the executions running now, scored by when their
# claim lapses (a worker that dies stops renewing it). ARGV: member, limit, life (ms).
_TAKE_SLOT = (
    _NOW_MS
    + """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZSCORE', KEYS[1], ARGV[1]) or redis.call('ZCARD', KEYS[1]) < tonumber(ARGV[2]) then
  redis.call('ZADD', KEYS[1], now + tonumber(ARGV[3]), ARGV[1])
  redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[3]))
  return 1
end
return 0
"""
)


def slots_key(organization_id: str) -> str:
    return f"klikkflow:organization:{organization_id}:running"


_SCRIPTS: weakref.WeakKeyDictionary[Redis, tuple[AsyncScript, ...]] = weakref.WeakKeyDictionary()


def _lease_scripts(redis: Redis) -> tuple[AsyncScript, ...]:
    """The lease's scripts on this client, registered once (not per execution: each
    registration hashes its script)."""
    scripts = _SCRIPTS.get(redis)
    if scripts is None:
        sources = (_ACQUIRE, _RENEW, _RELEASE, _TAKE_SLOT)
        scripts = _SCRIPTS[redis] = tuple(redis.register_script(s) for s in sources)
    return scripts


class Lease:
    """This worker's claim on one execution, kept alive while it runs; with a limit, also
    one of its organization's running slots."""

    def __init__(self, redis: Redis, execution_id: str) -> None:
        self.redis, self.key, self.execution_id = redis, lease_key(execution_id), execution_id
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.slots: tuple[str, int] | None = None  # (organization's key, limit)
        self.lost = False  # the claim lapsed (this worker stalled, or Redis forgot it)
        self.cancelled_by: str | None = None  # the execution's cancel flag when acquired
        self.on_lost: Callable[[], object] | None = None
        self._keeper: asyncio.Task[None] | None = None
        self._acquire, self._renew, self._release, self._take_slot = _lease_scripts(redis)

    async def acquire(self) -> bool:
        keys = [self.key, cancel_key(self.execution_id), LEASED]
        args: list[str | int] = [self.owner, LEASE_SECONDS * 1000, self.execution_id]
        taken, self.cancelled_by = await self._acquire(keys=keys, args=args)
        if taken:
            self._keeper = asyncio.create_task(self._keep())
        return bool(taken)

    async def take_slot(self, organization_id: str, limit: int) -> bool:
        """One of the organization's `limit` running slots, held with the lease."""
        self.slots = (slots_key(organization_id), limit)
        return bool(await self._slot())

    async def _slot(self) -> int:
        assert self.slots is not None
        key, limit = self.slots
        args: list[str | int] = [self.execution_id, limit, LEASE_SECONDS * 1000]
        return int(await self._take_slot(keys=[key], args=args))

    async def _keep(self) -> None:
        while True:
            await asyncio.sleep(RENEW_SECONDS)
            renewed = await self._renew(
                keys=[self.key, LEASED], args=[self.owner, LEASE_SECONDS * 1000, self.execution_id]
            )
            if not renewed:  # another worker may drive the execution now: stop at once
                self.lost = True
                if self.on_lost is not None:
                    self.on_lost()
                return
            if self.slots is not None:
                await self._slot()

    async def release(self) -> None:
        if self._keeper is not None:
            self._keeper.cancel()
        if self.slots is not None:
            await self.redis.zrem(self.slots[0], self.execution_id)
        await self._release(keys=[self.key, LEASED], args=[self.owner, self.execution_id])


EVENTS: TypeAdapter[Event] = TypeAdapter(Event)
ENGINE = "engine"  # marks log entries that are engine events (replayed on recovery)


class _IdOnly(BaseModel):
    id: PydanticObjectId = Field(alias="_id")


@dataclass(frozen=True)
class RunSettings:
    allow_private_network: bool = False
    execution_timeout_seconds: int | None = 3600
    organization_max_running: int = 0  # executions running at once per organization; 0: any
    node_output_max_bytes: int | None = 8 * 1024 * 1024
    # More node extras for every execution (the AI nodes' `ai` services, from the worker).
    node_extras: Mapping[str, Any] = field(default_factory=dict)
    # For `$execution.resumeUrl`: the webhook ingress's public address and the key of
    # resume tokens; no address: no resume URL in expressions.
    webhook_url: str = ""
    secret_key: str = ""


class _Log:
    """Appends engine events to the execution's log and stream, in order. Events are
    written in groups, at checkpoints: when the execution resumes or stops (finished,
    parked), when a node with effects (not `pure`) finishes, and at most FLUSH_SECONDS
    after the first unwritten event. A finished node with effects is thus in the log
    before anything after it runs and never runs twice; a crash may only make pure nodes
    compute again. An execution that ends within FLUSH_SECONDS of its start is written
    once; one that runs longer shows as running within FLUSH_SECONDS (its lease, in
    LEASED, is what recovery goes by until then)."""

    FLUSH_SECONDS = 0.1
    CHECKPOINTS = frozenset({"execution.resumed", "execution.finished", "execution.parked"})
    NODE_CHECKPOINTS = frozenset({"node.succeeded", "node.failed", "node.waiting"})

    def __init__(self, redis: Redis, execution: ExecutionDocument, seq: int) -> None:
        self.redis, self.execution, self.seq = redis, execution, seq
        self.effectful: frozenset[str] = frozenset()  # nodes to checkpoint when they finish
        self.lease: Lease | None = None  # writes stop once it is lost
        self.node_types: dict[str, str] = {}
        self.node_started: dict[tuple[str, int], datetime] = {}
        self.pending: list[tuple[dict[str, Any], str | None]] = []
        self.moved: list[Status] = []  # the statuses it entered since the last write
        self._timer: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()

    async def __call__(self, event: Event) -> None:
        status = _status_after(self.execution.status, event)
        if status != self.execution.status:
            _move(self.execution, status, event)
            self.moved.append(status)
        self.seq += 1
        entry = {
            "seq": self.seq,
            "type": event.type,
            "status": status.value,
            "at": event.at,
            "data": {ENGINE: EVENTS.dump_python(event, mode="json")},
        }
        node = getattr(event, "node", None)
        self._time(event)
        self.pending.append((entry, node))
        if isinstance(event, NodeSucceeded) and event.node_state and "response" in event.node_state:
            await self._answer(event.node_state["response"])
        if event.type in self.CHECKPOINTS:
            await self.flush()
        elif event.type in self.NODE_CHECKPOINTS and node in self.effectful:
            # At once, yet after whatever the runner emits in the same breath (the end
            # of the execution, usually): one write instead of two.
            self._soon(0)
        elif self._timer is None:
            self._soon(self.FLUSH_SECONDS)

    async def _answer(self, response: dict[str, Any]) -> None:
        """A Respond to Webhook node's answer goes to the waiting caller before its
        checkpoint: after a crash the node may run again, and the caller has its answer."""
        if self.lease is not None and self.lease.lost:
            return
        try:
            await execution_service.publish_response(self.redis, self.execution, response)
        except Exception as exc:  # its event, after the checkpoint, carries it too
            log.warning("could not publish the webhook answer of %s: %s", self.execution.id, exc)

    def _time(self, event: Event) -> None:
        """Node durations for the metrics (runs replayed after a crash are left out)."""
        if isinstance(event, NodeStarted):
            self.node_started[(event.node, event.run_index)] = event.at
        elif isinstance(event, NodeSucceeded | NodeFailed):
            began = self.node_started.pop((event.node, event.run_index), None)
            if began is not None:
                seconds = (event.at - began).total_seconds()
                metrics.observe_node(self.node_types.get(event.node, "unknown"), seconds)

    def _soon(self, delay: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer = asyncio.create_task(self._flush_after(delay))

    async def _flush_after(self, delay: float) -> None:
        await asyncio.sleep(delay)
        self._timer = None
        await self.flush()

    async def flush(self) -> None:
        if self._timer is not None and self._timer is not asyncio.current_task():
            self._timer.cancel()
            self._timer = None
        if self.lease is not None and self.lease.lost:
            self.pending.clear()  # another worker goes on from the log as it stands
            return
        async with self._lock:
            batch, self.pending = self.pending, []
            moved, self.moved = self.moved, []
            if not batch and not moved:
                return
            page = log_page(self.execution, [entry for entry, _ in batch]) if batch else None
            changed = _status(self.execution) if moved else (None, None)
            # The log first: whoever sees the new status or the events finds them stored.
            await writes.checkpoint(writes.Checkpoint(page, *changed))
            await execution_service.publish_many(self.redis, self.execution, batch, announce=moved)


async def _result(child: ExecutionDocument, workflow_id: str) -> list[Item]:
    """What a finished sub-workflow hands back: its last node's output, as in n8n."""
    done = await repository.by_id_unscoped(str(child.id))
    if done is None or done.status != Status.SUCCEEDED:
        status = done.status.value if done else "gone"
        reason = ((done.error or {}).get("message") if done else None) or status
        raise NodeError(f"sub-workflow {workflow_id} {status}: {reason}")
    return await execution_service.last_output(done)


def _status_after(current: Status, event: Event) -> Status:
    if event.type in ("execution.started", "execution.resumed"):
        return Status.RUNNING
    if event.type == "execution.parked":
        return Status.WAITING
    if isinstance(event, ExecutionFinished):
        return Status(event.status.value)
    return current


def _move(execution: ExecutionDocument, status: Status, event: Event) -> None:
    execution.status = status
    if status == Status.RUNNING and execution.started_at is None:
        execution.started_at = event.at
    if status in TERMINAL:
        execution.finished_at = event.at
        if isinstance(event, ExecutionFinished) and event.error is not None:
            execution.error = event.error.model_dump()


def _status(execution: ExecutionDocument) -> tuple[ObjectId | None, dict[str, Any] | None]:
    """What a checkpoint sets on the execution document."""
    fields = {
        "status": execution.status.value,
        "started_at": execution.started_at,
        "finished_at": execution.finished_at,
        "error": execution.error,
        "resume_payload": None,  # consumed by the run that changed the status
    }
    return execution.id, fields


async def _engine_events(execution: ExecutionDocument) -> tuple[list[Event], int]:
    """The engine events logged so far, and the last seq of the log."""
    assert execution.id is not None
    logged = await repository.log(execution.id)
    events = [EVENTS.validate_python(e["data"][ENGINE]) for e in logged if ENGINE in e["data"]]
    return events, logged[-1]["seq"] if logged else 0


@alru_cache(maxsize=GRAPH_CACHE)
async def _compile(organization_id: str, workflow_id: str, version: int | None) -> Graph:
    """A workflow version, compiled; versions never change, so compiled graphs are kept
    (the newest GRAPH_CACHE of them) and reused by every run of a version."""
    system = Viewer(user_id="", organization_id=organization_id, role="viewer")
    workflow = await workflow_service.for_run(system, workflow_id, version)
    return compile_workflow(workflow, default_registry())


@alru_cache(maxsize=10_000, ttl=VARIABLES_TTL)
async def _variables(organization_id: str) -> dict[str, str]:
    """`$vars` of an organization, read at most every VARIABLES_TTL seconds: one read
    for all the executions that start meanwhile."""
    return await variable_service.values_for_run(organization_id)


class RunService:
    def __init__(self) -> None:
        self.settings = RunSettings()

    def configure(self, settings: RunSettings) -> None:
        self.settings = settings

    async def execute(
        self, redis: Redis, queue: ArqRedis, execution_id: str, snapshot: bytes | None = None
    ) -> Status | None:
        """Run (or go on with) one execution; idempotent: arq may run a job twice, and a
        job for an execution another live worker drives returns at once. The status it
        left the execution in, or None when this job found nothing to do (so a finished
        execution is counted once however often its job runs)."""
        lease = Lease(redis, execution_id)
        if not await lease.acquire():
            log.info("execution %s is driven by another worker", execution_id)
            held = await repository.by_id_unscoped(execution_id)
            if held is not None and held.status == Status.WAITING:
                # Most likely the run that parked it, not yet letting go: this job is a
                # resume call or a wake-up that came early, and giving up would lose it.
                retry = f"{execution_id}:held:{uuid.uuid4().hex[:8]}"
                await queue.enqueue_job(RUN_EXECUTION, execution_id, _job_id=retry, _defer_by=1)
            return None
        work = asyncio.create_task(self._execute(redis, queue, execution_id, lease, snapshot))
        lease.on_lost = work.cancel
        try:
            return await work
        except asyncio.CancelledError:
            if not lease.lost:
                raise
            log.warning("lost the lease on execution %s: stopped driving it", execution_id)
            return None
        finally:
            await lease.release()

    async def cancel(self, redis: Redis, execution: ExecutionDocument, by: str) -> None:
        """Cancel a queued, waiting or running execution. One no worker drives ends here
        and now; a running one is stopped by its worker within CANCEL_POLL_SECONDS."""
        assert execution.id is not None
        execution_id = str(execution.id)
        await redis.set(cancel_key(execution_id), by, ex=CANCEL_FLAG_SECONDS)
        lease = Lease(redis, execution_id)
        if not await lease.acquire():
            return  # its worker sees the flag
        try:
            current = await repository.by_id_unscoped(execution_id)
            if current is None or current.status in TERMINAL:
                return
            _, seq = await _engine_events(current)
            finished = ExecutionFinished(
                at=now(), status=ExecutionStatus.CANCELLED, error=_cancelled_by(by)
            )
            await _Log(redis, current, seq)(finished)
        finally:
            await lease.release()

    async def sweep(self, redis: Redis, queue: ArqRedis) -> list[str]:
        """Enqueue again every execution whose worker died: its lease lapsed unreleased
        (it stays in LEASED until a run of it releases a lease; a marker spaces out the
        jobs for it), or it is running in MongoDB without a lease (Redis lost its keys).
        When Redis lost everything (restarted without its data), also every queued or
        waiting execution: their jobs went with it."""
        if not await redis.set(SWEEP_LOCK, "1", nx=True, ex=RENEW_SECONDS):
            return []  # another worker sweeps now
        if not await redis.exists(REDIS_EPOCH):
            await self._requeue(queue)
            await redis.set(REDIS_EPOCH, uuid.uuid4().hex)  # only once all are back
        seconds, micros = await redis.time()
        lapsed = await redis.zrangebyscore(
            LEASED, "-inf", seconds * 1000 + micros // 1000, start=0, num=SWEEP_BATCH
        )
        running = (
            await ExecutionDocument.find({"status": Status.RUNNING.value}, projection_model=_IdOnly)
            .limit(SWEEP_BATCH)
            .to_list()
        )
        orphans = []
        for execution_id in dict.fromkeys([*lapsed, *(str(r.id) for r in running)]):
            if await redis.exists(lease_key(execution_id)):
                continue  # a live worker drives it
            marker = f"klikkflow:execution:{execution_id}:recovering"
            if await redis.set(marker, "1", nx=True, ex=LEASE_SECONDS * 3):
                job_id = f"{execution_id}:recover:{uuid.uuid4().hex[:8]}"
                await queue.enqueue_job(RUN_EXECUTION, execution_id, _job_id=job_id)
                orphans.append(execution_id)
        if orphans:
            log.warning("recovering executions whose worker died: %s", ", ".join(orphans))
        return orphans

    async def _requeue(self, queue: ArqRedis) -> None:
        """A job for every queued execution (arq keeps one job per id: one that is still
        queued is not doubled) and every waiting one (its run sets its wake again)."""
        count = 0
        for status in (Status.QUEUED, Status.WAITING):  # one status a query: the status index
            pending = ExecutionDocument.find({"status": status.value}, projection_model=_IdOnly)
            async for found in pending:
                execution_id = str(found.id)
                if status == Status.QUEUED:
                    job_id = execution_id
                else:
                    job_id = f"{execution_id}:requeue:{uuid.uuid4().hex[:8]}"
                await queue.enqueue_job(RUN_EXECUTION, execution_id, _job_id=job_id)
                count += 1
        if count:
            log.warning("Redis lost its jobs: enqueued %d queued or waiting executions", count)

    async def _execute(
        self,
        redis: Redis,
        queue: ArqRedis,
        execution_id: str,
        lease: Lease,
        snapshot: bytes | None,
    ) -> Status | None:
        fresh = snapshot if lease.cancelled_by is None else None  # a cancel may have ended it
        if fresh is not None:
            execution: ExecutionDocument | None = repository.from_snapshot(fresh)
        else:
            execution = await repository.by_id_unscoped(execution_id)
        if execution is None or execution.status in TERMINAL:
            return None  # gone, or ended by an earlier run of this job: nothing to do
        limit = self.settings.organization_max_running
        if limit and not await lease.take_slot(str(execution.organization_id), limit):
            # Its organization runs as many executions as it may: try again shortly.
            job_id = f"{execution_id}:slot:{uuid.uuid4().hex[:8]}"
            await queue.enqueue_job(RUN_EXECUTION, execution_id, _job_id=job_id, _defer_by=1)
            return execution.status
        events: list[Event]
        if fresh is not None and execution.retry_of is None:
            events, seq = [], 1  # its job's first try: the log holds its queued event only
        else:  # its log tells, even if it is still queued: a worker that died may have
            # written a page (its first) and not the status after it
            events, seq = await _engine_events(execution)
        sink = _Log(redis, execution, seq)
        sink.lease = lease
        if events and execution.status == Status.QUEUED:  # a retry: it goes on running
            _move(execution, Status.RUNNING, events[0])
            sink.moved.append(Status.RUNNING)
        try:
            return await self._run_logged(redis, queue, execution, events, sink)
        finally:
            await sink.flush()

    async def _run_logged(
        self,
        redis: Redis,
        queue: ArqRedis,
        execution: ExecutionDocument,
        events: list[Event],
        sink: _Log,
    ) -> Status | None:
        execution_id = str(execution.id)
        flagged = (
            sink.lease.cancelled_by if sink.lease else await redis.get(cancel_key(execution_id))
        )
        if flagged is not None:  # cancelled before any worker took it
            await sink(
                ExecutionFinished(
                    at=now(), status=ExecutionStatus.CANCELLED, error=_cancelled_by(flagged)
                )
            )
            return execution.status
        try:
            runner = await self._runner(execution, sink, queue)
        except (WorkflowNotFound, VersionNotFound, InvalidWorkflow) as exc:
            await self._fail(redis, execution, sink, f"the workflow cannot run: {exc}")
            return execution.status
        _cancel_watch.watch(redis, execution, runner)
        try:
            state = await self._drive(runner, execution, events)
        except NoStartNode as exc:
            await self._fail(redis, execution, sink, str(exc))
            return execution.status
        finally:
            _cancel_watch.forget(execution_id)
            runner.close()
        if state.status == ExecutionStatus.FAILED:
            await sink.flush()  # the failure is on record before anything reacts to it
            await self._error_workflow(redis, queue, execution, runner, state)
        if state.status == ExecutionStatus.WAITING and state.parked and state.parked.until:
            # Nothing sleeps: a deferred job wakes the execution when its wait is over (one
            # due at once that finds the lease still held tries again: see execute).
            wake = f"{execution_id}:wake:{sink.seq}"
            await queue.enqueue_job(
                RUN_EXECUTION, execution_id, _job_id=wake, _defer_until=state.parked.until
            )
        log.info("execution %s is %s", execution_id, state.status.value)
        return execution.status

    async def _drive(
        self, runner: Runner, execution: ExecutionDocument, events: list[Event]
    ) -> State:
        if not events:
            return await runner.run(execution.items, start=execution.start_node)
        runner.replay(events)
        parked = runner.state.parked
        if runner.state.status == ExecutionStatus.WAITING and parked is not None:
            payload = execution.resume_payload
            if payload is not None and parked.resumable:  # its resume URL was called
                # The payload goes with the move to running (see _status): until then a
                # second call finds it claimed, and a crash before it leaves it to retry.
                return await runner.resume(payload)
            if parked.until is not None and parked.until <= now():
                return await runner.resume()  # its time is up: go on with its input items
            return runner.state  # not yet: its deferred job or resume call wakes it
        return await runner.recover()

    async def _runner(self, execution: ExecutionDocument, sink: _Log, queue: ArqRedis) -> Runner:
        org = str(execution.organization_id)
        graph = await self._graph(execution)
        sink.effectful = frozenset(n for n, c in graph.nodes.items() if not c.impl.pure)
        sink.node_types = {n: c.spec.type for n, c in graph.nodes.items()}

        async def credential(credential_type: str, credential_id: str) -> dict[str, Any]:
            return await credential_service.open_for_run(org, credential_id)

        return Runner(
            graph,
            sub_workflows=self._sub_workflows(sink.redis, queue, execution),
            execution_id=str(execution.id),
            variables=await _variables(org),
            mode=execution.mode,
            on_event=sink,
            credentials_loader=credential,
            node_extras={
                **self.settings.node_extras,
                "ssrf_policy": SsrfPolicy(allow_private=self.settings.allow_private_network),
                "organization_id": org,
            },
            max_output_bytes=self.settings.node_output_max_bytes,
            default_timeout=self.settings.execution_timeout_seconds,
            resume_url=self._resume_url(str(execution.id)),
            # (a draft compiles afresh for every run: nothing to hand on)
            engines=_ENGINES if execution.workflow_version is not None else None,
        )

    def _resume_url(self, execution_id: str) -> str | None:
        base, key = self.settings.webhook_url.rstrip("/"), self.settings.secret_key
        return f"{base}{resume_path(key, execution_id)}" if base and key else None

    def _sub_workflows(
        self, redis: Redis, queue: ArqRedis, parent: ExecutionDocument
    ) -> SubWorkflowRunner:
        """Execute Workflow nodes: the sub-workflow (its published version, else its latest)
        runs as an execution of its own, linked to its parent; waited for in this worker,
        or queued when the node does not wait."""

        async def run_sub(workflow_id: str, items: list[Item], wait: bool) -> list[Item] | None:
            if parent.depth >= MAX_SUB_WORKFLOW_DEPTH:
                raise NodeError(f"sub-workflows nest deeper than {MAX_SUB_WORKFLOW_DEPTH} levels")
            org = str(parent.organization_id)
            system = Viewer(user_id="", organization_id=org, role="viewer")
            head = await workflow_service.get(system, workflow_id)
            if head is None or head.id is None or head.archived_at is not None:
                raise NodeError(f"no workflow {workflow_id!r} in this organization")
            number = head.active_version or head.version
            workflow = await workflow_service.for_run(system, workflow_id, number)
            trigger = next(
                (n.name for n in workflow.nodes if n.type == "executeWorkflowTrigger"), None
            )
            if trigger is None:
                raise NodeError(f"workflow {workflow_id!r} has no Execute Workflow Trigger")
            child = ExecutionDocument(
                organization_id=parent.organization_id,
                workflow_id=head.id,
                workflow_version=number,
                items=items,
                start_node=trigger,
                mode="sub-workflow",
                parent_id=parent.id,
                depth=parent.depth + 1,
            )
            await repository.insert(child)
            if not wait:
                await execution_service.enqueue(redis, queue, child)
                return None
            await execution_service.record_queued(redis, child)
            await self.execute(redis, queue, str(child.id), repository.snapshot(child))
            return await _result(child, workflow_id)

        return run_sub

    async def _error_workflow(
        self,
        redis: Redis,
        queue: ArqRedis,
        execution: ExecutionDocument,
        runner: Runner,
        state: State,
    ) -> None:
        """Start the workflow's error workflow (settings.errorWorkflow) at its Error
        Trigger with what failed, as n8n does. Failures of error runs start nothing."""
        target = runner.graph.workflow.settings.error_workflow
        if not target or execution.mode == "error":
            return
        org = str(execution.organization_id)
        system = Viewer(user_id="", organization_id=org, role="viewer")
        head = await workflow_service.get(system, target)
        if head is None or head.id is None or head.archived_at is not None:
            log.warning("execution %s: error workflow %s not found", execution.id, target)
            return
        number = head.active_version or head.version
        workflow = await workflow_service.for_run(system, target, number)
        trigger = next(
            (n.name for n in workflow.nodes if n.type == "errorTrigger" and not n.disabled), None
        )
        if trigger is None:
            log.warning(
                "execution %s: error workflow %s has no Error Trigger", execution.id, target
            )
            return
        error = state.error.model_dump() if state.error else {}
        item = {
            "json": {
                "execution": {
                    "id": str(execution.id),
                    "mode": execution.mode,
                    "retryOf": str(execution.retry_of) if execution.retry_of else None,
                    "error": {"message": error.get("message", ""), "type": error.get("type")},
                    "lastNodeExecuted": error.get("node"),
                },
                "workflow": {"id": str(execution.workflow_id), "name": runner.graph.workflow.name},
            }
        }
        await execution_service.submit_trigger(
            redis, queue, head.organization_id, head.id, number, trigger, [item], "error"
        )

    async def _graph(self, execution: ExecutionDocument) -> Graph:
        org, workflow_id = str(execution.organization_id), str(execution.workflow_id)
        if execution.workflow_version is None:  # its draft: read it afresh
            return await _compile.__wrapped__(org, workflow_id, None)
        return await _compile(org, workflow_id, execution.workflow_version)

    async def _fail(
        self, redis: Redis, execution: ExecutionDocument, sink: _Log, reason: str
    ) -> None:
        """An execution that cannot start ends failed, with the reason, never stuck."""
        await sink(
            ExecutionFinished(
                at=now(),
                status=ExecutionStatus.FAILED,
                error=ErrorInfo(message=reason, type="WorkflowError"),
            )
        )


runs = RunService()
