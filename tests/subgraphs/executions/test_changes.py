"""`executionsChanged` through the router: live status changes of an organization's
executions, filtered by workflow, replayed from a cursor, never another tenant's."""

from __future__ import annotations

import asyncio
import contextlib

from tests.factories.executions import run_and_wait
from tests.factories.identity import sign_up
from tests.factories.subscriptions import ws_subscribe
from tests.factories.workflows import create_workflow

CHANGES = """subscription ($w: ID, $after: String) { executionsChanged(workflowId: $w,
  after: $after) { cursor executionId workflowId status } }"""


def _listen(platform, token, variables, limit):
    return asyncio.create_task(
        ws_subscribe(platform.router_url, CHANGES, variables, token, limit=limit)
    )


async def test_status_changes_stream_live_and_replay(platform, client):
    account = await sign_up(client, platform.router_url, "Watchers")
    stranger = await sign_up(client, platform.router_url, "Strangers")
    watched = await create_workflow(client, platform.router_url, account, "Watched")
    other = await create_workflow(client, platform.router_url, account, "Other")
    mine = _listen(platform, account.token, {"w": watched, "after": None}, 3)
    theirs = _listen(platform, stranger.token, {"w": None, "after": None}, 1)
    await asyncio.sleep(1)  # both are listening
    await run_and_wait(client, platform.router_url, account, other)
    done = await run_and_wait(client, platform.router_url, account, watched)
    assert done["status"] == "SUCCEEDED"
    changes = [p["data"]["executionsChanged"] for p in await asyncio.wait_for(mine, 20)]
    assert [c["status"] for c in changes] == ["QUEUED", "RUNNING", "SUCCEEDED"]
    assert {c["workflowId"] for c in changes} == {watched}
    assert len({c["executionId"] for c in changes}) == 1
    await asyncio.sleep(1)
    assert not theirs.done()  # another organization's runs never reach it
    theirs.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await theirs
    replayed = await asyncio.wait_for(
        ws_subscribe(
            platform.router_url,
            CHANGES,
            {"w": watched, "after": changes[0]["cursor"]},
            account.token,
            limit=2,
        ),
        20,
    )
    assert [p["data"]["executionsChanged"]["status"] for p in replayed] == [
        "RUNNING",
        "SUCCEEDED",
    ]
