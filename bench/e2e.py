"""End to end through the real webhook ingress, with every execution saved, measured
with the same load generator and checks as the n8n anchor (../shared/bench/n8n): wrk
at each concurrency, p50/p95/p99, errors, CPU and memory of the whole platform.

Starts its own platform (embedded stores, subgraphs, router, one worker) in a temporary
directory, imports the n8n bench workflows A (Webhook -> Set -> If -> Set -> Respond)
and B (Webhook answering at once -> 10 Set nodes) unchanged, activates them, runs the
anchor's driver against /webhook/<org>/bench-a and bench-b, then prints how many
executions were stored and how they ended.

    .venv/bin/python bench/e2e.py [--concurrency 1 10 50] [--duration 20] [--warmup 5]
    ../shared/bench/n8n/run.sh          # n8n 2.41 on the same machine, same driver

As with n8n, the driver waits after each run until the executions it started have all
finished (bench B answers before its executions run) and reports how many there were, their
rate and mean time: it reads n8n's per-workflow counter from a small translation of the
worker's own /metrics (all workflows: the driver runs one at a time and waits for each).

Needs `wrk` (`apt-get install wrk`; installed here when missing and run as root).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
from pymongo import AsyncMongoClient

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from klikkflow.kit.settings import PlatformSettings  # noqa: E402
from klikkflow.kit.supervisor import Supervisor, free_port  # noqa: E402
from klikkflow.platform import start_services, start_stores  # noqa: E402

ANCHOR = ROOT.parent / "shared" / "bench" / "n8n"
UNFINISHED = ("queued", "running")
PORTS = (
    "router",
    "identity",
    "workflows",
    "executions",
    "ai",
    "web",
    "mongo",
    "postgres",
    "redis",
    "worker_metrics",
)


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


async def _set_up(router: str) -> tuple[str, str, list[str]]:
    """Sign up, import and activate bench A and B; the organization id, a token and the
    two workflows' ids."""
    async with httpx.AsyncClient(timeout=30, trust_env=False) as http:
        signed = await _gql(
            http,
            router,
            """mutation { signUp(input: {email: "bench@example.com", name: "Bench",
            password: "correct horse battery staple 42", organizationName: "Bench"}) {
            ... on AuthPayload { accessToken organization { id } } } }""",
            {},
            "",
        )
        token = signed["signUp"]["accessToken"]
        workflows = []
        for name in ("bench-a.json", "bench-b.json"):
            document = json.loads((ROOT / "examples" / "n8n" / name).read_text())
            made = await _gql(
                http,
                router,
                """mutation ($d: JSON!) { importWorkflow(input: {document: $d}) {
                ... on CreateWorkflowSuccess { workflow { id } } } }""",
                {"d": document},
                token,
            )
            await _gql(
                http,
                router,
                "mutation ($id: ID!) { activateWorkflow(input: {id: $id}) { __typename } }",
                {"id": made["importWorkflow"]["workflow"]["id"]},
                token,
            )
            workflows.append(made["importWorkflow"]["workflow"]["id"])
    return signed["signUp"]["organization"]["id"], token, workflows


def _n8n_metrics(worker_metrics: str, workflow_ids: list[str]) -> ThreadingHTTPServer:
    """Serve the worker's count and time of finished executions as n8n's per-workflow
    `n8n_workflow_execution_duration_seconds` (what the driver drains by)."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            with urllib.request.urlopen(worker_metrics, timeout=10) as answer:
                text = answer.read().decode()
            values = {"count": 0.0, "sum": 0.0}
            for row in text.splitlines():
                for kind in values:
                    if row.startswith(f"klikkflow_execution_duration_seconds_{kind} "):
                        values[kind] = float(row.split()[-1])
            body = "".join(
                f'n8n_workflow_execution_duration_seconds_{kind}{{workflow_id="{wf}"}} {value}\n'
                for wf in workflow_ids
                for kind, value in values.items()
            ).encode()
            self.send_response(200)
            self.send_header("content-type", "text/plain")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def _ensure_wrk() -> None:
    if shutil.which("wrk"):
        return
    if os.geteuid() != 0:
        sys.exit("wrk is needed: apt-get install wrk")
    subprocess.run(["apt-get", "update", "-qq"], check=True)
    subprocess.run(["apt-get", "install", "-y", "-qq", "wrk"], check=True)


async def _stored(settings: PlatformSettings, mongo_uri: str) -> tuple[dict[str, int], float]:
    """Executions by status once none is queued or running (the driver stops waiting when
    the finished count stands still for a second), and how long that took (at most 180 s).
    While it waits it counts the unfinished ones only, each a range of the status index:
    grouping them all every time read every stored execution, which slowed the worker
    that it waited for to a crawl."""
    client: AsyncMongoClient = AsyncMongoClient(mongo_uri)
    executions = client[settings.mongo_db]["executions"]
    began = time.monotonic()
    try:
        while time.monotonic() - began < 180:
            counts = [await executions.count_documents({"status": s}) for s in UNFINISHED]
            if not any(counts):
                break
            await asyncio.sleep(1)
        waited = time.monotonic() - began
        rows = await executions.aggregate([{"$group": {"_id": "$status", "n": {"$sum": 1}}}])
        return {row["_id"]: row["n"] async for row in rows}, waited
    finally:
        await client.close()


async def main(args: argparse.Namespace) -> None:
    _ensure_wrk()
    with tempfile.TemporaryDirectory() as tmp:
        settings = PlatformSettings(
            data_dir=Path(tmp),
            secret_key=secrets.token_urlsafe(32),
            **{f"{name}_port": free_port() for name in PORTS},
        )
        supervisor = Supervisor(Path(tmp) / "logs")
        try:
            platform = await start_stores(supervisor, settings, persist=False)
            await start_services(supervisor, settings, platform, web=False)
            org, _, (bench_a, bench_b) = await _set_up(platform.urls["router"])
            base = f"http://{settings.host}:{settings.executions_port}/webhook/{org}"
            metrics = _n8n_metrics(platform.urls["worker-metrics"], [bench_a, bench_b])
            results = Path(tmp) / "results.jsonl"
            driver = [sys.executable, str(ANCHOR / "bench.py")]
            run = [
                *driver,
                "run",
                "--label",
                "klikkflow",
                "--out",
                str(results),
                "--pid",
                str(os.getpid()),
                "--metrics",
                f"http://127.0.0.1:{metrics.server_address[1]}/metrics",
                "--target",
                "a",
                f"{base}/bench-a",
                bench_a,
                "--target",
                "b",
                f"{base}/bench-b",
                bench_b,
                "--conc",
                *[str(c) for c in args.concurrency],
                "--duration",
                str(args.duration),
                "--warmup",
                str(args.warmup),
            ]
            await asyncio.to_thread(subprocess.run, run, check=True)
            metrics.shutdown()
            subprocess.run([*driver, "report", str(results)], check=True)
            stored, waited = await _stored(settings, platform.mongo_uri)
            total = sum(stored.values())
            print(f"executions stored: {total} {stored} (the last {waited:.0f} s after)")  # noqa: T201
        finally:
            await supervisor.stop_all()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 10, 50])
    parser.add_argument("--duration", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=5)
    asyncio.run(main(parser.parse_args()))
