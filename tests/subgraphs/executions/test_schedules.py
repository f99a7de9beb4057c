"""Schedules fire through the real workers: once per tick with two workers looking, in
their time zone, and once (not in a burst) when ticks were missed."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from tests.factories.graphql import data, gql
from tests.factories.identity import sign_up
from tests.factories.workers import start_worker, stop
from tests.factories.workflows import create_workflow, link, node

ACTIVATE = """mutation ($id: ID!) { activateWorkflow(input: {id: $id}) { __typename } }"""
DEACTIVATE = """mutation ($id: ID!) { deactivateWorkflow(input: {id: $id}) { __typename } }"""
RUNS = """query ($id: ID!) { executions(first: 100, filter: {workflowId: $id}) { edges { node {
  id mode status nodes { node outputs } } } } }"""


def scheduled(cron: str, zone: str = "UTC") -> dict:
    trigger = node(
        "Tick",
        "scheduleTrigger",
        typeVersion=1.2,
        parameters={
            "rule": {"interval": [{"field": "cronExpression", "expression": cron}]},
            "timezone": zone,
        },
    )
    return {"nodes": [trigger, node("Then")], "connections": [link("Tick", "Then")]}


async def _runs(client, platform, account, workflow_id) -> list[dict]:
    found = data(await gql(client, platform.router_url, RUNS, {"id": workflow_id}, account.token))
    return [edge["node"] for edge in found["executions"]["edges"]]


def _ticks(runs: list[dict]) -> list[str]:
    return [
        n["outputs"]["main"][0]["json"]["timestamp"]
        for run in runs
        for n in run["nodes"]
        if n["node"] == "Tick" and n["outputs"]
    ]


async def test_each_tick_fires_once_with_two_workers_looking(platform, client, tmp_path):
    account = await sign_up(client, platform.router_url, "Clockwork")
    workflow_id = await create_workflow(
        client, platform.router_url, account, "Every 2 s", scheduled("* * * * * */2")
    )
    second = start_worker(platform, tmp_path / "second-worker.log")
    try:
        await gql(client, platform.router_url, ACTIVATE, {"id": workflow_id}, account.token)
        await asyncio.sleep(9)
        await gql(client, platform.router_url, DEACTIVATE, {"id": workflow_id}, account.token)
    finally:
        stop(second)
    await asyncio.sleep(2)  # the last runs finish
    runs = await _runs(client, platform, account, workflow_id)
    assert {r["mode"] for r in runs} == {"schedule"}
    ticks = _ticks(runs)
    assert len(ticks) >= 3, runs
    assert len(ticks) == len(set(ticks)) == len(runs)  # no tick twice
    assert all(datetime.fromisoformat(t).second % 2 == 0 for t in ticks)
    later = len(await _runs(client, platform, account, workflow_id))
    await asyncio.sleep(3)
    assert len(await _runs(client, platform, account, workflow_id)) == later  # off means off


async def test_missed_ticks_fire_once_then_go_on_from_the_next(platform, client):
    from klikkflow.kit.stores import init_mongo, object_id
    from subgraphs.workflows.models import DOCUMENTS, ScheduleRegistration

    account = await sign_up(client, platform.router_url, "Sleepers")
    workflow_id = await create_workflow(
        client, platform.router_url, account, "Hourly", scheduled("0 * * * *", "Europe/Oslo")
    )
    mongo = await init_mongo(platform.mongo_uri, platform.settings.mongo_db, DOCUMENTS)
    try:
        await gql(client, platform.router_url, ACTIVATE, {"id": workflow_id}, account.token)
        # Every worker was down for three days: 72 ticks went by.
        missed = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(days=3)
        await ScheduleRegistration.get_pymongo_collection().update_one(
            {"workflow_id": object_id(workflow_id)}, {"$set": {"next_run_at": missed}}
        )
        for _ in range(100):
            runs = await _runs(client, platform, account, workflow_id)
            if runs and runs[0]["status"] == "SUCCEEDED":
                break
            await asyncio.sleep(0.1)
        await asyncio.sleep(2)
        runs = await _runs(client, platform, account, workflow_id)
        assert len(runs) == 1
        assert _ticks(runs) == [missed.isoformat()]
        schedule = await ScheduleRegistration.find_one({"workflow_id": object_id(workflow_id)})
        assert schedule is not None
        assert schedule.next_run_at > datetime.now(UTC)
        assert schedule.next_run_at.minute == 0
    finally:
        await gql(client, platform.router_url, DEACTIVATE, {"id": workflow_id}, account.token)
        await mongo.close()
