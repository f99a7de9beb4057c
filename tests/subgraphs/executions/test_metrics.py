"""Prometheus metrics as an operator scrapes them over HTTP: the executions service's
/metrics (queue depth, unfinished executions, webhook requests) and each worker's
(busy slots, finished executions, durations)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
import pytest
from arq.connections import create_pool
from arq.jobs import JobStatus
from prometheus_client.parser import text_string_to_metric_families
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from klikkflow.kit.settings import WorkerSettings
from klikkflow.kit.stores import arq_redis_settings
from subgraphs.executions.service import RUN_EXECUTION
from tests.factories.executions import start_run, wait_for_status
from tests.factories.identity import sign_up
from tests.factories.servers import serve
from tests.factories.workers import paused, platform_workers
from tests.factories.workflows import create_workflow, link, node

MAX_JOBS = WorkerSettings.model_fields["worker_max_jobs"].default  # the platform's worker
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


async def scrape(client: httpx.AsyncClient, url: str) -> Samples:
    response = await client.get(url)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def service_metrics(platform) -> str:
    return platform.urls["executions"].removesuffix("/graphql") + "/metrics"


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


async def eventually(check, seconds: float = 15) -> None:
    for _ in range(int(seconds / 0.1)):
        if await check():
            return
        await asyncio.sleep(0.1)
    raise AssertionError("never happened")


@pytest.fixture
async def slow_api() -> AsyncIterator[tuple[str, asyncio.Event]]:
    """A third party that answers only once the test lets it."""
    release = asyncio.Event()

    async def hold(request: Request) -> Response:
        await release.wait()
        return JSONResponse({"ok": True})

    async with serve(Starlette(routes=[Route("/hold", hold)])) as url:
        yield url, release
        release.set()


async def test_a_finished_run_is_counted_and_timed_by_the_worker(platform, client):
    account = await sign_up(client, platform.router_url, "Metered")
    workflow_id = await create_workflow(client, platform.router_url, account, "Counted")
    worker = platform.urls["worker-metrics"]
    before = await scrape(client, worker)
    assert value(before, "klikkflow_worker_max_slots") == MAX_JOBS
    execution_id = await start_run(client, platform.router_url, account, workflow_id)
    finished = await wait_for_status(client, platform.router_url, account, execution_id)
    assert finished["status"] == "SUCCEEDED"
    after = await scrape(client, worker)
    succeeded = "klikkflow_executions_finished_total"
    assert (
        value(after, succeeded, status="succeeded")
        == value(before, succeeded, status="succeeded") + 1
    )
    count = "klikkflow_execution_duration_seconds_count"
    assert value(after, count) == value(before, count) + 1
    assert value(after, "klikkflow_execution_duration_seconds_sum") > value(
        before, "klikkflow_execution_duration_seconds_sum"
    )
    nodes = "klikkflow_node_duration_seconds_count"
    assert (
        value(after, nodes, node_type="manualTrigger")
        == value(before, nodes, node_type="manualTrigger") + 1
    )
    # arq may run a job again: a job that finds its execution finished counts nothing.
    queue = await create_pool(arq_redis_settings(platform.redis_url))
    try:
        again = await queue.enqueue_job(RUN_EXECUTION, execution_id, _job_id="again")
        assert again is not None
        for _ in range(150):  # the worker keeps no results: done once arq forgot it
            if await again.status() == JobStatus.not_found:
                break
            await asyncio.sleep(0.1)
        else:
            raise AssertionError("the job never ran")
    finally:
        await queue.aclose()
    later = await scrape(client, worker)
    assert value(later, succeeded, status="succeeded") == value(
        after, succeeded, status="succeeded"
    )
    assert value(later, count) == value(after, count)


async def test_busy_slots_show_the_executions_a_worker_runs_now(platform, client, slow_api):
    url, release = slow_api
    account = await sign_up(client, platform.router_url, "Busy")
    call = node("Call", "httpRequest", typeVersion=4.2, parameters={"url": f"{url}/hold"})
    definition = {
        "nodes": [node("Start", "manualTrigger"), call],
        "connections": [link("Start", "Call")],
    }
    workflow_id = await create_workflow(client, platform.router_url, account, "Held", definition)
    worker = platform.urls["worker-metrics"]
    execution_id = await start_run(client, platform.router_url, account, workflow_id)

    async def busy() -> bool:
        return value(await scrape(client, worker), "klikkflow_worker_busy_slots") == 1

    await eventually(busy)
    release.set()
    await wait_for_status(client, platform.router_url, account, execution_id)

    async def idle() -> bool:
        return value(await scrape(client, worker), "klikkflow_worker_busy_slots") == 0

    await eventually(idle)


async def test_queue_depth_and_queued_executions_rise_while_workers_stop_and_drain(
    platform, client
):
    account = await sign_up(client, platform.router_url, "Backlog")
    workflow_id = await create_workflow(client, platform.router_url, account, "Piling up")
    url = service_metrics(platform)
    with paused(platform_workers(platform.redis_url)):
        before = await scrape(client, url)
        started = [
            await start_run(client, platform.router_url, account, workflow_id) for _ in range(3)
        ]
        piled = await scrape(client, url)
        assert value(piled, "klikkflow_queue_depth") == value(before, "klikkflow_queue_depth") + 3
        queued = "klikkflow_executions"
        assert value(piled, queued, status="queued") == value(before, queued, status="queued") + 3
    for execution_id in started:
        await wait_for_status(client, platform.router_url, account, execution_id)

    async def drained() -> bool:
        now = await scrape(client, url)
        return value(now, "klikkflow_executions", status="queued") == value(
            before, "klikkflow_executions", status="queued"
        ) and value(now, "klikkflow_queue_depth") <= value(before, "klikkflow_queue_depth")

    await eventually(drained)


async def test_webhook_requests_are_counted_by_outcome(platform, client):
    account = await sign_up(client, platform.router_url, "Hooked")
    url = service_metrics(platform)
    before = await scrape(client, url)
    base = platform.urls["executions"].removesuffix("/graphql")
    answer = await client.post(f"{base}/webhook/{account.organization_id}/nowhere", json={})
    assert answer.status_code == 404
    after = await scrape(client, url)
    requests = "klikkflow_webhook_requests_total"
    assert value(after, requests, outcome="404") == value(before, requests, outcome="404") + 1
