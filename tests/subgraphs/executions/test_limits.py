"""Per-organization concurrency: with a limit of one, an organization's executions run one
at a time (the others wait their turn, queued); another organization is not held up."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.factories.executions import execution, start_run, wait_for_status
from tests.factories.identity import sign_up
from tests.factories.servers import serve
from tests.factories.workers import paused, platform_workers, start_worker, stop
from tests.factories.workflows import create_workflow, link, node


@pytest.fixture
async def slow_api() -> AsyncIterator[tuple[str, list[int]]]:
    """Answers after 0.6 s; records how many calls are in flight at each arrival."""
    in_flight: list[int] = [0]
    seen: list[int] = []

    async def slow(request: Request) -> Response:
        in_flight[0] += 1
        seen.append(in_flight[0])
        await asyncio.sleep(0.6)
        in_flight[0] -= 1
        return JSONResponse({"ok": True})

    async with serve(Starlette(routes=[Route("/slow", slow)])) as url:
        yield f"{url}/slow", seen


async def _workflow(client, platform, account, url) -> str:
    call = node("Call", "httpRequest", typeVersion=4.2, parameters={"url": url})
    definition = {
        "nodes": [node("Start", "manualTrigger"), call],
        "connections": [link("Start", "Call")],
    }
    return await create_workflow(client, platform.router_url, account, "Slow", definition)


async def test_an_organization_runs_one_execution_at_a_time(platform, client, slow_api, tmp_path):
    url, seen = slow_api
    limited = await sign_up(client, platform.router_url, "Limited")
    other = await sign_up(client, platform.router_url, "Other org")
    mine = await _workflow(client, platform, limited, url)
    theirs = await _workflow(client, platform, other, url)
    with paused(platform_workers(platform.redis_url)):
        worker = start_worker(platform, tmp_path / "limited.log", organization_max_running="1")
        try:
            ids = [await start_run(client, platform.router_url, limited, mine) for _ in range(3)]
            other_id = await start_run(client, platform.router_url, other, theirs)
            other_done = await wait_for_status(client, platform.router_url, other, other_id)
            statuses = [
                (await execution(client, platform.router_url, limited, i))["status"] for i in ids
            ]
            assert other_done["status"] == "SUCCEEDED"
            assert "QUEUED" in statuses  # the limited organization's runs wait their turn
            done = [
                await wait_for_status(client, platform.router_url, limited, i, seconds=30)
                for i in ids
            ]
        finally:
            stop(worker)
    assert [d["status"] for d in done] == ["SUCCEEDED"] * 3
    assert len(seen) == 4
    assert max(seen) <= 2  # at most one of "Limited" plus the other organization's
