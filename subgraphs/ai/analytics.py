"""Execution analytics: finished executions rolled up per organization, day, workflow and
mode in PostgreSQL, and the queries of the `analytics` and `tokenUsage` fields.

Feed. Executions live in MongoDB; a worker cron (`analytics.rollup`, every few seconds)
reads those that finished, by the `(finished_at, _id)` index, and adds them to
`execution_stats_daily`. MongoDB is the source, not the Redis change streams: a Redis
restart or a dead worker loses nothing, the next pass reads MongoDB again.

Exactly once. Every counted execution leaves its id in the ledger `analytics_executions`
in the same transaction that adds it to the rollup, and only the ids the ledger's
`INSERT ... ON CONFLICT DO NOTHING RETURNING` took are added. So reading an execution
twice, a job run twice, or two workers at once never count it twice. One pass at a time
(a transaction-level advisory lock per page) keeps the work from being done twice.

Missing none. A finish is written a moment after its `finished_at` (group commit, clocks
of several workers), and an execution whose worker died between its log and its status
is finished later by another one with its logged time. Two readers cover that: the
*recent* reader reads up to RECENT_LAG before the pass (the usual lag of a write: a group
commit, clocks a little apart), so analytics trail the executions by that and a pass,
and reads each execution once; the *trailing* reader reads every finish once more
TRAIL_DELAY later, so a finish written up to TRAIL_DELAY late is still counted. (The
recent reader used to read up to the pass and go back 2 s each time: it read every
execution 1.7 times, in bursts that, on the embedded store, held up the writes around
them: bench A's p95 was 1.6 times its mean latency, now 1.5.) The ledger keeps ids
LEDGER_MARGIN beyond what either reader can read again, then forgets them. A finish
written later than that is not counted.

Durations are wall time from start to finish (waits included), kept as a sum, a maximum
and a histogram of log-spaced buckets from which percentiles are estimated.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from enum import StrEnum
from typing import Any

from bson import ObjectId
from sqlalchemy import (
    BigInteger,
    Column,
    Date,
    DateTime,
    Index,
    func,
    select,
    text,
    tuple_,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession
from sqlmodel import Field, SQLModel

from klikkflow.kit.errors import InvalidInput
from subgraphs.executions.models import TERMINAL, ExecutionDocument

PAGE = 1_000
FIRST_WINDOW = timedelta(minutes=1)
MIN_WINDOW = timedelta(milliseconds=100)
RECENT_LAG = timedelta(seconds=2)
TRAIL_DELAY = timedelta(hours=6)
LEDGER_MARGIN = timedelta(days=1)
MAX_RANGE_DAYS = 366
#: pg_try_advisory_xact_lock key of the rollup ("kfanalyt" as a number).
LOCK_KEY = 0x6B66616E616C7974
RECENT, TRAILING = "executions.recent", "executions.trailing"
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
FINISHED = [status.value for status in TERMINAL]
MAX_MODE_LENGTH = 40

#: Upper bounds (ms, inclusive) of the duration histogram's buckets; one more bucket holds
#: the longer ones. Append only: rows already stored keep their meaning.
BUCKET_BOUNDS_MS = (
    10, 25, 50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 30_000, 60_000,
    300_000, 900_000, 3_600_000, 21_600_000, 86_400_000,
)  # fmt: skip
BUCKETS = len(BUCKET_BOUNDS_MS) + 1


def _now() -> datetime:
    return datetime.now(UTC)


# ---- tables ----------------------------------------------------------------------------------


class AnalyticsExecution(SQLModel, table=True):
    """The ledger: one row per execution counted in the rollup."""

    __tablename__ = "analytics_executions"
    __table_args__ = (Index("ix_analytics_executions_finished_at", "finished_at"),)

    execution_id: str = Field(primary_key=True, max_length=64)
    organization_id: str = Field(max_length=64)
    finished_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))


class ExecutionStatsDaily(SQLModel, table=True):
    """Finished executions of one workflow, mode and UTC day (of their finish)."""

    __tablename__ = "execution_stats_daily"

    organization_id: str = Field(primary_key=True, max_length=64)
    day: date = Field(sa_column=Column(Date, primary_key=True))
    workflow_id: str = Field(primary_key=True, max_length=64)
    mode: str = Field(primary_key=True, max_length=MAX_MODE_LENGTH)
    executions: int = Field(default=0, sa_column=Column(BigInteger, nullable=False))
    succeeded: int = Field(default=0, sa_column=Column(BigInteger, nullable=False))
    failed: int = Field(default=0, sa_column=Column(BigInteger, nullable=False))
    cancelled: int = Field(default=0, sa_column=Column(BigInteger, nullable=False))
    # Executions with a duration (one cancelled before it started has none).
    timed: int = Field(default=0, sa_column=Column(BigInteger, nullable=False))
    duration_ms_sum: int = Field(default=0, sa_column=Column(BigInteger, nullable=False))
    duration_ms_max: int = Field(default=0, sa_column=Column(BigInteger, nullable=False))
    duration_buckets: list[int] = Field(sa_column=Column(ARRAY(BigInteger), nullable=False))
    updated_at: datetime = Field(
        default_factory=_now, sa_column=Column(DateTime(timezone=True), nullable=False)
    )


class AnalyticsCursor(SQLModel, table=True):
    """How far a reader of finished executions got: `(at, last_id)` in `(finished_at, _id)`
    order."""

    __tablename__ = "analytics_cursors"

    name: str = Field(primary_key=True, max_length=64)
    at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
    last_id: str = Field(default="", max_length=64)


LEDGER = AnalyticsExecution.__table__  # type: ignore[attr-defined]
CURSORS = AnalyticsCursor.__table__  # type: ignore[attr-defined]

_TOTALS = (
    "executions", "succeeded", "failed", "cancelled", "timed", "duration_ms_sum",
    "duration_ms_max",
)  # fmt: skip
_SUMMED = ("executions", "succeeded", "failed", "cancelled", "timed", "duration_ms_sum")
# Statements of arrays (one parameter per column, not per row): SQLAlchemy compiles a
# multi-row VALUES anew for every page, which cost more than the database's work.
_TAKE = text(
    "INSERT INTO analytics_executions (execution_id, organization_id, finished_at)"
    " SELECT * FROM unnest(CAST(:ids AS varchar[]), CAST(:orgs AS varchar[]),"
    " CAST(:ats AS timestamptz[])) AS t(id, org, at) ORDER BY id"
    " ON CONFLICT (execution_id) DO NOTHING RETURNING execution_id"
)
_KEYS = ("organization_id", "day", "workflow_id", "mode")
_ADD = text(
    "INSERT INTO execution_stats_daily (organization_id, day, workflow_id, mode, "
    + ", ".join(_SUMMED)
    + ", duration_ms_max, duration_buckets, updated_at)"
    " SELECT organization_id, day, workflow_id, mode, "
    + ", ".join(_SUMMED)
    + ", duration_ms_max, duration_buckets::bigint[], now() FROM unnest("
    "CAST(:organization_id AS varchar[]), CAST(:day AS date[]), CAST(:workflow_id AS varchar[]),"
    " CAST(:mode AS varchar[]), "
    + ", ".join(f"CAST(:{name} AS bigint[])" for name in _SUMMED)
    + ", CAST(:duration_ms_max AS bigint[]), CAST(:duration_buckets AS text[]))"
    " AS t(organization_id, day, workflow_id, mode, "
    + ", ".join(_SUMMED)
    + ", duration_ms_max, duration_buckets) ORDER BY organization_id, day, workflow_id, mode"
    " ON CONFLICT (organization_id, day, workflow_id, mode) DO UPDATE SET "
    + ", ".join(f"{name} = execution_stats_daily.{name} + excluded.{name}" for name in _SUMMED)
    + ", duration_ms_max = greatest(execution_stats_daily.duration_ms_max,"
    " excluded.duration_ms_max),"
    # Element-wise sum of the stored and the added histogram (arrays of unequal length pad).
    " duration_buckets = ARRAY(SELECT coalesce(a, 0) + coalesce(b, 0) FROM unnest("
    "execution_stats_daily.duration_buckets, excluded.duration_buckets)"
    " WITH ORDINALITY AS u(a, b, i) ORDER BY i), updated_at = excluded.updated_at"
)


# ---- what is counted -------------------------------------------------------------------------


def bucket(duration_ms: int) -> int:
    """The histogram bucket of a duration."""
    return bisect.bisect_left(BUCKET_BOUNDS_MS, duration_ms)


@dataclass(frozen=True)
class Finished:
    """A finished execution as the rollup counts it."""

    execution_id: str
    organization_id: str
    workflow_id: str
    mode: str
    status: str
    finished_at: datetime
    duration_ms: int | None  # None: it never started

    @classmethod
    def from_document(cls, doc: dict[str, Any]) -> Finished:
        finished_at: datetime = doc["finished_at"]
        started_at: datetime | None = doc.get("started_at")
        duration = None
        if started_at is not None:  # clocks of two workers may disagree a little
            duration = max(0, (finished_at - started_at) // timedelta(milliseconds=1))
        return cls(
            execution_id=str(doc["_id"]),
            organization_id=str(doc["organization_id"]),
            workflow_id=str(doc["workflow_id"]),
            mode=str(doc.get("mode") or "manual")[:MAX_MODE_LENGTH],
            status=str(doc["status"]),
            finished_at=finished_at,
            duration_ms=duration,
        )

    @property
    def key(self) -> tuple[str, date, str, str]:
        day = self.finished_at.astimezone(UTC).date()
        return (self.organization_id, day, self.workflow_id, self.mode)


@dataclass
class Stats:
    """Counts and durations of a set of finished executions."""

    executions: int = 0
    succeeded: int = 0
    failed: int = 0
    cancelled: int = 0
    timed: int = 0
    duration_ms_sum: int = 0
    duration_ms_max: int = 0
    buckets: list[int] = field(default_factory=lambda: [0] * BUCKETS)

    def count(self, execution: Finished) -> None:
        self.executions += 1
        if execution.status in ("succeeded", "failed", "cancelled"):
            setattr(self, execution.status, getattr(self, execution.status) + 1)
        if execution.duration_ms is not None:
            self.timed += 1
            self.duration_ms_sum += execution.duration_ms
            self.duration_ms_max = max(self.duration_ms_max, execution.duration_ms)
            self.buckets[bucket(execution.duration_ms)] += 1

    def add(self, other: Stats) -> None:
        for name in _SUMMED:
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.duration_ms_max = max(self.duration_ms_max, other.duration_ms_max)
        width = max(len(self.buckets), len(other.buckets))
        mine, theirs = self.buckets, other.buckets
        self.buckets = [
            (mine[i] if i < len(mine) else 0) + (theirs[i] if i < len(theirs) else 0)
            for i in range(width)
        ]

    @property
    def failure_rate(self) -> float | None:
        return self.failed / self.executions if self.executions else None

    @property
    def avg_duration_ms(self) -> float | None:
        return self.duration_ms_sum / self.timed if self.timed else None

    @property
    def max_duration_ms(self) -> float | None:
        return float(self.duration_ms_max) if self.timed else None

    def percentile(self, q: float) -> float | None:
        """The q-quantile of the durations, interpolated within its histogram bucket and
        never beyond the longest duration."""
        total = sum(self.buckets)
        if not total:
            return None
        rank, below = q * total, 0
        for index, count in enumerate(self.buckets):
            if count and below + count >= rank:
                top = BUCKET_BOUNDS_MS[index] if index < len(BUCKET_BOUNDS_MS) else math.inf
                upper = min(float(top), float(self.duration_ms_max))
                lower = min(float(BUCKET_BOUNDS_MS[index - 1]) if index else 0.0, upper)
                return lower + (upper - lower) * (rank - below) / count
            below += count
        return float(self.duration_ms_max)


# ---- the rollup ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Position:
    """Where a reader stands: finishes at `at` and after (no id), or after `(at, id)`."""

    at: datetime
    last_id: str = ""


_FIELDS = dict.fromkeys(
    ("organization_id", "workflow_id", "mode", "status", "started_at", "finished_at"), 1
)


async def _find(query: dict[str, Any], size: int) -> list[dict[str, Any]]:
    found = (
        ExecutionDocument.get_pymongo_collection()
        .find(query, _FIELDS)
        .sort([("finished_at", 1), ("_id", 1)])
        .limit(size)
    )
    return await found.to_list(size)


async def finished_page(
    after: Position, before: datetime, size: int = PAGE
) -> list[dict[str, Any]]:
    """Up to `size` executions that finished after `after` and before `before`, in
    `(finished_at, _id)` order. Each query is one range of the `(finished_at, _id)` index
    (no `$or`, no other field): the embedded store fetches and sorts a whole range."""
    if after.at >= before:
        return []
    docs: list[dict[str, Any]] = []
    lower = {"$gte": after.at}
    if after.last_id:  # the rest of a finish time's ties first
        ties = {"finished_at": after.at, "_id": {"$gt": ObjectId(after.last_id)}}
        docs, lower = await _find(ties, size), {"$gt": after.at}
    if len(docs) < size:
        docs += await _find({"finished_at": {**lower, "$lt": before}}, size - len(docs))
    return docs


async def finished_pages(
    start: Position, end: datetime, size: int = PAGE
) -> AsyncIterator[tuple[list[Finished], Position]]:
    """The executions that finished from `start` to `end`, a page at a time, each with
    the position after it. Pages are read through windows of finish times that grow while
    they hold less than a page and shrink when full, so a query never reads much more
    than a page, whether a pass catches up on years or reads the last seconds."""
    position, window = start, FIRST_WINDOW
    while position.at < end:
        stop = min(position.at + window, end)
        docs = await finished_page(position, stop, size)
        if len(docs) == size:
            position = Position(docs[-1]["finished_at"], str(docs[-1]["_id"]))
            window = max(window / 2, MIN_WINDOW)
        else:
            position, window = Position(stop), window * 2
        finished = [Finished.from_document(d) for d in docs if d.get("status") in FINISHED]
        yield finished, position


def _deltas(counted: Sequence[Finished]) -> dict[str, list[Any]]:
    """What `counted` adds to each row of the rollup, as one array per column."""
    grouped: dict[tuple[str, date, str, str], Stats] = {}
    for execution in counted:
        grouped.setdefault(execution.key, Stats()).count(execution)
    columns: dict[str, list[Any]] = {name: [] for name in (*_KEYS, *_TOTALS, "duration_buckets")}
    for key, stats in grouped.items():
        for name, value in zip(_KEYS, key, strict=True):
            columns[name].append(value)
        for name in _TOTALS:
            columns[name].append(getattr(stats, name))
        columns["duration_buckets"].append("{" + ",".join(map(str, stats.buckets)) + "}")
    return columns


async def _set_cursor(conn: AsyncConnection, name: str, to: Position) -> None:
    """Move a reader forward (never back: a slower pass may commit after a faster one)."""
    stmt = pg_insert(CURSORS).values(name=name, at=to.at, last_id=to.last_id)
    stmt = stmt.on_conflict_do_update(
        index_elements=[CURSORS.c.name],
        set_={"at": stmt.excluded.at, "last_id": stmt.excluded.last_id},
        where=tuple_(CURSORS.c.at, CURSORS.c.last_id)
        < tuple_(stmt.excluded.at, stmt.excluded.last_id),
    )
    await conn.execute(stmt)


class AnalyticsService:
    async def count(self, conn: AsyncConnection, executions: Sequence[Finished]) -> int:
        """Add to the rollup those of `executions` not counted yet, in the caller's
        transaction; how many were added. Safe to call with the same executions twice or
        from two transactions at once: the ledger's primary key lets each in once."""
        if not executions:
            return 0
        unique = {e.execution_id: e for e in executions}
        mine = [unique[i] for i in sorted(unique)]  # in id order: one lock order for all
        taken = await conn.scalars(
            _TAKE,
            {
                "ids": [e.execution_id for e in mine],
                "orgs": [e.organization_id for e in mine],
                "ats": [e.finished_at for e in mine],
            },
        )
        new = [unique[execution_id] for execution_id in taken]
        if not new:
            return 0
        await conn.execute(_ADD, _deltas(new))
        return len(new)

    async def rollup(self, engine: AsyncEngine, page_size: int = PAGE) -> int:
        """One pass of both readers, a page of `page_size` executions per transaction; how
        many executions it counted. A pass that finds another one at work stops and leaves
        it to that one."""
        started = _now()
        recent, trailing = await self._cursors(engine, started)
        counted = 0
        readers = (
            (RECENT, recent, started - RECENT_LAG),
            (TRAILING, trailing, started - TRAIL_DELAY),
        )
        for reader, start, end in readers:
            position = start
            async for page, position in finished_pages(start, end, page_size):
                if not page:
                    continue
                done = await self._commit(engine, page, reader, position)
                if done is None:
                    return counted
                counted += done
            # Where the reader got, also through windows with nothing in them.
            if position != start and await self._commit(engine, [], reader, position) is None:
                return counted
            if reader == TRAILING:
                trailing = position
        await self._forget(engine, min(trailing.at, recent.at) - LEDGER_MARGIN)
        return counted

    async def _cursors(self, engine: AsyncEngine, now: datetime) -> tuple[Position, Position]:
        """Where the readers stand. The first pass starts the recent reader at the oldest
        finish (counting what finished before analytics existed) and the trailing one at
        this pass, kept from the start so none is skipped while it waits for its delay."""
        async with engine.begin() as conn:
            initial = [
                {"name": RECENT, "at": EPOCH, "last_id": ""},
                {"name": TRAILING, "at": now - TRAIL_DELAY, "last_id": ""},
            ]
            await conn.execute(pg_insert(CURSORS).values(initial).on_conflict_do_nothing())
            rows = await conn.execute(select(CURSORS.c.name, CURSORS.c.at, CURSORS.c.last_id))
            found = {name: Position(at, last_id) for name, at, last_id in rows}
        return found[RECENT], found[TRAILING]

    async def _commit(
        self, engine: AsyncEngine, page: list[Finished], reader: str, to: Position
    ) -> int | None:
        """Count a page and move its reader, in one transaction; None when another pass
        holds the lock."""
        async with engine.begin() as conn:
            if not await conn.scalar(select(func.pg_try_advisory_xact_lock(LOCK_KEY))):
                return None
            done = await self.count(conn, page)
            await _set_cursor(conn, reader, to)
            return done

    async def _forget(self, engine: AsyncEngine, before: datetime) -> None:
        """Drop ledger rows no reader can read again."""
        async with engine.begin() as conn:
            await conn.execute(LEDGER.delete().where(LEDGER.c.finished_at < before))

    # ---- queries -----------------------------------------------------------------------------

    async def execution_stats(
        self,
        session: AsyncSession,
        organization_id: str,
        since: date,
        until: date,
        group_by: GroupBy,
        workflow_id: str | None = None,
    ) -> list[StatsRow]:
        """One organization's finished executions from `since` to `until` (UTC days, both
        included) by `group_by`; grouped by day, every day of the range has a row."""
        check_range(since, until)
        keys = _STATS_KEYS[group_by]
        where = "organization_id = :org AND day BETWEEN :since AND :until"
        params: dict[str, Any] = {"org": organization_id, "since": since, "until": until}
        if workflow_id is not None:
            where += " AND workflow_id = :workflow"
            params["workflow"] = workflow_id
        group = ", ".join(keys)
        buckets = ", ".join(f"sum(duration_buckets[{i}])" for i in range(1, BUCKETS + 1))
        result = await session.execute(
            text(
                f"SELECT {group}, sum(executions), sum(succeeded), sum(failed), sum(cancelled),"
                f" sum(timed), sum(duration_ms_sum), max(duration_ms_max), {buckets}"
                f" FROM execution_stats_daily WHERE {where} GROUP BY {group}"
            ),
            params,
        )
        found: dict[tuple[Any, ...], Stats] = {}
        width, counts = len(keys), len(keys) + len(_TOTALS)
        for row in result:
            stats = found[tuple(row[:width])] = Stats()
            for name, value in zip(_TOTALS, row[width:counts], strict=True):
                setattr(stats, name, int(value))
            stats.buckets = [int(n or 0) for n in row[counts:]]  # NULL: a bucket added later
        rows = [StatsRow.of(keys, key, stats) for key, stats in found.items()]
        if group_by == GroupBy.DAY:
            seen = {r.day for r in rows}
            rows += [StatsRow(day=d, stats=Stats()) for d in _days(since, until) if d not in seen]
        return sorted(rows, key=_STATS_ORDER[group_by])

    async def token_usage(
        self,
        session: AsyncSession,
        organization_id: str,
        since: date,
        until: date,
        group_by: TokenGroupBy,
        workflow_id: str | None = None,
    ) -> list[TokenRow]:
        """Tokens the organization's language-model calls used from `since` to `until`
        (UTC days, both included) by `group_by`; by day, every day of the range has a row."""
        check_range(since, until)
        keys = _TOKEN_KEYS[group_by]
        start = datetime.combine(since, datetime.min.time(), UTC)
        end = datetime.combine(until + timedelta(days=1), datetime.min.time(), UTC)
        where = "organization_id = :org AND at >= :start AND at < :end"
        params: dict[str, Any] = {"org": organization_id, "start": start, "end": end}
        if workflow_id is not None:
            where += " AND workflow_id = :workflow"
            params["workflow"] = workflow_id
        group = ", ".join(keys)
        selected = ", ".join(f"{_TOKEN_COLUMNS[k]} AS {k}" for k in keys)
        result = await session.execute(
            text(
                f"SELECT {selected}, sum(input_tokens), sum(output_tokens), sum(calls)"
                f" FROM ai_token_usage WHERE {where} GROUP BY {group}"
            ),
            params,
        )
        width = len(keys)
        rows = [
            TokenRow(
                **dict(zip(keys, row[:width], strict=True)),
                input_tokens=int(row[width]),
                output_tokens=int(row[width + 1]),
                calls=int(row[width + 2]),
            )
            for row in result
        ]
        if group_by == TokenGroupBy.DAY:
            seen = {r.day for r in rows}
            rows += [TokenRow(day=d) for d in _days(since, until) if d not in seen]
            return sorted(rows, key=lambda r: r.day or since)
        return sorted(rows, key=lambda r: (-r.total_tokens, r.model or "", r.workflow_id or ""))


# ---- query shapes ----------------------------------------------------------------------------


class GroupBy(StrEnum):
    DAY = "day"
    WORKFLOW = "workflow"
    DAY_AND_WORKFLOW = "day_and_workflow"
    MODE = "mode"


class TokenGroupBy(StrEnum):
    DAY = "day"
    MODEL = "model"
    WORKFLOW = "workflow"


_STATS_KEYS: dict[GroupBy, tuple[str, ...]] = {
    GroupBy.DAY: ("day",),
    GroupBy.WORKFLOW: ("workflow_id",),
    GroupBy.DAY_AND_WORKFLOW: ("day", "workflow_id"),
    GroupBy.MODE: ("mode",),
}
_TOKEN_KEYS: dict[TokenGroupBy, tuple[str, ...]] = {
    TokenGroupBy.DAY: ("day",),
    TokenGroupBy.MODEL: ("provider", "model"),
    TokenGroupBy.WORKFLOW: ("workflow_id",),
}
_TOKEN_COLUMNS = {
    "day": "(at AT TIME ZONE 'UTC')::date",
    "provider": "provider",
    "model": "model",
    "workflow_id": "workflow_id",
}


@dataclass
class StatsRow:
    stats: Stats
    day: date | None = None
    workflow_id: str | None = None
    mode: str | None = None

    @classmethod
    def of(cls, keys: tuple[str, ...], values: tuple[Any, ...], stats: Stats) -> StatsRow:
        return cls(stats=stats, **dict(zip(keys, values, strict=True)))


def _by_volume(row: StatsRow) -> tuple[Any, ...]:
    return (-row.stats.executions, row.workflow_id or "", row.mode or "")


_STATS_ORDER: dict[GroupBy, Any] = {
    GroupBy.DAY: lambda r: r.day,
    GroupBy.WORKFLOW: _by_volume,
    GroupBy.DAY_AND_WORKFLOW: lambda r: (r.day, *_by_volume(r)),
    GroupBy.MODE: _by_volume,
}


@dataclass
class TokenRow:
    day: date | None = None
    provider: str | None = None
    model: str | None = None
    workflow_id: str | None = None
    input_tokens: int = 0
    output_tokens: int = 0
    calls: int = 0

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens


def check_range(since: date, until: date) -> None:
    if until < since:
        raise InvalidInput({"to": "is before from"})
    if (until - since).days + 1 > MAX_RANGE_DAYS:
        raise InvalidInput({"to": f"the range is at most {MAX_RANGE_DAYS} days"})


def _days(since: date, until: date) -> list[date]:
    return [since + timedelta(days=n) for n in range((until - since).days + 1)]


analytics = AnalyticsService()
