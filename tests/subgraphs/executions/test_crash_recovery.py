"""A worker killed with SIGKILL in the middle of an execution: another worker notices the
lost lease, resumes the execution from its log, and it completes; no finished node runs
twice, the interrupted one runs again."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import AsyncIterator

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.factories.executions import EXECUTION, RUN, wait_for_status
from tests.factories.graphql import data, gql
from tests.factories.identity import sign_up
from tests.factories.servers import serve
from tests.factories.workers import paused, platform_workers, start_worker, stop
from tests.factories.workflows import create_workflow, link, node


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
