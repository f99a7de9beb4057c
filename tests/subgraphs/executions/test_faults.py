"""Faults through the worker end in a recorded final state, never a stuck "running":
code that allocates until it dies, code that loops forever, and a workflow with no time
limit of its own that never finishes (the platform's default limit ends it)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.factories.executions import run_and_wait, start_run, wait_for_status
from tests.factories.identity import sign_up
from tests.factories.servers import serve
from tests.factories.workers import paused, platform_workers, start_worker, stop
from tests.factories.workflows import create_workflow, link, node


def _code(language: str, source: str) -> dict:
    key = "pythonCode" if language == "python" else "jsCode"
    return node("Code", "code", typeVersion=2, parameters={"language": language, key: source})


@pytest.mark.parametrize(
    ("language", "source", "reason"),
    [
        ("python", "hog = []\nwhile True:\n    hog.append(' ' * 2**20)", "memory limit"),
        ("javaScript", "const hog = []; while (true) { hog.push('x'.repeat(1 << 20)); }", "memory"),
        ("javaScript", "while (true) {}", "time"),
    ],
)
async def test_runaway_code_fails_its_execution_and_the_worker_lives(
    platform, client, language, source, reason
):
    account = await sign_up(client, platform.router_url, "Runaways")
    workers = platform_workers(platform.redis_url)
    definition = {
        "nodes": [node("Start", "manualTrigger"), _code(language, source)],
        "connections": [link("Start", "Code")],
    }
    workflow_id = await create_workflow(client, platform.router_url, account, "Hog", definition)
    done = await run_and_wait(client, platform.router_url, account, workflow_id)
    assert done["status"] == "FAILED"
    assert done["error"]["node"] == "Code"
    assert reason in done["error"]["message"].lower(), done["error"]
    assert platform_workers(platform.redis_url) == workers  # the same worker, still there


@pytest.fixture
async def never_answers() -> AsyncIterator[str]:
    async def hang(request: Request) -> Response:
        await asyncio.sleep(120)
        return JSONResponse({})

    async with serve(Starlette(routes=[Route("/hang", hang)])) as url:
        yield f"{url}/hang"


async def test_the_default_time_limit_ends_a_run_that_never_finishes(
    platform, client, never_answers, tmp_path
):
    account = await sign_up(client, platform.router_url, "Forever")
    call = node("Call", "httpRequest", typeVersion=4.2, parameters={"url": never_answers})
    definition = {
        "nodes": [node("Start", "manualTrigger"), call],
        "connections": [link("Start", "Call")],
    }
    workflow_id = await create_workflow(client, platform.router_url, account, "Stuck", definition)
    with paused(platform_workers(platform.redis_url)):
        worker = start_worker(platform, tmp_path / "w.log", execution_timeout_seconds="2")
        try:
            execution_id = await start_run(client, platform.router_url, account, workflow_id)
            done = await wait_for_status(
                client, platform.router_url, account, execution_id, seconds=30
            )
        finally:
            stop(worker)
    assert done["status"] == "FAILED"
    assert done["error"]["type"] == "Timeout", done["error"]
