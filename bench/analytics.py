"""Execution analytics at scale: how fast the rollup counts finished executions, what an
idle pass costs, and how long the analytics queries take over a month of them.

Starts embedded MongoDB and PostgreSQL (no subgraphs, router or worker), brings the AI
database to head, writes N finished executions straight into MongoDB (spread over 30
days, 200 workflows, three modes, 94% succeeded, 5% failed, 1% cancelled, durations from
5 ms to a minute) and then calls the analytics service as the worker's cron and the
`analytics` resolver do:

- the backfill: one rollup pass over all N (executions counted per second);
- idle passes (nothing new) and passes after 1,000 more finished;
- `execution_stats` over 30 and 366 days by DAY, WORKFLOW, DAY_AND_WORKFLOW and MODE.

    .venv/bin/python bench/analytics.py [--executions 200000] [--repeat 20]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bson import ObjectId
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, create_async_engine

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from klikkflow.kit import migrations  # noqa: E402
from klikkflow.kit.settings import PlatformSettings  # noqa: E402
from klikkflow.kit.stores import init_mongo  # noqa: E402
from klikkflow.kit.supervisor import Supervisor, free_port  # noqa: E402
from klikkflow.platform import start_stores  # noqa: E402
from subgraphs.ai.analytics import GroupBy, analytics  # noqa: E402
from subgraphs.executions.models import DOCUMENTS, ExecutionDocument  # noqa: E402

DAYS = 30
WORKFLOWS = 200
BATCH = 5_000
MODES = ("webhook", "schedule", "manual")


def _execution(rng: random.Random, org: ObjectId, workflows: list[ObjectId], at: datetime) -> dict:
    roll = rng.random()
    status = "succeeded" if roll < 0.94 else "failed" if roll < 0.99 else "cancelled"
    duration = timedelta(milliseconds=int(5 * 12_000 ** rng.random()))  # 5 ms to 1 min
    return {
        "organization_id": org,
        "workflow_id": rng.choice(workflows),
        "mode": rng.choice(MODES),
        "status": status,
        "created_at": at - duration,
        "started_at": at - duration,
        "finished_at": at,
    }


async def _fill(org: ObjectId, total: int, since: datetime, span: timedelta) -> None:
    rng = random.Random(7)
    workflows = [ObjectId() for _ in range(WORKFLOWS)]
    collection = ExecutionDocument.get_pymongo_collection()
    for done in range(0, total, BATCH):
        count = min(BATCH, total - done)
        docs = [
            _execution(rng, org, workflows, since + span * ((done + i) / total))
            for i in range(count)
        ]
        await collection.insert_many(docs, ordered=False)


async def _timed(repeat: int, call: Callable[[], Awaitable[Any]]) -> list[float]:
    times = []
    for _ in range(repeat):
        began = time.perf_counter()
        await call()
        times.append((time.perf_counter() - began) * 1000)
    return times


def _row(name: str, times: list[float]) -> str:
    times = sorted(times)
    p95 = times[min(len(times) - 1, int(len(times) * 0.95))]
    return f"| {name} | {statistics.median(times):.1f} | {p95:.1f} | {times[-1]:.1f} |"


async def _queries(engine: AsyncEngine, org: str, repeat: int) -> list[str]:
    today = datetime.now(UTC).date()
    rows = []
    for days in (30, 366):
        for group_by in GroupBy:

            async def query(group_by: GroupBy = group_by, days: int = days) -> None:
                async with AsyncSession(engine) as session:
                    await analytics.execution_stats(
                        session, org, today - timedelta(days=days - 1), today, group_by
                    )

            rows.append(_row(f"{days} days by {group_by.name}", await _timed(repeat, query)))
    return rows


async def main(total: int, repeat: int) -> None:
    with tempfile.TemporaryDirectory(prefix="klikkflow-bench-analytics-") as data_dir:
        ports = {f"{n}_port": free_port() for n in ("mongo", "postgres", "redis")}
        settings = PlatformSettings(data_dir=Path(data_dir), mongo_db="bench", **ports)
        supervisor = Supervisor(Path(data_dir) / "logs")
        try:
            stores = await start_stores(supervisor, settings, persist=False)
            await migrations.upgrade(stores.database_url)
            mongo = await init_mongo(stores.mongo_uri, "bench", DOCUMENTS)
            engine = create_async_engine(stores.database_url)
            try:
                await _run(engine, total, repeat)
            finally:
                await engine.dispose()
                await mongo.close()
        finally:
            await supervisor.stop_all()


async def _run(engine: AsyncEngine, total: int, repeat: int) -> None:
    org = ObjectId()
    now = datetime.now(UTC)
    began = time.perf_counter()
    await _fill(org, total, now - timedelta(days=DAYS), timedelta(days=DAYS) - timedelta(minutes=1))
    print(f"stored {total:,} finished executions in {time.perf_counter() - began:.1f} s")  # noqa: T201

    began = time.perf_counter()
    counted = await analytics.rollup(engine)
    seconds = time.perf_counter() - began
    assert counted == total, (counted, total)
    print(f"backfill: {counted:,} counted in {seconds:.1f} s ({counted / seconds:,.0f}/s)")  # noqa: T201

    rows = ["| pass or query | p50 ms | p95 ms | max ms |", "|---|---|---|---|"]
    rows.append(_row("idle rollup pass", await _timed(repeat, lambda: analytics.rollup(engine))))

    after_more = []
    for _ in range(5):
        await _fill(org, 1_000, datetime.now(UTC) - timedelta(seconds=5), timedelta(seconds=4))
        after_more += await _timed(1, lambda: analytics.rollup(engine))
    rows.append(_row("pass after 1,000 more finished", after_more))
    rows += await _queries(engine, str(org), repeat)
    print("\n".join(rows))  # noqa: T201


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--executions", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args()
    asyncio.run(main(args.executions, args.repeat))
