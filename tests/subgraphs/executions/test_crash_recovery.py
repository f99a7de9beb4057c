"""A worker killed with SIGKILL in the middle of an execution: another worker notices the
lost lease, resumes the execution from its log, and it completes; no finished node runs
twice, the interrupted one runs again."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import AsyncIterator

import pytest
from beanie import PydanticObjectId
from redis.asyncio import Redis
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from klikkflow.kit.stores import init_mongo
from subgraphs.executions.models import DOCUMENTS, ExecutionDocument
from subgraphs.executions.runs import LEASED, REDIS_EPOCH
from tests.factories.executions import EXECUTION, RUN, execution, wait_for_status
from tests.factories.graphql import data, gql
from tests.factories.identity import sign_up
from tests.factories.servers import serve
from tests.factories.workers import paused, platform_workers, start_worker, stop
from tests.factories.workflows import create_workflow, link, node
from workers.main import SWEEP_EVERY_SECONDS


class SlowApi:
    """The first call hangs (the worker is killed meanwhile); later calls answer."""

    def __init__(self) -> None:
        self.calls = 0
        self.arrived = asyncio.Event()

    async def slow(self, request: Request) -> Response:
        self.calls += 1
        if self.calls == 1:
            self.arrived.set()
            await asyncio.sleep(60)
        return JSONResponse({"answered": self.calls})


@pytest.fixture
async def slow_api() -> AsyncIterator[tuple[str, SlowApi]]:
    api = SlowApi()
    async with serve(Starlette(routes=[Route("/slow", api.slow)])) as url:
        yield f"{url}/slow", api


async def test_a_killed_workers_execution_is_finished_by_another(
    platform, client, slow_api, tmp_path
):
    url, api = slow_api
    account = await sign_up(client, platform.router_url, "Crash survivors")
    call = node("Call", "httpRequest", typeVersion=4.2, parameters={"url": url})
    definition = {
        "nodes": [node("Start", "manualTrigger"), node("Before"), call, node("After")],
        "connections": [link("Start", "Before"), link("Before", "Call"), link("Call", "After")],
    }
    workflow_id = await create_workflow(
        client, platform.router_url, account, "Survivor", definition
    )
    ours = platform_workers(platform.redis_url)
    assert ours, "the platform's worker was not found"
    with paused(ours):
        victim = start_worker(platform, tmp_path / "victim.log")
        rescuer = None
        try:
            run = data(
                await gql(client, platform.router_url, RUN, {"id": workflow_id}, account.token)
            )["runWorkflow"]
            execution_id = run["execution"]["id"]
            await asyncio.wait_for(api.arrived.wait(), 60)  # the victim is inside "Call"
            redis = Redis.from_url(platform.redis_url, decode_responses=True)
            try:  # listed as leased, until a lapse a sweep would see
                assert await redis.zscore(LEASED, execution_id) is not None
            finally:
                await redis.aclose()
            await asyncio.sleep(0.5)  # the log is at most a flush interval behind
            victim.send_signal(signal.SIGKILL)
            victim.wait(10)
            midway = data(
                await gql(
                    client, platform.router_url, EXECUTION, {"id": execution_id}, account.token
                )
            )["execution"]
            assert midway["status"] == "RUNNING"  # nobody finishes it for the dead worker
            rescuer = start_worker(platform, tmp_path / "rescuer.log")
            done = await asyncio.wait_for(
                wait_for_status(client, platform.router_url, account, execution_id), 90
            )
        finally:
            stop(victim)
            stop(rescuer)
    assert done["status"] == "SUCCEEDED", (done, (tmp_path / "rescuer.log").read_text())
    tries = {n["node"]: n["tries"] for n in done["nodes"]}
    assert tries == {"Start": 1, "Before": 1, "Call": 2, "After": 1}
    assert api.calls == 2
    [after] = [n for n in done["nodes"] if n["node"] == "After"]
    assert after["outputs"]["main"][0]["json"] == {"answered": 2}


async def _queued(platform, account, workflow_id: str) -> str:
    """An execution saved as queued with no job for it: what a worker that took its job
    and died before writing anything leaves behind (or a Redis that lost its jobs)."""
    await init_mongo(platform.mongo_uri, platform.settings.mongo_db, DOCUMENTS)
    execution = ExecutionDocument(
        organization_id=PydanticObjectId(account.organization_id),
        workflow_id=PydanticObjectId(workflow_id),
        workflow_version=1,
        items=[{"json": {"n": 1}}],
    )
    await execution.insert()
    return str(execution.id)


async def test_a_worker_that_died_before_its_first_write_is_seen_by_its_lapsed_lease(
    platform, client
):
    account = await sign_up(client, platform.router_url, "Early deaths")
    definition = {
        "nodes": [node("Start", "manualTrigger"), node("After")],
        "connections": [link("Start", "After")],
    }
    workflow_id = await create_workflow(client, platform.router_url, account, "Early", definition)
    died = await _queued(platform, account, workflow_id)
    untouched = await _queued(platform, account, workflow_id)  # no lease ever: no worker had it
    redis = Redis.from_url(platform.redis_url, decode_responses=True)
    try:
        await redis.zadd(LEASED, {died: 0})  # its lease lapsed long ago, never released
        done = await wait_for_status(client, platform.router_url, account, died, seconds=30)
        assert done["status"] == "SUCCEEDED"
        assert await redis.zscore(LEASED, died) is None  # released by the run that finished it
        await asyncio.sleep(2 * SWEEP_EVERY_SECONDS)  # sweeps pass; nothing leads them to it
        left = await execution(client, platform.router_url, account, untouched)
        assert left["status"] == "QUEUED"
        await redis.delete(REDIS_EPOCH)  # now Redis "lost" its jobs: queued ones run again
        done = await wait_for_status(client, platform.router_url, account, untouched, seconds=30)
        assert done["status"] == "SUCCEEDED"
        assert await redis.get(REDIS_EPOCH) is not None
    finally:
        await redis.aclose()
