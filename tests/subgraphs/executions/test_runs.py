"""Executions run by the real arq worker: the engine drives the pinned version with the
organization's variables and credentials, every node's data is recorded, failures end
failed with their reason, and a run cut short by a dead worker goes on from its log."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.factories.executions import RUN, output, run_and_wait, start_run, wait_for_status
from tests.factories.graphql import data, gql
from tests.factories.identity import sign_up
from tests.factories.servers import serve
from tests.factories.workflows import create_workflow, link, node, update_workflow

API_KEY = "runner-secret-4c1d2e9f"


@pytest.fixture(scope="module")
async def api() -> AsyncIterator[tuple[str, list[dict]]]:
    """A third-party API that echoes the query when the API key is right."""
    seen: list[dict] = []

    async def echo(request: Request) -> Response:
        seen.append(dict(request.query_params))
        if request.headers.get("x-api-key") != API_KEY:
            return JSONResponse({"error": "bad key"}, status_code=401)
        return JSONResponse({"echo": dict(request.query_params)})

    async with serve(Starlette(routes=[Route("/echo", echo)])) as url:
        yield url, seen


async def test_a_run_uses_variables_and_credentials_and_records_every_node(platform, client, api):
    url, seen = api
    account = await sign_up(client, platform.router_url, "Runners")
    await gql(
        client,
        platform.router_url,
        """mutation { setVariable(input:
      {key: "CITY", value: "Oslo"}) { __typename } }""",
        token=account.token,
    )
    made = data(
        await gql(
            client,
            platform.router_url,
            """mutation ($d: JSON!) {
      createCredential(input: {name: "Echo key", type: "httpHeaderAuth", data: $d}) {
        ... on CredentialSuccess { credential { id } } } }""",
            {"d": {"name": "X-Api-Key", "value": API_KEY}},
            account.token,
        )
    )
    credential_id = made["createCredential"]["credential"]["id"]
    greet = node(
        "Greet",
        "set",
        typeVersion=3.4,
        parameters={
            "mode": "manual",
            "includeOtherFields": True,
            "options": {},
            "assignments": {
                "assignments": [
                    {
                        "id": "g",
                        "name": "greeting",
                        "type": "string",
                        "value": "={{ 'Hi ' + $json.name + ' in ' + $vars.CITY }}",
                    }
                ]
            },
        },
    )
    call = node(
        "Call",
        "httpRequest",
        typeVersion=4.2,
        parameters={
            "url": f"{url}/echo",
            "authentication": "genericCredentialType",
            "genericAuthType": "httpHeaderAuth",
            "sendQuery": True,
            "queryParameters": {"parameters": [{"name": "g", "value": "={{ $json.greeting }}"}]},
        },
        credentials={"httpHeaderAuth": {"id": credential_id, "name": "Echo key"}},
    )
    definition = {
        "nodes": [node("Start", "manualTrigger"), greet, call],
        "connections": [link("Start", "Greet"), link("Greet", "Call")],
    }
    workflow_id = await create_workflow(client, platform.router_url, account, "Greeter", definition)

    execution = await run_and_wait(
        client,
        platform.router_url,
        account,
        workflow_id,
        [{"name": "Ada"}, {"json": {"name": "Grace"}}],
    )
    assert execution["status"] == "SUCCEEDED", execution
    assert (execution["mode"], execution["workflowVersion"]) == ("manual", 1)
    assert [n["node"] for n in execution["nodes"]] == ["Start", "Greet", "Call"]
    assert output(execution, "Greet") == [
        {"name": "Ada", "greeting": "Hi Ada in Oslo"},
        {"name": "Grace", "greeting": "Hi Grace in Oslo"},
    ]
    assert output(execution, "Call") == [
        {"echo": {"g": "Hi Ada in Oslo"}},
        {"echo": {"g": "Hi Grace in Oslo"}},
    ]
    assert {"g": "Hi Ada in Oslo"} in seen
    assert API_KEY not in str(execution)


async def test_a_failing_node_ends_the_execution_failed_with_its_reason(platform, client):
    account = await sign_up(client, platform.router_url, "Failers")
    stop = node("Stop", "stopAndError", parameters={"errorMessage": "={{ 'no ' + $json.what }}"})
    definition = {
        "nodes": [node("Start", "manualTrigger"), stop],
        "connections": [link("Start", "Stop")],
    }
    workflow_id = await create_workflow(client, platform.router_url, account, "Fails", definition)
    execution = await run_and_wait(
        client, platform.router_url, account, workflow_id, [{"what": "luck"}]
    )
    assert execution["status"] == "FAILED"
    assert execution["error"]["node"] == "Stop"
    assert execution["error"]["message"] == "no luck"


async def test_a_workflow_without_a_start_node_fails_clearly(platform, client):
    account = await sign_up(client, platform.router_url, "No start")
    workflow_id = await create_workflow(
        client,
        platform.router_url,
        account,
        "Headless",
        {"nodes": [node("Lonely")], "connections": []},
    )
    execution = await run_and_wait(client, platform.router_url, account, workflow_id)
    assert execution["status"] == "FAILED"
    assert "no trigger node" in execution["error"]["message"]


async def test_manual_runs_use_the_latest_saved_version(platform, client):
    account = await sign_up(client, platform.router_url, "Versioned runs")
    workflow_id = await create_workflow(client, platform.router_url, account, "V")
    await update_workflow(
        client,
        platform.router_url,
        account,
        id=workflow_id,
        expectedVersion=1,
        definition={
            "nodes": [node("Start", "manualTrigger"), node("Later")],
            "connections": [link("Start", "Later")],
        },
    )
    execution = await run_and_wait(client, platform.router_url, account, workflow_id)
    assert execution["workflowVersion"] == 2
    assert [n["node"] for n in execution["nodes"]] == ["Start", "Later"]


async def test_bad_input_items_are_refused(platform, client):
    account = await sign_up(client, platform.router_url, "Bad items")
    workflow_id = await create_workflow(client, platform.router_url, account, "Items")
    refused = data(
        await gql(
            client,
            platform.router_url,
            RUN,
            {"id": workflow_id, "items": [1, "two"]},
            account.token,
        )
    )
    assert refused["runWorkflow"]["__typename"] == "ValidationError"
    assert {f["path"] for f in refused["runWorkflow"]["fields"]} == {"items[0]", "items[1]"}


@pytest.mark.parametrize("status", ["running", "queued"])
async def test_a_run_cut_short_by_a_dead_worker_goes_on_from_its_log(platform, client, status):
    """The log of a worker that died while B ran: Start and A finished, B started. The
    next job replays it: A does not run again, B runs again (its second try), C runs.
    Also when the status after that page was never written (still queued)."""
    from arq.connections import ArqRedis, create_pool
    from beanie import PydanticObjectId

    from klikkflow.engine.state import ExecutionStarted, NodeStarted, NodeSucceeded
    from klikkflow.kit.stores import arq_redis_settings, init_mongo
    from subgraphs.executions.models import DOCUMENTS, ExecutionDocument, ExecutionLogDocument
    from subgraphs.executions.repository import log_page
    from subgraphs.executions.runs import ENGINE, EVENTS
    from subgraphs.executions.service import RUN_EXECUTION

    account = await sign_up(client, platform.router_url, "Crashers")
    definition = {
        "nodes": [node("Start", "manualTrigger"), node("A"), node("B"), node("C")],
        "connections": [link("Start", "A"), link("A", "B"), link("B", "C")],
    }
    workflow_id = await create_workflow(client, platform.router_url, account, "Crash", definition)
    at = datetime.now(UTC)
    item = [{"json": {"n": 1}}]
    logged = [
        ExecutionStarted(at=at, start_node="Start", items=item),
        NodeStarted(at=at, node="Start", run_index=0, inputs={"main": item}),
        NodeSucceeded(at=at, node="Start", run_index=0, outputs={"main": item}),
        NodeStarted(at=at, node="A", run_index=0, inputs={"main": item}),
        NodeSucceeded(at=at, node="A", run_index=0, outputs={"main": item}),
        NodeStarted(at=at, node="B", run_index=0, inputs={"main": item}),
    ]
    mongo = await init_mongo(platform.mongo_uri, platform.settings.mongo_db, DOCUMENTS)
    try:
        execution = ExecutionDocument(
            organization_id=PydanticObjectId(account.organization_id),
            workflow_id=PydanticObjectId(workflow_id),
            workflow_version=1,
            status=status,
            started_at=at if status == "running" else None,
            items=item,
        )
        await execution.insert()
        entries = [
            {
                "seq": seq,
                "type": event.type,
                "status": "running",
                "at": at,
                "data": {ENGINE: EVENTS.dump_python(event, mode="json")},
            }
            for seq, event in enumerate(logged, start=1)
        ]
        pages = [log_page(execution, entries[3:]), log_page(execution, entries[:3])]
        await ExecutionLogDocument.get_pymongo_collection().insert_many(pages)  # any order
    finally:
        await mongo.close()
    queue: ArqRedis = await create_pool(arq_redis_settings(platform.redis_url))
    try:
        await queue.enqueue_job(RUN_EXECUTION, str(execution.id), _job_id=str(execution.id))
    finally:
        await queue.aclose()
    done = await wait_for_status(client, platform.router_url, account, str(execution.id))
    assert done["status"] == "SUCCEEDED", done
    runs = {n["node"]: n for n in done["nodes"]}
    assert {name: r["tries"] for name, r in runs.items()} == {"Start": 1, "A": 1, "B": 2, "C": 1}
    assert output(done, "C") == [{"n": 1}]


async def test_a_failure_starts_the_error_workflow_with_what_failed(platform, client):
    account = await sign_up(client, platform.router_url, "Error watchers")
    handler = await create_workflow(
        client,
        platform.router_url,
        account,
        "On error",
        {
            "nodes": [node("Caught", "errorTrigger"), node("Alert")],
            "connections": [link("Caught", "Alert")],
        },
    )
    stop = node("Stop", "stopAndError", parameters={"errorMessage": "disk full"})
    failing = await create_workflow(
        client,
        platform.router_url,
        account,
        "Fragile",
        {
            "nodes": [node("Start", "manualTrigger"), stop],
            "connections": [link("Start", "Stop")],
            "settings": {"errorWorkflow": handler},
        },
    )
    failed_id = await start_run(client, platform.router_url, account, failing)
    failed = await wait_for_status(client, platform.router_url, account, failed_id)
    assert failed["status"] == "FAILED"
    query = """query ($id: ID!) { executions(filter: {workflowId: $id}) { edges { node {
      id mode status } } } }"""
    for _ in range(100):
        found = data(await gql(client, platform.router_url, query, {"id": handler}, account.token))
        edges = found["executions"]["edges"]
        if edges:
            break
        await asyncio.sleep(0.05)
    [edge] = edges
    assert edge["node"]["mode"] == "error"
    caught = await wait_for_status(client, platform.router_url, account, edge["node"]["id"])
    assert caught["status"] == "SUCCEEDED"
    [item] = output(caught, "Alert")
    assert item["execution"]["id"] == failed_id
    assert item["execution"]["error"]["message"] == "disk full"
    assert item["execution"]["lastNodeExecuted"] == "Stop"
    assert item["workflow"] == {"id": failing, "name": "Fragile"}


async def test_large_node_data_is_shown_in_part_with_its_true_counts(platform, client):
    account = await sign_up(client, platform.router_url, "Big data")
    workflow_id = await create_workflow(client, platform.router_url, account, "Many items")
    items = [{"n": i} for i in range(150)]
    done = await run_and_wait(client, platform.router_url, account, workflow_id, items)
    assert done["status"] == "SUCCEEDED"
    query = """query ($id: ID!) { executions(filter: {workflowId: $id}) { edges { node {
      nodes { node outputs itemCounts truncated
              all: outputs(maxItems: 500) whole: truncated(maxItems: 500) } } } } }"""
    found = data(await gql(client, platform.router_url, query, {"id": workflow_id}, account.token))
    [run] = found["executions"]["edges"][0]["node"]["nodes"]
    assert len(run["outputs"]["main"]) == 100
    assert run["itemCounts"]["outputs"] == {"main": 150}
    assert run["truncated"] is True
    assert len(run["all"]["main"]) == 150
    assert run["whole"] is False


async def test_a_new_execution_rides_with_its_job_unless_it_is_large(platform):
    """A job carries its new execution as saved (its first try need not read it back),
    except one with large items: those stay in MongoDB only, not in Redis too."""
    from beanie import PydanticObjectId

    from klikkflow.kit.stores import init_mongo
    from subgraphs.executions.models import DOCUMENTS, ExecutionDocument
    from subgraphs.executions.repository import SNAPSHOT_MAX_BYTES, repository

    mongo = await init_mongo(platform.mongo_uri, platform.settings.mongo_db, DOCUMENTS)
    try:
        small = ExecutionDocument(
            id=PydanticObjectId(),
            organization_id=PydanticObjectId(),
            workflow_id=PydanticObjectId(),
            workflow_version=3,
            items=[{"json": {"n": 1, "at": "2026-11-30"}}],
            mode="webhook",
        )
        snapshot = repository.snapshot(small)
        assert snapshot is not None
        read = await repository.by_id_unscoped(str(small.id))  # not saved yet
        assert read is None
        await repository.insert(small)
        read = await repository.by_id_unscoped(str(small.id))
        assert read is not None
        assert repository.from_snapshot(snapshot).model_dump() == read.model_dump()
        big = small.model_copy(update={"items": [{"json": {"text": "x" * SNAPSHOT_MAX_BYTES}}]})
        assert repository.snapshot(big) is None
    finally:
        await mongo.close()


@asynccontextmanager
async def _job_stores(platform) -> AsyncIterator[tuple[Any, Any]]:
    """MongoDB (through Beanie), Redis and arq's queue, as a worker's job uses them."""
    from arq import create_pool

    from klikkflow.kit.stores import arq_redis_settings, create_redis, init_mongo
    from subgraphs.executions.models import DOCUMENTS

    mongo = await init_mongo(platform.mongo_uri, platform.settings.mongo_db, DOCUMENTS)
    redis = create_redis(platform.redis_url)
    queue = await create_pool(arq_redis_settings(platform.redis_url))
    try:
        yield redis, queue
    finally:
        await redis.aclose()
        await queue.aclose()
        await mongo.close()


@pytest.mark.parametrize("why", ["a later try", "a cancel flag"])
async def test_a_job_runs_from_its_snapshot_only_on_its_first_try_and_uncancelled(platform, why):
    """The snapshot is the execution as enqueued. A job's later try, or a job whose
    execution someone cancelled, reads MongoDB: the execution may have moved on, and
    running the stale copy would run a finished execution again."""
    from beanie import PydanticObjectId

    from subgraphs.executions.models import ExecutionDocument, ExecutionStatus
    from subgraphs.executions.repository import repository
    from subgraphs.executions.runs import cancel_key
    from workers.jobs import run_execution

    async with _job_stores(platform) as (redis, queue):
        enqueued = ExecutionDocument(
            id=PydanticObjectId(),
            organization_id=PydanticObjectId(),
            workflow_id=PydanticObjectId(),  # no such workflow: a run of it would fail
            workflow_version=1,
            mode="webhook",
        )
        snapshot = repository.snapshot(enqueued)
        assert snapshot is not None
        moved_on = enqueued.model_copy(
            update={"status": ExecutionStatus.CANCELLED, "finished_at": datetime.now(UTC)}
        )
        await repository.insert(moved_on)
        execution_id = str(enqueued.id)
        try:
            if why == "a later try":
                ctx = {"redis": redis, "queue": queue, "job_try": 2}
            else:
                await redis.set(cancel_key(execution_id), "someone", ex=60)
                ctx = {"redis": redis, "queue": queue, "job_try": 1}
            assert await run_execution(ctx, execution_id, snapshot) is None  # nothing to do
            stored = await repository.by_id_unscoped(execution_id)
            assert stored is not None
            assert (stored.status, stored.error) == (ExecutionStatus.CANCELLED, None)
        finally:
            await redis.delete(cancel_key(execution_id))
            await ExecutionDocument.find({"_id": enqueued.id}).delete()


@pytest.mark.parametrize("status", ["waiting", "running"])
async def test_a_job_finding_the_lease_held_tries_again_only_for_a_waiting_execution(
    platform, status
):
    """A resume call (or a wake-up) can come while the run that parked the execution still
    holds its lease. Its job then tries again a second later instead of giving up, which
    would leave the execution waiting for good. A job for a running execution, which its
    lease holder drives, gives up."""
    from arq.constants import job_key_prefix
    from beanie import PydanticObjectId

    from subgraphs.executions.models import ExecutionDocument, ExecutionStatus
    from subgraphs.executions.repository import repository
    from subgraphs.executions.runs import lease_key
    from workers.jobs import run_execution

    async with _job_stores(platform) as (redis, queue):
        execution = ExecutionDocument(
            id=PydanticObjectId(),
            organization_id=PydanticObjectId(),
            workflow_id=PydanticObjectId(),
            workflow_version=1,
            status=ExecutionStatus(status),
        )
        await repository.insert(execution)
        execution_id = str(execution.id)
        await redis.set(lease_key(execution_id), "another worker", px=30_000)
        retries: list[str] = []
        try:
            ctx = {"redis": redis, "queue": queue, "job_try": 1}
            assert await run_execution(ctx, execution_id, None) is None
            queued = await queue.zrange(queue.default_queue_name, 0, -1, withscores=True)
            retries = [j.decode() for j, _ in queued if j.decode().startswith(f"{execution_id}:")]
            if status == "waiting":
                assert len(retries) == 1, retries
                assert ":held:" in retries[0]
                (score,) = [s for j, s in queued if j.decode() == retries[0]]
                assert score > time.time() * 1000 + 500  # deferred, about a second
            else:
                assert retries == []
        finally:
            for job in retries:
                await queue.zrem(queue.default_queue_name, job)
                await queue.delete(job_key_prefix + job)
            await redis.delete(lease_key(execution_id))
            await ExecutionDocument.find({"_id": execution.id}).delete()


async def test_a_webhook_answer_goes_out_before_its_checkpoint(platform):
    """A Respond to Webhook node's answer reaches the waiting call as soon as the node ran,
    not after the checkpoint that stores its event (which carries the answer as well, for
    a call that missed the first). A call answered by the last node ignores it. The answer
    is dropped from Redis when the execution ends."""
    from beanie import PydanticObjectId

    from klikkflow.engine.state import ExecutionFinished, ExecutionStatus, NodeSucceeded
    from subgraphs.executions.models import ExecutionDocument, ExecutionLogDocument, now
    from subgraphs.executions.repository import repository
    from subgraphs.executions.runs import _Log
    from subgraphs.executions.service import execution as service
    from subgraphs.executions.service import response_key, stream_key

    answer = {"status": 201, "headers": {}, "body": {"ok": True}, "kind": "firstIncomingItem"}
    async with _job_stores(platform) as (redis, _):
        execution = ExecutionDocument(
            id=PydanticObjectId(),
            organization_id=PydanticObjectId(),
            workflow_id=PydanticObjectId(),
            mode="webhook",
        )
        await repository.insert(execution)
        execution_id = str(execution.id)
        sink = _Log(redis, execution, 1)
        sink.FLUSH_SECONDS = 60  # no checkpoint but the ones this test makes

        async def responded(run_index: int) -> None:
            state = {"response": answer}
            await sink(
                NodeSucceeded(
                    at=now(),
                    node="Respond",
                    run_index=run_index,
                    outputs={"main": []},
                    node_state=state,
                )
            )

        try:
            call = asyncio.create_task(service.answer(redis, execution_id, "0-0", {"Respond"}))
            await responded(0)
            assert await asyncio.wait_for(call, 5) == answer
            assert await repository.log(execution.id) == []  # not checkpointed yet
            assert await redis.xlen(stream_key(execution_id)) == 0
            await sink.flush()
            assert [e["type"] for e in await repository.log(execution.id)] == ["node.succeeded"]
            await redis.delete(response_key(execution_id))
            assert await service.answer(redis, execution_id, "0-0", {"Respond"}) == answer

            await responded(1)
            last_node = asyncio.create_task(service.answer(redis, execution_id, "0-0", set()))
            await asyncio.sleep(0.3)
            assert not last_node.done()  # the last node answers: it waits for the end
            assert await redis.exists(response_key(execution_id))
            await sink(ExecutionFinished(at=now(), status=ExecutionStatus.SUCCEEDED))
            assert await asyncio.wait_for(last_node, 5) is None
            assert not await redis.exists(response_key(execution_id))  # gone with the end
        finally:
            await redis.delete(response_key(execution_id), stream_key(execution_id))
            await ExecutionLogDocument.find({"execution_id": execution.id}).delete()
            await ExecutionDocument.find({"_id": execution.id}).delete()
