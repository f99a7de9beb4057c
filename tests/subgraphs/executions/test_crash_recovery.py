"""A worker killed with SIGKILL in the middle of an execution: another worker notices the
lost lease, resumes the execution from its log, and it completes; no finished node runs
twice, the interrupted one runs again."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.factories.graphql import data, gql
from tests.factories.identity import sign_up
from tests.factories.workflows import create_workflow, link, node
from tests.subgraphs.executions.test_runs import EXECUTION, RUN, wait_until_done


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
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    app = Starlette(routes=[Route("/slow", api.slow)])
    config = uvicorn.Config(app, port=port, log_level="warning", lifespan="off")
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.02)
    yield f"http://127.0.0.1:{port}/slow", api
    server.should_exit = True
    server.force_exit = True
    await task


def _platform_workers(redis_url: str) -> list[int]:
    """The test platform's own worker processes (found by their Redis URL)."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().split(b"\0")
            environ = (proc / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"worker" in cmdline and f"KLIKKFLOW_REDIS_URL={redis_url}".encode() in environ:
            found.append(int(proc.name))
    return found


@contextmanager
def paused(pids: list[int]) -> Iterator[None]:
    for pid in pids:
        os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        for pid in pids:
            os.kill(pid, signal.SIGCONT)


def _worker(platform, log: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, **platform.store_env(platform.settings)}
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "klikkflow.cli", "worker"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


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
    ours = _platform_workers(platform.redis_url)
    assert ours, "the platform's worker was not found"
    with paused(ours):
        victim = _worker(platform, tmp_path / "victim.log")
        rescuer = None
        try:
            run = data(
                await gql(client, platform.router_url, RUN, {"id": workflow_id}, account.token)
            )["runWorkflow"]
            execution_id = run["execution"]["id"]
            await asyncio.wait_for(api.arrived.wait(), 60)  # the victim is inside "Call"
            victim.send_signal(signal.SIGKILL)
            victim.wait(10)
            midway = data(
                await gql(
                    client, platform.router_url, EXECUTION, {"id": execution_id}, account.token
                )
            )["execution"]
            assert midway["status"] == "RUNNING"  # nobody finishes it for the dead worker
            rescuer = _worker(platform, tmp_path / "rescuer.log")
            done = await asyncio.wait_for(
                wait_until_done(client, platform, account, execution_id), 90
            )
        finally:
            for process in (victim, rescuer):
                if process is not None and process.poll() is None:
                    process.terminate()
                    process.wait(20)
    assert done["status"] == "SUCCEEDED", (done, (tmp_path / "rescuer.log").read_text())
    tries = {n["node"]: n["tries"] for n in done["nodes"]}
    assert tries == {"Start": 1, "Before": 1, "Call": 2, "After": 1}
    assert api.calls == 2
    [after] = [n for n in done["nodes"] if n["node"] == "After"]
    assert after["outputs"]["main"][0]["json"] == {"answered": 2}
