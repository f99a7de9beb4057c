"""Group commit: the MongoDB writes and reads of many executions in one round trip each.

Every execution's checkpoints (a page of its log, then its new status), every new
execution and every read of an execution by a worker go through here (and, with the
same Group, the Redis publications of the events those checkpoints wrote: see
service.publish_many). A caller waits for its own write as before, but while one group
is on its way to MongoDB the next one gathers, so under load a round trip carries the
work of every execution that reached a checkpoint meanwhile, and with no load nothing
waits at all. The store pays per round trip far more than per document (measured on
the embedded store: an insert of 50 documents costs what 12 single inserts cost)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from bson import ObjectId
from pymongo import UpdateOne
from pymongo.errors import BulkWriteError

from subgraphs.executions.models import ExecutionDocument, ExecutionLogDocument

T = TypeVar("T")
R = TypeVar("R")
MAX_GROUP = 500


@dataclass
class _Waiting(Generic[T, R]):
    work: T
    done: asyncio.Future[R] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )


class Group(Generic[T, R]):
    """Queues work items; one task at a time hands everything queued so far to `run`,
    which answers for each item (a result or an exception) in order."""

    def __init__(self, run: Callable[[list[T]], Awaitable[list[R | BaseException]]]) -> None:
        self._run = run
        self._queued: list[_Waiting[T, R]] = []
        self._driver: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    async def __call__(self, work: T) -> R:
        loop = asyncio.get_running_loop()
        if self._loop is not loop:  # a new event loop (tests, a restarted worker)
            self._queued, self._driver, self._loop = [], None, loop
        waiting: _Waiting[T, R] = _Waiting(work)
        self._queued.append(waiting)
        if self._driver is None or self._driver.done():
            self._driver = loop.create_task(self._drive())
        return await waiting.done

    async def _drive(self) -> None:
        while self._queued:
            group, self._queued = self._queued[:MAX_GROUP], self._queued[MAX_GROUP:]
            try:
                answers = await self._run([w.work for w in group])
            except Exception as exc:  # the round trip failed as a whole
                answers = [exc] * len(group)
            for waiting, answer in zip(group, answers, strict=True):
                if waiting.done.done():  # its caller gave up (cancelled)
                    continue
                if isinstance(answer, BaseException):
                    waiting.done.set_exception(answer)
                else:
                    waiting.done.set_result(answer)


@dataclass(frozen=True)
class Checkpoint:
    """A page of one execution's log and, after it, the execution's changed fields."""

    page: dict[str, Any] | None
    execution_id: ObjectId | None = None
    fields: dict[str, Any] | None = None


def _failed_indexes(exc: BulkWriteError) -> dict[int, Exception]:
    return {
        error["index"]: BulkWriteError({"writeErrors": [error], "nInserted": 0})
        for error in exc.details.get("writeErrors", [])
    }


async def _checkpoints(group: list[Checkpoint]) -> list[None | BaseException]:
    answers: list[None | BaseException] = [None] * len(group)
    with_page = [i for i, c in enumerate(group) if c.page is not None]
    if with_page:  # the log first: whoever sees the new status finds its events
        try:
            await ExecutionLogDocument.get_pymongo_collection().insert_many(
                [group[i].page for i in with_page], ordered=False
            )
        except BulkWriteError as exc:
            for index, error in _failed_indexes(exc).items():
                answers[with_page[index]] = error
    updates = [i for i, c in enumerate(group) if c.fields is not None and answers[i] is None]
    if updates:
        try:
            await ExecutionDocument.get_pymongo_collection().bulk_write(
                [
                    UpdateOne({"_id": group[i].execution_id}, {"$set": group[i].fields})
                    for i in updates
                ],
                ordered=False,
            )
        except BulkWriteError as exc:
            for index, error in _failed_indexes(exc).items():
                answers[updates[index]] = error
    return answers


async def _inserts(group: list[dict[str, Any]]) -> list[None | BaseException]:
    answers: list[None | BaseException] = [None] * len(group)
    try:
        await ExecutionDocument.get_pymongo_collection().insert_many(group, ordered=False)
    except BulkWriteError as exc:
        for index, error in _failed_indexes(exc).items():
            answers[index] = error
    return answers


async def _reads(group: list[ObjectId]) -> list[dict[str, Any] | None | BaseException]:
    found = {
        doc["_id"]: doc
        async for doc in ExecutionDocument.get_pymongo_collection().find(
            {"_id": {"$in": list(set(group))}}
        )
    }
    return [found.get(i) for i in group]


checkpoint: Group[Checkpoint, None] = Group(_checkpoints)
insert_execution: Group[dict[str, Any], None] = Group(_inserts)
read_execution: Group[ObjectId, dict[str, Any] | None] = Group(_reads)
