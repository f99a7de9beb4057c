"""Executions: records, the event log and its live Redis stream. Workers run them
(`subgraphs.executions.runs`)."""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from arq.connections import ArqRedis
from arq.constants import expires_extra_ms, job_key_prefix, result_key_prefix
from arq.jobs import serialize_job
from arq.utils import timestamp_ms
from beanie import PydanticObjectId
from redis.asyncio import Redis
from redis.typing import EncodableT, FieldT, KeyT, StreamIdT

from klikkflow.kit.auth import Viewer
from klikkflow.kit.crypto import derive_key
from klikkflow.kit.errors import InvalidInput
from klikkflow.kit.permissions import require
from subgraphs.executions.models import (
    TERMINAL,
    ExecutionDocument,
    ExecutionPriority,
    ExecutionStatus,
    now,
)
from subgraphs.executions.repository import ExecutionFilter, repository
from subgraphs.executions.writes import Group
from subgraphs.workflows.service import workflow as workflow_service

RUN_EXECUTION = "executions.run"  # arq job name; the job id is the execution id
STREAM_MAXLEN = 10_000
HIGH_PRIORITY_LEAD_MS = 10 * 60 * 1000
# KEYS: arq's job and result keys, arq's queue, the execution's stream, its organization's
# changes stream. ARGV: job id, score, expiry (ms), the serialized job, stream length,
# then the queued event's fields and the change's, each list after its length. The first
# event, then the job as arq's enqueue_job makes it (none if one with that id exists: a
# sweep may have requeued it meanwhile), in one round trip. Answers the event's cursor.
_ENQUEUE = """
local n = tonumber(ARGV[6])
local cursor = redis.call('XADD', KEYS[4], 'MAXLEN', '~', ARGV[5], '*', unpack(ARGV, 7, 6 + n))
local m = tonumber(ARGV[7 + n])
redis.call('XADD', KEYS[5], 'MAXLEN', '~', ARGV[5], '*', unpack(ARGV, 8 + n, 7 + n + m))
if redis.call('EXISTS', KEYS[1], KEYS[2]) == 0 then
  redis.call('PSETEX', KEYS[1], ARGV[3], ARGV[4])
  redis.call('ZADD', KEYS[3], ARGV[2], ARGV[1])
end
return cursor
"""
# A finished execution's live stream is kept this long; later, its subscribers replay its
# log from MongoDB. Redis thus holds the streams of recent executions only (~5 KB each).
STREAM_TTL_SECONDS = 60
RESPONSE_TTL_SECONDS = 300  # a Respond to Webhook node's answer, for the call waiting on it
FINAL_VALUES = frozenset(s.value for s in TERMINAL)
FOLLOW_BLOCK_MS = 5_000
MAX_PAGE = 100


def resume_token(secret_key: str, execution_id: str) -> str:
    """The secret part of a waiting execution's resume URL."""
    key = derive_key(secret_key, "resume urls")
    return hmac.new(key, execution_id.encode(), hashlib.sha256).hexdigest()[:32]


def resume_path(secret_key: str, execution_id: str) -> str:
    return f"/webhook-waiting/{execution_id}/{resume_token(secret_key, execution_id)}"


def changes_key(organization_id: str) -> str:
    return f"klikkflow:organization:{organization_id}:executions"


@dataclass(frozen=True)
class Change:
    """An execution of an organization changed status (its changes stream)."""

    cursor: str
    execution_id: str
    workflow_id: str
    status: ExecutionStatus
    at: datetime


def response_key(execution_id: str) -> str:
    """A stream holding what the execution's Respond to Webhook nodes answered."""
    return f"klikkflow:execution:{execution_id}:response"


def stream_key(execution_id: str) -> str:
    return f"klikkflow:execution:{execution_id}:events"


class WorkflowNotFound(Exception):
    def __init__(self, workflow_id: str) -> None:
        super().__init__(f"workflow {workflow_id} not found")
        self.workflow_id = workflow_id


class ExecutionNotFound(Exception):
    def __init__(self, execution_id: str) -> None:
        super().__init__(f"execution {execution_id} not found")
        self.execution_id = execution_id


@dataclass(frozen=True)
class Event:
    """One state change as it travels on the stream; `cursor` is its stream id."""

    cursor: str
    execution_id: str
    seq: int
    type: str
    status: ExecutionStatus
    at: datetime
    node: str | None = None
    response: dict[str, Any] | None = None  # set by Respond to Webhook nodes


MAX_INPUT_ITEMS = 1_000


def _items(rows: list[Any]) -> list[dict[str, Any]]:
    """Input items as n8n items: `{"json": {...}}` kept, bare objects wrapped."""
    if len(rows) > MAX_INPUT_ITEMS:
        raise InvalidInput({"items": f"at most {MAX_INPUT_ITEMS} items"})
    problems = {
        f"items[{i}]": "must be a JSON object"
        for i, row in enumerate(rows)
        if not isinstance(row, dict)
    }
    if problems:
        raise InvalidInput(problems)
    return [
        row if set(row) <= {"json", "binary"} and "json" in row else {"json": row} for row in rows
    ]


@dataclass
class NodeRunRecord:
    """One run of one node, folded from the execution's log."""

    node: str
    run_index: int
    status: str
    started_at: datetime
    tries: int = 1
    finished_at: datetime | None = None
    inputs: dict[str, Any] | None = None
    outputs: dict[str, Any] | None = None
    error: dict[str, Any] | None = None


_NODE_STATUS = {
    "node.started": "running",
    "node.succeeded": "succeeded",
    "node.waiting": "waiting",
    "node.interrupted": "retrying",
}


def fold_node_runs(logged: list[dict[str, Any]]) -> list[NodeRunRecord]:
    """Node runs in the order they started, from logged engine events."""
    runs: dict[tuple[str, int], NodeRunRecord] = {}
    for e in logged:
        node, kind = e.get("node"), e["type"]
        if node is None:
            continue
        at = datetime.fromisoformat(e["at"])
        key = (node, e["run_index"])
        run = runs.get(key)
        if kind == "node.started":
            if run is None:
                runs[key] = NodeRunRecord(node, e["run_index"], "running", at, inputs=e["inputs"])
            else:
                run.status, run.tries, run.error = "running", run.tries + 1, None
            continue
        if run is None:
            continue
        if kind == "node.failed":
            run.status = "retrying" if e.get("retry_at") else "failed"
            run.error, run.finished_at = e["error"], at
        else:
            run.status = _NODE_STATUS.get(kind, run.status)
        if kind == "node.succeeded":
            run.outputs, run.finished_at = e["outputs"], at
    return list(runs.values())


def _final_failure(event: dict[str, Any]) -> bool:
    """What made an execution fail: its end, and node failures with no retry to come."""
    if event["type"] == "execution.finished":
        return True
    return event["type"] == "node.failed" and not event.get("retry_at")


class ExecutionService:
    async def create(
        self,
        viewer: Viewer,
        workflow_id: str,
        items: list[dict[str, Any]],
        priority: ExecutionPriority = ExecutionPriority.NORMAL,
        start_node: str | None = None,
    ) -> ExecutionDocument:
        require(viewer, "workflow.run")
        workflow = await workflow_service.get(viewer, workflow_id)
        if workflow is None or workflow.archived_at is not None:
            raise WorkflowNotFound(workflow_id)
        execution = ExecutionDocument(
            organization_id=workflow.organization_id,
            workflow_id=workflow.id,
            workflow_version=workflow.version,
            items=_items(items),
            priority=priority,
            start_node=start_node,
        )
        await repository.insert(execution)
        return execution

    async def submit(
        self,
        viewer: Viewer,
        workflow_id: str,
        redis: Redis,
        queue: ArqRedis,
        items: list[dict[str, Any]] | None = None,
        priority: ExecutionPriority = ExecutionPriority.NORMAL,
    ) -> ExecutionDocument:
        """Record a queued execution, then publish its first event, then enqueue its job
        (in that order, so a worker never sees a job for an execution not yet saved)."""
        execution = await self.create(viewer, workflow_id, items or [], priority)
        await self.enqueue(redis, queue, execution)
        return execution

    async def enqueue(self, redis: Redis, queue: ArqRedis, execution: ExecutionDocument) -> str:
        """Publish a new (saved) execution's first event and enqueue its arq job, in one
        round trip; the event's cursor on the execution's stream."""
        assert execution.id is not None
        execution_id = str(execution.id)
        queued = _stream_fields(_queued_entry(execution), None)
        change = _change_fields(execution, execution.status)
        # arq takes jobs in the order of their scores (when they are due): a high-priority
        # job is due a while ago, so it goes before the normal jobs queued since.
        enqueued = timestamp_ms()
        high = execution.priority == ExecutionPriority.HIGH
        score = enqueued - HIGH_PRIORITY_LEAD_MS if high else enqueued
        job = serialize_job(
            RUN_EXECUTION,
            # its first run needs not read the execution back
            (execution_id, repository.snapshot(execution)),
            {},
            None,
            enqueued,
            serializer=queue.job_serializer,
        )
        cursor = await redis.register_script(_ENQUEUE)(
            keys=[
                job_key_prefix + execution_id,
                result_key_prefix + execution_id,
                queue.default_queue_name,
                stream_key(execution_id),
                changes_key(str(execution.organization_id)),
            ],
            args=[
                execution_id,
                score,
                score - enqueued + expires_extra_ms,
                job,
                STREAM_MAXLEN,
                len(queued) * 2,
                *_flat(queued),
                len(change) * 2,
                *_flat(change),
            ],
        )
        return str(cursor)

    async def get(self, viewer: Viewer, execution_id: str) -> ExecutionDocument | None:
        return (await repository.by_ids(viewer, [execution_id])).get(execution_id)

    async def submit_trigger(
        self,
        redis: Redis,
        queue: ArqRedis,
        organization_id: PydanticObjectId,
        workflow_id: PydanticObjectId,
        version: int,
        start_node: str,
        items: list[dict[str, Any]],
        mode: str,
    ) -> tuple[ExecutionDocument, str]:
        """An execution started by a trigger (webhook, schedule): the trigger found the
        workflow and version it runs, so no viewer is involved. With the cursor of its
        first event."""
        execution = ExecutionDocument(
            organization_id=organization_id,
            workflow_id=workflow_id,
            workflow_version=version,
            start_node=start_node,
            items=items,
            mode=mode,
        )
        await repository.insert(execution)
        return execution, await self.enqueue(redis, queue, execution)

    async def cancellable(self, viewer: Viewer, execution_id: str) -> ExecutionDocument:
        """The execution, if the viewer may cancel it and it has not finished."""
        require(viewer, "workflow.run")
        found = await self.get(viewer, execution_id)
        if found is None:
            raise ExecutionNotFound(execution_id)
        if found.status in TERMINAL:
            raise InvalidInput({"id": f"the execution already {found.status.value}"})
        return found

    async def get_many(self, viewer: Viewer, ids: list[str]) -> list[ExecutionDocument | None]:
        found = await repository.by_ids(viewer, ids)
        return [found.get(i) for i in ids]

    async def page(
        self, viewer: Viewer, filter: ExecutionFilter, first: int, after: str | None
    ) -> tuple[list[ExecutionDocument], bool]:
        """A page of executions, newest first, and whether another page follows."""
        limit = max(1, min(first, MAX_PAGE))
        found = await repository.page(viewer, filter, after, limit + 1)
        return found[:limit], len(found) > limit

    async def _mine(self, viewer: Viewer, execution_id: str) -> ExecutionDocument:
        require(viewer, "workflow.run")
        found = await self.get(viewer, execution_id)
        if found is None:
            raise ExecutionNotFound(execution_id)
        return found

    async def delete(self, viewer: Viewer, execution_id: str) -> str:
        """Delete a finished execution and its log (an unfinished one: cancel it first)."""
        found = await self._mine(viewer, execution_id)
        if found.status not in TERMINAL:
            raise InvalidInput({"id": f"the execution is {found.status.value}: cancel it first"})
        await repository.delete(found)
        return execution_id

    async def rerun(
        self, viewer: Viewer, execution_id: str, redis: Redis, queue: ArqRedis
    ) -> ExecutionDocument:
        """Run the workflow again with the same start items, on its latest version."""
        old = await self._mine(viewer, execution_id)
        execution = await self.create(
            viewer, str(old.workflow_id), old.items, start_node=old.start_node
        )
        await self.enqueue(redis, queue, execution)
        return execution

    async def retry(
        self, viewer: Viewer, execution_id: str, redis: Redis, queue: ArqRedis
    ) -> ExecutionDocument:
        """Go on with a failed execution from its failed node, as a new execution on the
        same version: the nodes that finished keep their outputs and do not run again;
        the node that failed runs again with the same inputs."""
        old = await self._mine(viewer, execution_id)
        if old.status != ExecutionStatus.FAILED:
            raise InvalidInput({"id": "only a failed execution goes on from its failed node"})
        logged = await repository.engine_events(old)
        kept = [e for e in logged if not _final_failure(e)]
        execution = ExecutionDocument(
            organization_id=old.organization_id,
            workflow_id=old.workflow_id,
            workflow_version=old.workflow_version,
            items=old.items,
            start_node=old.start_node,
            mode="retry",
            retry_of=old.id,
        )
        await repository.insert(execution)
        await repository.copy_log(execution, kept)
        await self.enqueue(redis, queue, execution)
        return execution

    async def last_output(self, execution: ExecutionDocument) -> list[dict[str, Any]]:
        """What a finished execution hands back (to a webhook in lastNode mode, to a parent
        workflow): the first non-empty port of the node that finished last, as in n8n."""
        runs = await self.node_runs(execution)
        finished = [r for r in runs if r.status == "succeeded" and r.outputs and r.finished_at]
        if not finished:
            return []
        last = max(finished, key=lambda r: str(r.finished_at))
        return next((items for items in (last.outputs or {}).values() if items), [])

    async def node_runs(self, execution: ExecutionDocument) -> list[NodeRunRecord]:
        logged = await repository.engine_events(execution)
        return fold_node_runs(logged)

    async def record_queued(self, redis: Redis, execution: ExecutionDocument) -> None:
        """The first event of a new (saved, queued) execution that no job is enqueued
        for (it runs at once in its caller's worker), on its live stream only: the
        execution document itself records that it was queued, and when."""
        await self.publish_many(
            redis, execution, [(_queued_entry(execution), None)], announce=[execution.status]
        )

    async def publish_many(
        self,
        redis: Redis,
        execution: ExecutionDocument,
        logged: list[tuple[dict[str, Any], str | None]],
        announce: Sequence[ExecutionStatus] = (),
    ) -> None:
        """Put an execution's logged events (log entries, with their node) on its live
        stream and the statuses it entered (`announce`, in order) on its organization's
        changes stream. Publications made at the same time (the executions of one
        checkpoint group) share one round trip."""
        await _publish(_Publication(redis, execution, logged, announce))

    async def publish_response(
        self, redis: Redis, execution: ExecutionDocument, response: dict[str, Any]
    ) -> None:
        """What a Respond to Webhook node answers the call that started the execution, as
        soon as the node ran: the caller does not wait for the node's checkpoint (n8n, too,
        answers before it saves). The node's event, published after its checkpoint, carries
        the answer as well."""
        await _publish(_Publication(redis, execution, [], (), response))

    async def changes(
        self, redis: Redis, viewer: Viewer, workflow_id: str | None, after: str | None
    ) -> AsyncIterator[Change]:
        """Status changes of the viewer's organization's executions (of one workflow, or
        all) from now on, or replayed after the cursor `after`."""
        key = changes_key(viewer.organization_id)
        if after is None:
            last = await redis.xrevrange(key, count=1)
            after = last[0][0] if last else "0-0"
        cursor = after
        while True:
            batches = await redis.xread({key: cursor}, block=FOLLOW_BLOCK_MS)
            for _, entries in batches or []:
                for entry_id, fields in entries:
                    cursor = entry_id
                    if workflow_id is not None and fields["workflow"] != workflow_id:
                        continue
                    yield Change(
                        cursor=entry_id,
                        execution_id=fields["execution"],
                        workflow_id=fields["workflow"],
                        status=ExecutionStatus(fields["status"]),
                        at=datetime.fromisoformat(fields["at"]),
                    )

    async def _logged_events(self, execution: ExecutionDocument) -> list[Event]:
        """The execution's events as its stream had them, from its log in MongoDB (its
        queued event, which the log leaves to the execution document, first)."""
        assert execution.id is not None
        entries = [_queued_entry(execution), *await repository.log(execution.id)]
        return [
            _event_from_stream(
                str(execution.id),
                f"0-{entry['seq']}",
                {
                    str(name): str(value)
                    for name, value in _stream_fields(
                        entry, (entry["data"].get("engine") or {}).get("node")
                    ).items()
                },
            )
            for entry in entries
        ]

    async def answer(
        self, redis: Redis, execution_id: str, after: str, respond_nodes: set[str]
    ) -> dict[str, Any] | None:
        """Wait until the execution answers the webhook call that started it: the first
        response of one of `respond_nodes` (from the response stream, or else from the
        node's event), or None once the execution ended without one."""
        events = stream_key(execution_id)
        cursors: dict[KeyT, StreamIdT] = {events: after}
        if respond_nodes:
            cursors[response_key(execution_id)] = "0-0"
        while True:
            batches = dict(await redis.xread(cursors, block=FOLLOW_BLOCK_MS) or [])
            for _, fields in batches.get(response_key(execution_id), [])[:1]:
                return dict(json.loads(fields["response"]))
            for entry_id, fields in batches.get(events, []):
                cursors[events] = entry_id
                event = _event_from_stream(execution_id, entry_id, fields)
                if event.type == "node.succeeded" and event.node in respond_nodes:
                    return event.response or {}
                if event.status in TERMINAL:
                    return None

    async def follow(
        self, redis: Redis, execution: ExecutionDocument, after: str | None
    ) -> AsyncIterator[Event]:
        """Events of one execution from its live stream, replaying those after `after`,
        until a terminal one. The caller has checked the viewer may see the execution (and
        read it just now). A finished execution whose stream is gone (STREAM_TTL_SECONDS
        after its end) replays its log from MongoDB, with cursors of the form `0-<seq>`:
        after one of those, the events after that seq; after a cursor of the expired
        stream, all of them (each event's `seq` tells which were seen)."""
        execution_id = str(execution.id)
        if execution.status in TERMINAL and not await redis.exists(stream_key(execution_id)):
            for event in await self._logged_events(execution):
                if _seq_of_replayed(after) < event.seq:
                    yield event
            return
        cursor = after or "0-0"
        while True:
            batches = await redis.xread({stream_key(execution_id): cursor}, block=FOLLOW_BLOCK_MS)
            for _, entries in batches or []:
                for entry_id, fields in entries:
                    cursor = entry_id
                    event = _event_from_stream(execution_id, entry_id, fields)
                    yield event
                    if event.status in TERMINAL:
                        return


def _seq_of_replayed(cursor: str | None) -> int:
    """The seq in a cursor of a replayed log (`0-<seq>`); 0 for any other cursor."""
    head, _, tail = (cursor or "").partition("-")
    return int(tail) if head == "0" and tail.isdigit() else 0


def _event_from_stream(execution_id: str, entry_id: str, fields: dict[str, str]) -> Event:
    return Event(
        cursor=entry_id,
        execution_id=execution_id,
        seq=int(fields["seq"]),
        type=fields["type"],
        status=ExecutionStatus(fields["status"]),
        at=datetime.fromisoformat(fields["at"]),
        node=fields.get("node"),
        response=json.loads(fields["response"]) if "response" in fields else None,
    )


@dataclass(frozen=True)
class _Publication:
    redis: Redis
    execution: ExecutionDocument
    logged: list[tuple[dict[str, Any], str | None]]
    announce: Sequence[ExecutionStatus]
    response: dict[str, Any] | None = None  # a Respond to Webhook node's, at once


async def _publications(group: list[_Publication]) -> list[None | BaseException]:
    """One pipeline per Redis client (one in a process, as a rule); a command that fails
    fails only the publication it belongs to."""
    answers: list[None | BaseException] = [None] * len(group)
    for redis in {id(p.redis): p.redis for p in group}.values():
        mine = [i for i, p in enumerate(group) if p.redis is redis]
        owners: list[int] = []  # the publication of each command
        async with redis.pipeline(transaction=False) as pipe:
            for i in mine:
                p = group[i]
                key = stream_key(str(p.execution.id))
                for entry, node in p.logged:
                    fields = _stream_fields(entry, node)
                    pipe.xadd(key, fields, maxlen=STREAM_MAXLEN, approximate=True)
                    owners.append(i)
                    if entry["status"] in FINAL_VALUES:  # the log in MongoDB outlives it
                        pipe.expire(key, STREAM_TTL_SECONDS)
                        # a webhook call not answered yet finds the answer in the events
                        pipe.delete(response_key(str(p.execution.id)))
                        owners += [i, i]
                if p.response is not None:
                    answers_key = response_key(str(p.execution.id))
                    pipe.xadd(answers_key, {"response": json.dumps(p.response)})
                    pipe.expire(answers_key, RESPONSE_TTL_SECONDS)
                    owners += [i, i]
                for status in p.announce:
                    changes = changes_key(str(p.execution.organization_id))
                    change = _change_fields(p.execution, status)
                    pipe.xadd(changes, change, maxlen=STREAM_MAXLEN, approximate=True)
                    owners.append(i)
            results = await pipe.execute(raise_on_error=False)
        for i, result in zip(owners, results, strict=True):
            if isinstance(result, BaseException) and answers[i] is None:
                answers[i] = result
    return answers


_publish: Group[_Publication, None] = Group(_publications)


def _queued_entry(execution: ExecutionDocument) -> dict[str, Any]:
    return {
        "seq": 1,
        "type": "execution.queued",
        "status": ExecutionStatus.QUEUED.value,
        "at": execution.created_at,
        "data": {},
    }


def _stream_fields(entry: dict[str, Any], node: str | None) -> dict[FieldT, EncodableT]:
    """A log entry as an entry of the execution's live stream."""
    fields: dict[FieldT, EncodableT] = {
        "seq": entry["seq"],
        "type": entry["type"],
        "status": entry["status"],
        "at": entry["at"].isoformat(),
    }
    if node:
        fields["node"] = node
    response = ((entry["data"].get("engine") or {}).get("node_state") or {}).get("response")
    if response is not None:  # what a Respond to Webhook node answers
        fields["response"] = json.dumps(response)
    return fields


def _change_fields(
    execution: ExecutionDocument, status: ExecutionStatus
) -> dict[FieldT, EncodableT]:
    """An entry of the organization's changes stream."""
    return {
        "execution": str(execution.id),
        "workflow": str(execution.workflow_id),
        "status": status.value,
        "at": now().isoformat(),
    }


def _flat(fields: dict[FieldT, EncodableT]) -> list[EncodableT]:
    return [part for pair in fields.items() for part in pair]


execution = ExecutionService()
