"""Redis restarting in the middle of an execution (losing everything it held: queue,
lease, streams): the execution ends in a recorded final state, never stuck running.

A worker of its own runs on a Redis of its own, so the rest of the suite keeps the
platform's Redis."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest
from arq.connections import create_pool
from beanie import PydanticObjectId
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from klikkflow.kit.stores import arq_redis_settings, init_mongo
from klikkflow.kit.supervisor import free_port
from subgraphs.executions.models import DOCUMENTS, ExecutionDocument, ExecutionStatus
from subgraphs.executions.service import RUN_EXECUTION
from tests.factories.identity import sign_up
from tests.factories.servers import serve
from tests.factories.workers import start_worker, stop
from tests.factories.workflows import create_workflow, link, node


def _redis(port: int) -> subprocess.Popen[bytes]:
    binary = shutil.which("redis-server")
    assert binary is not None
    argv = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly"]
    return subprocess.Popen([*argv, "no"], stdout=subprocess.DEVNULL)


async def _ping(url: str) -> None:
    from redis.asyncio import Redis

    for _ in range(100):
        client = Redis.from_url(url)
        try:
            await client.ping()
            return
        except OSError:
            await asyncio.sleep(0.05)
        except Exception:  # noqa: BLE001 - redis' own ConnectionError while it starts
            await asyncio.sleep(0.05)
        finally:
            await client.aclose()
    raise AssertionError("redis did not start")


@pytest.fixture
async def slow_api() -> AsyncIterator[tuple[str, asyncio.Event]]:
    arrived = asyncio.Event()

    async def slow(request: Request) -> Response:
        arrived.set()
        await asyncio.sleep(3)
        return JSONResponse({"ok": True})

    async with serve(Starlette(routes=[Route("/slow", slow)])) as url:
        yield f"{url}/slow", arrived


async def test_an_execution_survives_a_redis_restart(platform, client, slow_api, tmp_path):
    url, arrived = slow_api
    account = await sign_up(client, platform.router_url, "Redis restarts")
    call = node("Call", "httpRequest", typeVersion=4.2, parameters={"url": url})
    definition = {
        "nodes": [node("Start", "manualTrigger"), call, node("After")],
        "connections": [link("Start", "Call"), link("Call", "After")],
    }
    workflow_id = await create_workflow(client, platform.router_url, account, "Steady", definition)
    port = free_port()
    redis_url = f"redis://127.0.0.1:{port}/0"
    redis = _redis(port)
    worker = None
    mongo = await init_mongo(platform.mongo_uri, platform.settings.mongo_db, DOCUMENTS)
    try:
        await _ping(redis_url)
        worker = start_worker(platform, tmp_path / "worker.log", redis_url=redis_url)
        execution = ExecutionDocument(
            organization_id=PydanticObjectId(account.organization_id),
            workflow_id=PydanticObjectId(workflow_id),
            workflow_version=1,
            items=[{"json": {}}],
        )
        await execution.insert()
        queue = await create_pool(arq_redis_settings(redis_url))
        await queue.enqueue_job(RUN_EXECUTION, str(execution.id), _job_id=str(execution.id))
        await queue.aclose()
        await asyncio.wait_for(arrived.wait(), 30)  # the worker is inside "Call"
        redis.kill()  # Redis goes away with the queue, the lease and the stream
        redis.wait(10)
        await asyncio.sleep(1)
        redis = _redis(port)
        await _ping(redis_url)
        final = None
        for _ in range(600):
            found = await ExecutionDocument.get(execution.id)
            assert found is not None
            if found.status in (
                ExecutionStatus.SUCCEEDED,
                ExecutionStatus.FAILED,
                ExecutionStatus.CANCELLED,
            ):
                final = found
                break
            await asyncio.sleep(0.1)
        log = (tmp_path / "worker.log").read_text()
        assert final is not None, f"still {found.status} at {datetime.now(UTC)}:\n{log[-3000:]}"
        assert final.status == ExecutionStatus.SUCCEEDED, (final.error, log[-3000:])
        assert worker.poll() is None, log[-3000:]  # the worker lived through it
    finally:
        stop(worker)
        redis.kill()
        redis.wait(10)
        await mongo.close()
