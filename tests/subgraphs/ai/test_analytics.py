"""Execution analytics and token usage through the router: the worker's rollup counts
every finished execution once (passes run twice or at once, readers rewound, a finish
written hours late), by day, workflow and mode, for its organization only."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta
from statistics import mean
from typing import Any

import pytest
from beanie import PydanticObjectId
from bson import ObjectId
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from klikkflow.ai.embeddings import embedder_from_settings
from klikkflow.ai.runtime import UsageRecord
from klikkflow.kit.settings import EmbeddingSettings
from klikkflow.kit.stores import init_mongo
from subgraphs.ai.analytics import TRAIL_DELAY, Finished, Position, analytics, finished_pages
from subgraphs.ai.runtime import PostgresAiServices
from subgraphs.executions.models import DOCUMENTS, ExecutionDocument, ExecutionStatus
from tests.factories.executions import start_run, wait_for_status
from tests.factories.graphql import data, gql
from tests.factories.identity import Account, sign_up
from tests.factories.workflows import chain, create_workflow, link, node

STATS = """fragment S on ExecutionStats { executions succeeded failed cancelled failureRate
  avgDurationMs p50DurationMs p95DurationMs maxDurationMs }"""
ANALYTICS = (
    """query ($input: AnalyticsInput!) { analytics(input: $input) { __typename
  ... on ExecutionAnalytics { from to groupBy
    rows { day workflow { id } mode stats { ...S } } totals { ...S } }
  ... on ValidationError { message fields { path message } } } }"""
    + STATS
)
TOKENS = """query ($input: TokenUsageInput!) { tokenUsage(input: $input) { __typename
  ... on TokenUsageReport { from to groupBy
    rows { day provider model workflow { id } inputTokens outputTokens totalTokens calls }
    totals { inputTokens outputTokens totalTokens calls } }
  ... on ValidationError { fields { path message } } } }"""


@pytest.fixture(scope="module")
async def engine(platform) -> AsyncIterator[AsyncEngine]:
    engine = create_async_engine(platform.database_url)
    yield engine
    await engine.dispose()


@pytest.fixture(scope="module")
async def mongo(platform) -> AsyncIterator[None]:
    client = await init_mongo(platform.mongo_uri, platform.settings.mongo_db, DOCUMENTS)
    yield
    await client.close()


async def analytics_of(
    client, platform, account: Account, since: date, until: date, **more: Any
) -> dict[str, Any]:
    variables = {"input": {"from": since.isoformat(), "to": until.isoformat(), **more}}
    found = data(await gql(client, platform.router_url, ANALYTICS, variables, account.token))
    result: dict[str, Any] = found["analytics"]
    return result


async def counted(
    client, platform, account: Account, day: date, executions: int, seconds: float = 30
) -> dict[str, Any]:
    """The day's analytics once the rollup has counted `executions` of them."""
    found: dict[str, Any] = {}
    for _ in range(int(seconds / 0.25)):
        found = await analytics_of(client, platform, account, day, day)
        if found["totals"]["executions"] >= executions:
            return found
        await asyncio.sleep(0.25)
    raise AssertionError(f"the rollup never counted {executions} executions: {found}")


async def cursor_at(engine, reader: str) -> datetime | None:
    """Where a reader of the rollup stands (`executions.recent` or `.trailing`)."""
    async with engine.connect() as conn:
        return await conn.scalar(
            text("SELECT at FROM analytics_cursors WHERE name = :name"), {"name": reader}
        )


async def insert_finished(account: Account, finished_at: datetime) -> None:
    """A succeeded execution of `account` that ran the second before `finished_at`,
    written straight to MongoDB (as a finish stored late would be)."""
    await ExecutionDocument(
        organization_id=PydanticObjectId(account.organization_id),
        workflow_id=PydanticObjectId(),
        status=ExecutionStatus.SUCCEEDED,
        created_at=finished_at - timedelta(seconds=2),
        started_at=finished_at - timedelta(seconds=1),
        finished_at=finished_at,
    ).insert()


async def durations_ms(execution_ids: list[str]) -> list[int]:
    """Start to finish of executions, as stored (what the rollup reads)."""
    found = []
    for execution_id in execution_ids:
        doc = await ExecutionDocument.get(PydanticObjectId(execution_id))
        assert doc is not None
        assert doc.started_at
        assert doc.finished_at
        found.append((doc.finished_at - doc.started_at) // timedelta(milliseconds=1))
    return found


def failing() -> dict[str, Any]:
    stop = node("Stop", "stopAndError", parameters={"errorMessage": "no"})
    return {"nodes": [node("Start", "manualTrigger"), stop], "connections": [link("Start", "Stop")]}


async def test_finished_executions_are_counted_by_workflow_day_and_mode(platform, client, mongo):
    alice = await sign_up(client, platform.router_url, "Analytics Alice")
    bob = await sign_up(client, platform.router_url, "Analytics Bob")
    good = await create_workflow(client, platform.router_url, alice, "Good", chain("A", "B"))
    bad = await create_workflow(client, platform.router_url, alice, "Bad", failing())
    ids = [await start_run(client, platform.router_url, alice, good) for _ in range(3)]
    ids += [await start_run(client, platform.router_url, alice, bad) for _ in range(2)]
    runs = [await wait_for_status(client, platform.router_url, alice, i) for i in ids]
    assert [r["status"] for r in runs] == ["SUCCEEDED"] * 3 + ["FAILED"] * 2
    durations = await durations_ms(ids)
    docs = [await ExecutionDocument.get(PydanticObjectId(i)) for i in ids]
    days = {d.finished_at.astimezone(UTC).date() for d in docs if d and d.finished_at}
    today = max(days)

    found = await counted(client, platform, alice, today, 5)  # the worker's cron
    totals = found["totals"]
    assert (totals["executions"], totals["succeeded"], totals["failed"]) == (5, 3, 2)
    assert totals["cancelled"] == 0
    assert totals["failureRate"] == 0.4
    assert totals["avgDurationMs"] == round(mean(durations), 3)
    assert totals["maxDurationMs"] == max(durations)
    assert 0 <= totals["p50DurationMs"] <= totals["p95DurationMs"] <= max(durations)

    by_workflow = await analytics_of(
        client, platform, alice, today, today, groupBy="WORKFLOW"
    )  # fmt: skip
    rows = {r["workflow"]["id"]: r["stats"] for r in by_workflow["rows"]}
    assert set(rows) == {good, bad}
    assert (rows[good]["executions"], rows[good]["failed"], rows[good]["failureRate"]) == (3, 0, 0)
    assert (rows[bad]["executions"], rows[bad]["failed"], rows[bad]["failureRate"]) == (2, 2, 1)
    assert rows[good]["maxDurationMs"] == max(durations[:3])
    assert [r["workflow"]["id"] for r in by_workflow["rows"]] == [good, bad]  # most first

    week = await analytics_of(client, platform, alice, today - timedelta(days=6), today)
    assert [r["day"] for r in week["rows"]] == [
        (today - timedelta(days=n)).isoformat() for n in range(6, -1, -1)
    ]
    assert [r["stats"]["executions"] for r in week["rows"]] == [0] * 6 + [5]
    assert week["rows"][0]["stats"]["failureRate"] is None
    assert week["totals"]["executions"] == 5

    both = await analytics_of(client, platform, alice, today, today, groupBy="DAY_AND_WORKFLOW")
    assert [(r["day"], r["workflow"]["id"], r["stats"]["executions"]) for r in both["rows"]] == [
        (today.isoformat(), good, 3),
        (today.isoformat(), bad, 2),
    ]
    modes = await analytics_of(client, platform, alice, today, today, groupBy="MODE")
    assert [(r["mode"], r["stats"]["executions"]) for r in modes["rows"]] == [("manual", 5)]
    only_bad = await analytics_of(client, platform, alice, today, today, workflowId=bad)
    assert only_bad["totals"]["executions"] == 2

    yesterday = today - timedelta(days=1)
    before = await analytics_of(client, platform, alice, yesterday - timedelta(days=3), yesterday)
    assert before["totals"]["executions"] == 0

    theirs = await analytics_of(client, platform, bob, today, today, groupBy="WORKFLOW")
    assert theirs["rows"] == []
    assert theirs["totals"]["executions"] == 0
    filtered = await analytics_of(client, platform, bob, today, today, workflowId=good)
    assert filtered["totals"]["executions"] == 0


async def test_a_rollup_run_twice_at_once_or_again_counts_each_execution_once(
    platform, client, mongo, engine
):
    carol = await sign_up(client, platform.router_url, "Analytics Carol")
    workflow = await create_workflow(client, platform.router_url, carol, "Twice", chain("A"))
    ids = [await start_run(client, platform.router_url, carol, workflow) for _ in range(4)]
    for execution_id in ids:  # finished, possibly not counted yet
        await wait_for_status(client, platform.router_url, carol, execution_id)
    await asyncio.gather(analytics.rollup(engine), analytics.rollup(engine))
    today = datetime.now(UTC).date()
    assert (await counted(client, platform, carol, today, 4))["totals"]["executions"] == 4

    async with engine.begin() as conn:  # both readers read the last hours again
        await conn.execute(
            text("UPDATE analytics_cursors SET at = at - interval '1 hour', last_id = ''")
        )
    await asyncio.gather(*(analytics.rollup(engine, page_size=2) for _ in range(3)))
    await analytics.rollup(engine, page_size=2)
    found = await analytics_of(client, platform, carol, today, today)
    assert found["totals"]["executions"] == 4


async def test_pages_of_finished_executions_repeat_and_skip_none(platform, mongo):
    org = PydanticObjectId()
    at = datetime.now(UTC).replace(microsecond=0) - timedelta(days=40, milliseconds=17)
    tick = timedelta(milliseconds=1)
    inserted = []
    for finished_at in (at - tick, at, at, at, at + tick, at + tick):  # ties share a time
        doc = ExecutionDocument(
            organization_id=org,
            workflow_id=PydanticObjectId(),
            status=ExecutionStatus.SUCCEEDED,
            started_at=finished_at - tick,
            finished_at=finished_at,
        )
        await doc.insert()
        inserted.append((finished_at, str(doc.id)))

    seen = []
    async for page, _ in finished_pages(Position(at - tick), at + 2 * tick, size=2):
        seen += [f.execution_id for f in page if f.organization_id == str(org)]
    assert seen == [execution_id for _, execution_id in sorted(inserted)]


def _finished(org: str, at: datetime, ms: int | None, status: str = "succeeded") -> Finished:
    return Finished(
        execution_id=str(ObjectId()),
        organization_id=org,
        workflow_id="wf-" + secrets.token_hex(4),
        mode="webhook",
        status=status,
        finished_at=at,
        duration_ms=ms,
    )


async def test_counting_the_same_executions_in_two_transactions_at_once_adds_them_once(
    platform, client, engine
):
    dana = await sign_up(client, platform.router_url, "Analytics Dana")
    today = datetime.now(UTC).date()
    noon = datetime.combine(today, datetime.min.time(), UTC) + timedelta(hours=12)
    org = dana.organization_id
    executions = [_finished(org, noon, 100) for _ in range(19)] + [
        _finished(org, noon, 70_000, "failed"),
        _finished(org, noon - timedelta(days=2), None, "cancelled"),  # cancelled while queued
        _finished(org, noon - timedelta(days=2), 3_000),
    ]

    async def count() -> int:
        async with engine.begin() as conn:
            return await analytics.count(conn, executions)

    assert sorted(await asyncio.gather(count(), count())) == [0, len(executions)]
    assert await count() == 0

    week = await analytics_of(client, platform, dana, today - timedelta(days=2), today)
    [early, _, late] = [r["stats"] for r in week["rows"]]
    assert (early["executions"], early["cancelled"], early["succeeded"]) == (2, 1, 1)
    assert early["avgDurationMs"] == early["maxDurationMs"] == 3000  # the cancelled one has none
    assert (late["executions"], late["failed"], late["failureRate"]) == (20, 1, 0.05)
    assert late["avgDurationMs"] == (19 * 100 + 70_000) / 20
    assert late["maxDurationMs"] == 70_000
    assert 50 < late["p50DurationMs"] <= 100  # the median is 100 ms: its bucket is 50..100
    assert 50 < late["p95DurationMs"] <= 100  # 19 of 20 took 100 ms
    assert week["totals"]["executions"] == 22
    assert week["totals"]["p95DurationMs"] > 100  # 21 of 22 timed: the 70 s one is above
    modes = await analytics_of(client, platform, dana, today, today, groupBy="MODE")
    assert [r["mode"] for r in modes["rows"]] == ["webhook"]
    two_days = await analytics_of(client, platform, dana, today - timedelta(days=1), today)
    assert two_days["totals"]["executions"] == 20


async def test_a_finish_written_hours_late_is_counted_by_the_trailing_reader(
    platform, client, mongo, engine
):
    erin = await sign_up(client, platform.router_url, "Analytics Erin")
    trailing = await cursor_at(engine, "executions.trailing")
    assert trailing is not None
    finished_at = max(
        trailing + timedelta(milliseconds=10),
        datetime.now(UTC) - TRAIL_DELAY - timedelta(seconds=1),
    )
    await insert_finished(erin, finished_at)
    day = finished_at.astimezone(UTC).date()

    found = await counted(client, platform, erin, day, 1)
    assert found["totals"]["executions"] == 1
    assert found["totals"]["maxDurationMs"] == 1000
    await analytics.rollup(engine)
    again = await analytics_of(client, platform, erin, day, day)
    assert again["totals"]["executions"] == 1


async def test_a_finish_written_a_moment_late_is_counted_by_the_recent_reader(
    platform, client, mongo, engine
):
    """The recent reader stops RECENT_LAG short of its pass, and reads each execution
    once: a finish stored a second after its time (a group commit, a worker's clock a
    little behind) is still ahead of it, and counted without the trailing reader."""
    gwen = await sign_up(client, platform.router_url, "Analytics Gwen")
    await analytics.rollup(engine)  # a pass just now
    finished_at = datetime.now(UTC) - timedelta(seconds=1)
    recent = await cursor_at(engine, "executions.recent")
    assert recent is not None
    assert recent < finished_at  # the reader has not gone past it
    await insert_finished(gwen, finished_at)
    found = await counted(client, platform, gwen, finished_at.date(), 1, seconds=15)
    assert found["totals"]["executions"] == 1


async def test_ranges_are_checked(platform, client):
    frank = await sign_up(client, platform.router_url, "Analytics Frank")
    today = datetime.now(UTC).date()
    backwards = await analytics_of(client, platform, frank, today, today - timedelta(days=1))
    assert backwards["__typename"] == "ValidationError"
    assert backwards["fields"][0]["path"] == "to"
    too_long = await analytics_of(client, platform, frank, today - timedelta(days=366), today)
    assert too_long["__typename"] == "ValidationError"
    year = await analytics_of(client, platform, frank, today - timedelta(days=365), today)
    assert year["__typename"] == "ExecutionAnalytics"
    assert len(year["rows"]) == 366
    variables = {"input": {"from": today.isoformat(), "to": "2000-01-01"}}
    tokens = data(await gql(client, platform.router_url, TOKENS, variables, frank.token))
    assert tokens["tokenUsage"]["__typename"] == "ValidationError"


async def test_token_usage_is_summed_by_day_model_and_workflow(platform, client, engine):
    gina = await sign_up(client, platform.router_url, "Analytics Gina")
    hank = await sign_up(client, platform.router_url, "Analytics Hank")
    org, workflow = gina.organization_id, str(ObjectId())
    services = PostgresAiServices(engine, embedder_from_settings(EmbeddingSettings()))
    await services.record_usage(
        [
            UsageRecord(org, workflow, "ex-1", "Chat", "openai", "gpt-x", 100, 20),
            UsageRecord(org, workflow, "ex-2", "Agent", "anthropic", "claude-y", 300, 40, calls=2),
            UsageRecord(org, None, "generate", "generateWorkflow", "openai", "gpt-x", 50, 5),
            UsageRecord(hank.organization_id, None, "ex-3", "Chat", "openai", "gpt-x", 7, 7),
        ]
    )
    today = datetime.now(UTC).date()

    async def usage(account: Account, since: date, **more: Any) -> dict[str, Any]:
        variables = {"input": {"from": since.isoformat(), "to": today.isoformat(), **more}}
        found = data(await gql(client, platform.router_url, TOKENS, variables, account.token))
        result: dict[str, Any] = found["tokenUsage"]
        return result

    by_day = await usage(gina, today - timedelta(days=1))
    assert [r["day"] for r in by_day["rows"]] == [
        (today - timedelta(days=1)).isoformat(),
        today.isoformat(),
    ]
    assert [r["totalTokens"] for r in by_day["rows"]] == [0, 515]
    assert by_day["totals"] == {
        "inputTokens": 450,
        "outputTokens": 65,
        "totalTokens": 515,
        "calls": 4,
    }
    by_model = await usage(gina, today, groupBy="MODEL")
    assert [
        (r["provider"], r["model"], r["inputTokens"], r["outputTokens"], r["calls"])
        for r in by_model["rows"]
    ] == [("anthropic", "claude-y", 300, 40, 2), ("openai", "gpt-x", 150, 25, 2)]
    by_workflow = await usage(gina, today, groupBy="WORKFLOW")
    assert [(r["workflow"], r["totalTokens"]) for r in by_workflow["rows"]] == [
        ({"id": workflow}, 460),
        (None, 55),
    ]
    one = await usage(gina, today, workflowId=workflow)
    assert one["totals"]["totalTokens"] == 460
    theirs = await usage(hank, today, groupBy="MODEL")
    assert [(r["model"], r["totalTokens"]) for r in theirs["rows"]] == [("gpt-x", 14)]
