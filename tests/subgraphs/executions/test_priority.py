"""Queue priority: a HIGH execution queued after normal ones is taken before them."""

from __future__ import annotations

from datetime import datetime

from tests.factories.executions import wait_for_status
from tests.factories.graphql import data, gql
from tests.factories.identity import sign_up
from tests.factories.workers import paused, platform_workers, start_worker, stop
from tests.factories.workflows import create_workflow

RUN = """mutation ($id: ID!, $p: ExecutionPriority!) { runWorkflow(input: {workflowId: $id,
  priority: $p}) { ... on RunWorkflowSuccess { execution { id } } } }"""
STARTED = "query ($id: ID!) { execution(id: $id) { startedAt } }"


async def test_a_high_priority_execution_jumps_the_queue(platform, client, tmp_path):
    account = await sign_up(client, platform.router_url, "Hurried")
    workflow_id = await create_workflow(client, platform.router_url, account, "Queued")

    async def run(priority: str) -> str:
        variables = {"id": workflow_id, "p": priority}
        answer = data(await gql(client, platform.router_url, RUN, variables, account.token))
        return answer["runWorkflow"]["execution"]["id"]

    with paused(platform_workers(platform.redis_url)):
        normal = [await run("NORMAL") for _ in range(3)]
        urgent = await run("HIGH")
        worker = start_worker(platform, tmp_path / "one-slot.log", worker_max_jobs="1")
        try:
            for execution_id in [*normal, urgent]:
                await wait_for_status(client, platform.router_url, account, execution_id)
        finally:
            stop(worker)

    async def started(execution_id: str) -> datetime:
        found = data(
            await gql(client, platform.router_url, STARTED, {"id": execution_id}, account.token)
        )
        return datetime.fromisoformat(found["execution"]["startedAt"])

    first_normal = min([await started(i) for i in normal])
    assert await started(urgent) < first_normal
