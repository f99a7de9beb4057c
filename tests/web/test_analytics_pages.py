"""The analytics page over plain HTTP, against the real router, AI service and worker:
executions run by the worker and rolled up by its cron show in totals, charts and the
breakdown (by workflow, trigger, day), a workflow filter narrows them, tokens of a
described workflow show by day and model, names are escaped, and a refused range is
told in words."""

from __future__ import annotations

import asyncio
import html
import json
import re
import secrets
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from klikkflow.platform import Platform
from tests.factories.credentials import create_credential
from tests.factories.designs import DESIGN
from tests.factories.executions import run_and_wait
from tests.factories.graphql import data, gql
from tests.factories.identity import Account
from tests.factories.llm import LlmStandIn, Reply, llm_stand_in
from tests.factories.workflows import chain, create_workflow, link, node

HTMX = {"HX-Request": "true"}
EVIL = '<script>alert("owned")</script>'
TOTALS = """query ($input: AnalyticsInput!) { analytics(input: $input) {
  ... on ExecutionAnalytics { totals { executions } } } }"""


@pytest.fixture(scope="module")
async def llm() -> AsyncIterator[LlmStandIn]:
    async with llm_stand_in() as stand_in:
        yield stand_in


@pytest.fixture
async def signed_in(web_url: str) -> AsyncIterator[httpx.AsyncClient]:
    """A dashboard session of a new organization."""
    async with httpx.AsyncClient(base_url=web_url, trust_env=False, timeout=60) as client:
        await client.get("/signup")
        tag = secrets.token_hex(4)
        account = {
            "email": f"analytics-{tag}@example.com",
            "name": f"Ana Lytics {tag}",
            "password": f"{secrets.token_urlsafe(12)}-An4!",
            "organizationName": f"Analytics Org {tag}",
            "csrf_token": client.cookies["kf_csrf"],
        }
        response = await client.post("/signup", data=account)
        assert response.status_code == 303, response.text
        yield client


def visible(markup: str) -> str:
    """The text a person reads (an SVG's <title> tooltips left out)."""
    markup = re.sub(r"<(script|style|title)[^>]*>.*?</\1>", " ", markup, flags=re.S)
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", markup)).split())


def failing() -> dict[str, Any]:
    stop = node("Stop", "stopAndError", parameters={"errorMessage": "no"})
    return {"nodes": [node("Start", "manualTrigger"), stop], "connections": [link("Start", "Stop")]}


def account_of(client: httpx.AsyncClient) -> Account:
    return Account(client.cookies["kf_token"], "", "", "")


async def rolled_up(router_url: str, account: Account, executions: int) -> None:
    """Wait until the worker's rollup counted ``executions`` this week."""
    today = datetime.now(UTC).date()
    window = {"from": (today - timedelta(days=6)).isoformat(), "to": today.isoformat()}
    found: Any = None
    async with httpx.AsyncClient(timeout=15, trust_env=False) as client:
        for _ in range(120):
            answer = await gql(client, router_url, TOTALS, {"input": window}, account.token)
            found = data(answer)["analytics"]["totals"]["executions"]
            if found >= executions:
                return
            await asyncio.sleep(0.25)
    raise AssertionError(f"the rollup counted {found} of {executions} executions")


async def run_some(platform: Platform, account: Account) -> tuple[str, str]:
    """Two succeeded runs of "Nightly sync" and one failed run of a workflow named like
    a script; the rollup has counted them when this returns."""
    router = platform.router_url
    async with httpx.AsyncClient(timeout=30, trust_env=False) as client:
        good = await create_workflow(client, router, account, "Nightly sync", chain("A"))
        bad = await create_workflow(client, router, account, EVIL, failing())
        statuses = [
            (await run_and_wait(client, router, account, workflow))["status"]
            for workflow in (good, good, bad)
        ]
    assert statuses == ["SUCCEEDED", "SUCCEEDED", "FAILED"]
    await rolled_up(router, account, 3)
    return good, bad


async def describe_a_workflow(
    client: httpx.AsyncClient, platform: Platform, llm: LlmStandIn
) -> None:
    """Describe a workflow on the dashboard with an openAiApi credential of the stand-in."""
    values = {"apiKey": "sk-analytics-test-123456", "baseUrl": llm.openai_url}
    async with httpx.AsyncClient(timeout=15, trust_env=False) as router:
        credential = await create_credential(
            router, platform.router_url, account_of(client), "openAiApi", values, "Stand-in"
        )
    form = {"description": "Greet the team", "credentialId": credential, "model": "gpt-4o-mini"}
    response = await client.post(
        "/ai/describe", data={**form, "csrf_token": client.cookies["kf_csrf"]}
    )
    assert response.status_code == 303, response.text


def total(page: str, key: str) -> str:
    found = re.search(rf'data-total="{key}"><dt>[^<]*</dt><dd>([^<]*)</dd>', page)
    assert found, f"no total {key}"
    return found.group(1)


def rows(page: str) -> list[str]:
    return [visible(r) for r in re.findall(r"<tr data-row=.*?</tr>", page, flags=re.S)]


async def test_the_page_needs_a_session(web_url: str) -> None:
    async with httpx.AsyncClient(base_url=web_url, trust_env=False) as client:
        response = await client.get("/analytics")
    assert response.status_code == 303
    assert response.headers["location"].startswith("/login?next=")


async def test_executions_show_in_totals_charts_and_by_workflow(
    signed_in: httpx.AsyncClient, platform: Platform
) -> None:
    hub = await signed_in.get("/ai")
    assert 'href="/analytics" data-hub="analytics"' in hub.text
    good, bad = await run_some(platform, account_of(signed_in))

    page = (await signed_in.get("/analytics?range=7")).text
    assert (total(page, "executions"), total(page, "succeeded"), total(page, "failed")) == (
        "3",
        "2",
        "1",
    )
    assert total(page, "failure-rate") == "33.3%"
    today = datetime.now(UTC).date().isoformat()
    bar = re.search(rf'<g class="chart-bar" data-category="{today}" data-total="(\d+)">', page)
    assert bar, "no bar for today"
    assert bar.group(1) == "3"
    assert page.count('<g class="chart-bar"') == 7  # every day of the week, empty ones too
    # By workflow (the default), most executions first, names escaped everywhere.
    first, second = rows(page)
    assert first.startswith("Nightly sync 2 0 0% ")
    assert second.startswith(f"{EVIL} 1 1 100% ")
    assert f'data-workflow="{good}"' in page
    assert f'href="/workflows/{bad}"' in page
    assert "<script>alert" not in page
    assert "&lt;script&gt;alert(&#34;owned&#34;)&lt;/script&gt;" in page
    assert f'<option value="{bad}" >&lt;script&gt;' in page  # the workflow filter

    # One workflow only: its numbers, tokens included.
    only = (await signed_in.get(f"/analytics?range=7&workflow={good}")).text
    assert (total(only, "executions"), total(only, "failed")) == ("2", "0")
    assert f'<option value="{good}" selected>Nightly sync</option>' in only


async def test_the_breakdown_follows_the_grouping_as_an_htmx_fragment(
    signed_in: httpx.AsyncClient, platform: Platform
) -> None:
    await run_some(platform, account_of(signed_in))

    by_mode = await signed_in.get("/analytics?range=30&group=mode", headers=HTMX)
    assert by_mode.text.lstrip().startswith('<div id="analytics-results"')
    assert "<html" not in by_mode.text
    assert [r.split()[:3] for r in rows(by_mode.text)] == [["manual", "3", "1"]]
    # The form's days show what "last 30 days" covers (swapped out of band).
    today = datetime.now(UTC).date()
    assert '<div id="analytics-dates" class="analytics-dates" hx-swap-oob="true">' in by_mode.text
    assert f'value="{today - timedelta(days=29)}"' in by_mode.text

    by_day = (await signed_in.get("/analytics?range=7&group=day", headers=HTMX)).text
    days = rows(by_day)
    assert len(days) == 7
    assert days[-1].startswith(f"{today} 3 1 33.3%")
    assert all(d.split()[1:3] == ["0", "0"] for d in days[:-1])

    both = (await signed_in.get("/analytics?range=7&group=day_and_workflow", headers=HTMX)).text
    assert 'data-chart="chart-workflows-by-day"' in both
    assert [r.split()[:3] for r in rows(both)][0] == [str(today), "Nightly", "sync"]
    assert "<script>alert" not in both


async def test_a_range_the_api_refuses_is_told(signed_in: httpx.AsyncClient) -> None:
    long = await signed_in.get("/analytics?range=custom&from=2020-01-01&to=2024-12-31")
    assert long.status_code == 200
    banner = re.search(r'role="alert" data-error="(\w+)">(.*?)</div>', long.text, re.S)
    assert banner, "no error banner"
    assert banner.group(1) == "ValidationError"
    assert visible(banner.group(2)) == "These dates were refused. To: the range is at most 366 days"
    assert 'id="analytics-to" name="to" type="date" value="2024-12-31"' in long.text
    assert 'data-chart="chart-executions"' not in long.text

    backwards = await signed_in.get(
        "/analytics?range=custom&from=2024-03-02&to=2024-03-01", headers=HTMX
    )
    assert "To: is before from" in visible(backwards.text)
    assert "hx-swap-oob" not in backwards.text  # a person's own days are left alone

    unreadable = await signed_in.get("/analytics?range=custom&from=&to=2024-03-01")
    assert "Pick both days of the range." in visible(unreadable.text)
    assert 'data-field-error="from"' in unreadable.text
    assert 'data-field-error="to"' not in unreadable.text


async def test_tokens_of_a_described_workflow_show_by_day_and_model(
    signed_in: httpx.AsyncClient, platform: Platform, llm: LlmStandIn
) -> None:
    empty = (await signed_in.get("/analytics?range=7")).text
    assert 'data-empty="tokens"' in empty
    llm.script(Reply.say(json.dumps(DESIGN), input_tokens=1200, output_tokens=345))
    await describe_a_workflow(signed_in, platform, llm)

    page = (await signed_in.get("/analytics?range=7")).text
    assert 'data-chart="chart-tokens"' in page
    summary = re.search(r"<p class=\"analytics-summary\" data-tokens-summary>(.*?)</p>", page, re.S)
    assert summary
    assert visible(summary.group(1)) == "1,545 tokens (1,200 input, 345 output) in 1 call."
    today = datetime.now(UTC).date().isoformat()
    assert f'<g class="chart-bar" data-category="{today}" data-total="1545">' in page
    model = re.search(r'<tr data-model="gpt-4o-mini">(.*?)</tr>', page, re.S)
    assert model
    assert visible(model.group(1)) == "gpt-4o-mini openai 1 1,200 345 1,545"
