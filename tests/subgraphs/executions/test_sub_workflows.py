"""Execute Workflow in the workers: the sub-workflow runs as an execution of its own,
linked to its parent, and hands its last output back; failures and missing workflows
fail the parent's node with the reason."""

from __future__ import annotations

from tests.factories.executions import output, run_and_wait, wait_for_status
from tests.factories.graphql import data, gql
from tests.factories.identity import sign_up
from tests.factories.workflows import create_workflow, link, node

CHILDREN = """query ($id: ID!) { executions(filter: {workflowId: $id}) { edges { node {
  id mode parentId status } } } }"""


def _double() -> dict:
    return node(
        "Double",
        "set",
        typeVersion=3.4,
        parameters={
            "mode": "manual",
            "includeOtherFields": False,
            "options": {},
            "assignments": {
                "assignments": [
                    {"id": "d", "name": "twice", "type": "number", "value": "={{ $json.n * 2 }}"}
                ]
            },
        },
    )


async def test_a_sub_workflow_runs_linked_to_its_parent_and_answers(platform, client):
    account = await sign_up(client, platform.router_url, "Nesters")
    child = await create_workflow(
        client,
        platform.router_url,
        account,
        "Child",
        {
            "nodes": [node("In", "executeWorkflowTrigger"), _double()],
            "connections": [link("In", "Double")],
        },
    )
    call = node("Call child", "executeWorkflow", parameters={"workflowId": child})
    parent = await create_workflow(
        client,
        platform.router_url,
        account,
        "Parent",
        {
            "nodes": [node("Start", "manualTrigger"), call, node("After")],
            "connections": [link("Start", "Call child"), link("Call child", "After")],
        },
    )
    done = await run_and_wait(client, platform.router_url, account, parent, [{"n": 4}, {"n": 5}])
    assert done["status"] == "SUCCEEDED", done
    assert output(done, "After") == [{"twice": 8}, {"twice": 10}]
    found = data(await gql(client, platform.router_url, CHILDREN, {"id": child}, account.token))
    [edge] = found["executions"]["edges"]
    assert edge["node"]["mode"] == "sub-workflow"
    assert edge["node"]["status"] == "SUCCEEDED"
    parents = data(await gql(client, platform.router_url, CHILDREN, {"id": parent}, account.token))[
        "executions"
    ]["edges"]
    assert edge["node"]["parentId"] == parents[0]["node"]["id"]


async def test_a_failing_or_missing_sub_workflow_fails_the_calling_node(platform, client):
    account = await sign_up(client, platform.router_url, "Broken nests")
    stop = node("Stop", "stopAndError", parameters={"errorMessage": "child says no"})
    child = await create_workflow(
        client,
        platform.router_url,
        account,
        "Bad child",
        {
            "nodes": [node("In", "executeWorkflowTrigger"), stop],
            "connections": [link("In", "Stop")],
        },
    )
    for target, reason in [(child, "child says no"), ("6b0000000000000000000000", "no workflow")]:
        call = node("Call", "executeWorkflow", parameters={"workflowId": target})
        parent = await create_workflow(
            client,
            platform.router_url,
            account,
            "Caller",
            {
                "nodes": [node("Start", "manualTrigger"), call],
                "connections": [link("Start", "Call")],
            },
        )
        done = await run_and_wait(client, platform.router_url, account, parent)
        assert done["status"] == "FAILED"
        assert done["error"]["node"] == "Call"
        assert reason in done["error"]["message"]


async def test_a_sub_workflow_not_waited_for_is_queued_on_its_own(platform, client):
    account = await sign_up(client, platform.router_url, "Fire and forget")
    child = await create_workflow(
        client,
        platform.router_url,
        account,
        "Later",
        {
            "nodes": [node("In", "executeWorkflowTrigger"), _double()],
            "connections": [link("In", "Double")],
        },
    )
    call = node(
        "Call",
        "executeWorkflow",
        parameters={"workflowId": child, "options": {"waitForSubWorkflow": False}},
    )
    parent = await create_workflow(
        client,
        platform.router_url,
        account,
        "Launcher",
        {"nodes": [node("Start", "manualTrigger"), call], "connections": [link("Start", "Call")]},
    )
    done = await run_and_wait(client, platform.router_url, account, parent, [{"n": 1}])
    assert done["status"] == "SUCCEEDED"
    assert output(done, "Call") == [{"n": 1}]  # its own items go on
    found = data(await gql(client, platform.router_url, CHILDREN, {"id": child}, account.token))
    [edge] = found["executions"]["edges"]
    finished = await wait_for_status(client, platform.router_url, account, edge["node"]["id"])
    assert output(finished, "Double") == [{"twice": 2}]
