"""Execution history at a million executions: how long the history queries take through
the router when one organization has stored that many.

Starts its own platform (embedded stores, subgraphs, router, one worker), signs up one
organization with 20 workflows, and writes N finished executions straight into MongoDB
(spread over 30 days, 95% succeeded, 4% failed, 1% cancelled; every 100th one with a
log of 12 events), through the same indexes the services created. Then it asks the
router, as the dashboard does, and prints p50/p95/max per query:

- the newest page; one workflow's newest page; only failed ones; one workflow's failed
  ones; one day 10 days ago (time window); page 50 (cursor after 49 pages);
- `execution(id)` with every node run, for executions that have a log.

With `--data-dir DIR` the stores keep their data there and a later run reuses it (the
executions are written once).

    .venv/bin/python bench/history.py [--executions 1000000] [--repeat 30] [--data-dir DIR]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import secrets
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from bson import ObjectId
from pymongo import AsyncMongoClient

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from klikkflow.kit.settings import PlatformSettings  # noqa: E402
from klikkflow.kit.supervisor import Supervisor, free_port  # noqa: E402
from klikkflow.platform import start_services, start_stores  # noqa: E402

PORTS = ("router", "identity", "workflows", "executions", "ai", "web", "mongo", "postgres", "redis")
WORKFLOWS = 20
DAYS = 30
BATCH = 5_000
EMAIL = "history@example.com"
PASSWORD = "correct horse battery staple 42"
PAGE = """query ($first: Int!, $after: String, $filter: ExecutionFilterInput) {
  executions(first: $first, after: $after, filter: $filter) {
    edges { cursor node { id status mode workflow { id } createdAt startedAt finishedAt } }
    pageInfo { hasNextPage endCursor } } }"""
ONE = """query ($id: ID!) { execution(id: $id) { id status
  nodes { node status tries startedAt finishedAt outputs } } }"""


async def _gql(http: httpx.AsyncClient, url: str, query: str, variables: dict, token: str) -> dict:
    answer = (
        await http.post(
            url,
            json={"query": query, "variables": variables},
            headers={"authorization": f"Bearer {token}"} if token else {},
        )
    ).json()
    assert not answer.get("errors"), answer
    return answer["data"]


async def _account(http: httpx.AsyncClient, router: str) -> tuple[str, str, list[str]]:
    """Sign up (or log in again, with --data-dir) and make the workflows; org, token, ids."""
    signed = (
        await _gql(
            http,
            router,
            f"""mutation {{ signUp(input: {{email: "{EMAIL}", name: "History",
            password: "{PASSWORD}", organizationName: "History"}}) {{
            __typename ... on AuthPayload {{ accessToken organization {{ id }} }} }} }}""",
            {},
            "",
        )
    )["signUp"]
    if signed["__typename"] != "AuthPayload":
        signed = (
            await _gql(
                http,
                router,
                f"""mutation {{ logIn(input: {{email: "{EMAIL}", password: "{PASSWORD}"}}) {{
                ... on AuthPayload {{ accessToken organization {{ id }} }} }} }}""",
                {},
                "",
            )
        )["logIn"]
    token, org = signed["accessToken"], signed["organization"]["id"]
    found = await _gql(
        http, router, "{ workflows(first: 100) { edges { node { id } } } }", {}, token
    )
    ids = [e["node"]["id"] for e in found["workflows"]["edges"]]
    for n in range(len(ids), WORKFLOWS):
        definition = {
            "nodes": [{"id": "start", "name": "Start", "type": "manualTrigger"}],
            "connections": [],
        }
        made = await _gql(
            http,
            router,
            """mutation ($input: CreateWorkflowInput!) { createWorkflow(input: $input) {
              __typename ... on CreateWorkflowSuccess { workflow { id } } } }""",
            {"input": {"name": f"History {n}", "definition": definition}},
            token,
        )
        ids.append(made["createWorkflow"]["workflow"]["id"])
    return org, token, ids


def _log(execution_id: ObjectId, org: ObjectId, at: datetime) -> dict[str, Any]:
    """A page holding a 12-event log: Start and five nodes, each started and succeeded."""
    item = [{"json": {"order": 1, "total": 22.5, "tag": "GADGET"}}]
    entries = []
    for n, name in enumerate(["Start", "A", "B", "C", "D", "E"]):
        for kind in ("node.started", "node.succeeded"):
            event: dict[str, Any] = {"type": kind, "at": at.isoformat(), "node": name}
            event["run_index"] = 0
            if kind == "node.started":
                event["inputs"] = {"main": item}
            else:
                event["outputs"] = {"main": item}
            entries.append(
                {
                    "seq": 2 + 2 * n + (kind == "node.succeeded"),
                    "type": kind,
                    "status": "running",
                    "at": at,
                    "data": {"engine": event},
                }
            )
    return {
        "execution_id": execution_id,
        "organization_id": org,
        "seq": 2,
        "last_seq": entries[-1]["seq"],
        "events": entries,
    }


async def _fill(mongo_uri: str, db: str, org: str, workflows: list[str], total: int) -> None:
    client: AsyncMongoClient = AsyncMongoClient(mongo_uri)
    try:
        executions = client[db]["executions"]
        org_id = ObjectId(org)
        have = await executions.count_documents({"organization_id": org_id})
        rng = random.Random(7)
        workflow_ids = [ObjectId(w) for w in workflows]
        span = timedelta(days=DAYS)
        if have < total:
            start = datetime.now(UTC) - span
            times = [(i, start + span * i / total) for i in range(have, total)]
            await _write(client[db], org_id, workflow_ids, rng, times, len(times))
        else:
            print(f"  {have:,} executions already stored")  # noqa: T201
        # Filling took a while: executions up to now at the same rate, so that the newest
        # page looks back as far as on a live system (not over the fill's minutes).
        newest = (
            await executions.find({"organization_id": org_id, "status": "succeeded"})
            .sort("_id", -1)
            .limit(1)
            .to_list()
        )
        last = newest[0]["created_at"].replace(tzinfo=UTC)
        gap = datetime.now(UTC) - last
        more = int(total * (gap / span))
        times = [(total + k, last + gap * (k + 1) / (more + 1)) for k in range(more)]
        await _write(client[db], org_id, workflow_ids, rng, times, len(times))
        print(f"  {more:,} more for the {gap.total_seconds():.0f} s since the newest")  # noqa: T201
    finally:
        await client.close()


async def _write(
    db: Any,
    org_id: ObjectId,
    workflow_ids: list[ObjectId],
    rng: random.Random,
    times: list[tuple[int, datetime]],
    total: int,
) -> None:
    """Executions numbered and timed as `times` says, a batch at a time."""
    began = time.perf_counter()
    for done in range(0, len(times), BATCH):
        docs, pages = [], []
        for i, at in times[done : done + BATCH]:
            oid = ObjectId(ObjectId.from_datetime(at).binary[:4] + os.urandom(8))
            roll = rng.random()
            status = "succeeded" if roll < 0.95 else "failed" if roll < 0.99 else "cancelled"
            docs.append(
                {
                    "_id": oid,
                    "organization_id": org_id,
                    "workflow_id": rng.choice(workflow_ids),
                    "workflow_version": 1,
                    "mode": "webhook",
                    "items": [{"json": {"order": i}}],
                    "start_node": "Start",
                    "error": {"message": "bench failure"} if status == "failed" else None,
                    "priority": "normal",
                    "depth": 0,
                    "status": status,
                    "created_at": at,
                    "started_at": at,
                    "finished_at": at + timedelta(milliseconds=rng.randint(5, 500)),
                }
            )
            if i % 100 == 0:
                pages.append(_log(oid, org_id, at))
        if docs:
            await db["executions"].insert_many(docs, ordered=False)
        if pages:
            await db["execution_log"].insert_many(pages, ordered=False)
        if (done // BATCH) % 20 == 0 and total > BATCH:
            rate = (done + len(docs)) / (time.perf_counter() - began)
            print(f"  {done + len(docs):,} of {total:,} stored ({rate:,.0f}/s)", flush=True)  # noqa: T201


async def _timed(repeat: int, call) -> list[float]:
    times = []
    for _ in range(repeat):
        began = time.perf_counter()
        await call()
        times.append((time.perf_counter() - began) * 1000)
    return times


def _row(name: str, times: list[float], note: str = "") -> str:
    times = sorted(times)
    p95 = times[min(len(times) - 1, int(len(times) * 0.95))]
    return (
        f"| {name} | {statistics.median(times):.1f} | {p95:.1f} | {times[-1]:.1f} | "
        f"{len(times)} | {note} |"
    )


async def _measure(
    http: httpx.AsyncClient, router: str, token: str, workflows: list[str], repeat: int
) -> list[str]:
    async def page(filter: dict | None, first: int = 20, after: str | None = None) -> dict:
        variables = {"first": first, "after": after, "filter": filter}
        return (await _gql(http, router, PAGE, variables, token))["executions"]

    rows = []
    newest = await page(None)
    assert len(newest["edges"]) == 20
    rows.append(_row("newest 20", await _timed(repeat, lambda: page(None))))
    wf = workflows[0]
    rows.append(_row("one workflow", await _timed(repeat, lambda: page({"workflowId": wf}))))
    failed = {"statuses": ["FAILED"]}
    got = await page(failed)
    assert got["edges"]
    assert all(e["node"]["status"] == "FAILED" for e in got["edges"])
    rows.append(_row("failed only", await _timed(repeat, lambda: page(failed))))
    both = {"workflowId": wf, "statuses": ["FAILED"]}
    rows.append(_row("one workflow, failed", await _timed(repeat, lambda: page(both))))
    day = datetime.now(UTC) - timedelta(days=10)
    window = {"since": day.isoformat(), "until": (day + timedelta(days=1)).isoformat()}
    got = await page(window)
    assert got["edges"], "no executions in the window"
    rows.append(_row("one day, 10 days ago", await _timed(repeat, lambda: page(window))))
    cursor = None
    for _ in range(49):
        cursor = (await page(None, after=cursor))["pageInfo"]["endCursor"]
    rows.append(_row("page 50 (after 49)", await _timed(repeat, lambda: page(None, after=cursor))))
    with_log = [e["node"]["id"] for e in (await page(None, first=100))["edges"]]
    ids = []
    for candidate in with_log:
        found = (await _gql(http, router, ONE, {"id": candidate}, token))["execution"]
        if found["nodes"]:
            ids.append(candidate)
    note = f"{len(ids)} with logs among the newest 100"
    if ids:
        rng = random.Random(3)
        times = await _timed(
            repeat, lambda: _gql(http, router, ONE, {"id": rng.choice(ids)}, token)
        )
        rows.append(_row("execution(id) with node runs", times, note))
    return rows


def _kept_key(data_dir: Path) -> str:
    """The secret key of the stores in `data_dir`, made on their first run: the sealed
    signing keys open again on the next."""
    kept = data_dir / "bench-secret-key"
    if not kept.exists():
        data_dir.mkdir(parents=True, exist_ok=True)
        kept.write_text(secrets.token_urlsafe(32))
    return kept.read_text()


async def main(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        data_dir = Path(args.data_dir) if args.data_dir else Path(tmp)
        settings = PlatformSettings(
            data_dir=data_dir,
            secret_key=args.secret_key or _kept_key(data_dir),
            **{f"{name}_port": free_port() for name in PORTS},
        )
        supervisor = Supervisor(Path(tmp) / "logs")
        try:
            platform = await start_stores(supervisor, settings, persist=bool(args.data_dir))
            await start_services(supervisor, settings, platform, web=False)
            router = platform.urls["router"]
            async with httpx.AsyncClient(timeout=120, trust_env=False) as http:
                org, token, workflows = await _account(http, router)
                began = time.perf_counter()
                await _fill(platform.mongo_uri, settings.mongo_db, org, workflows, args.executions)
                print(f"  stored in {time.perf_counter() - began:.0f} s")  # noqa: T201
                _, token, _ = await _account(http, router)  # a fresh token after a long fill
                rows = await _measure(http, router, token, workflows, args.repeat)
            print(
                f"\n{args.executions:,} executions in one organization, {WORKFLOWS} workflows,"  # noqa: T201
                f" through the router ({os.cpu_count()} cores)"
            )
            print("| query | p50 ms | p95 ms | max ms | n | note |")  # noqa: T201
            print("|---|---|---|---|---|---|")  # noqa: T201
            for row in rows:
                print(row)  # noqa: T201
        finally:
            await supervisor.stop_all()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--executions", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=30)
    parser.add_argument("--data-dir", default="")
    # Default: one made for the data directory on its first run, and kept there.
    parser.add_argument("--secret-key", default="")
    asyncio.run(main(parser.parse_args()))
