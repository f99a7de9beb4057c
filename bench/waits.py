"""Many executions that each wait: N executions of Webhook -> Wait 2 s -> No Op, started
through the webhook ingress, with one worker process and then with two. Prints the wall
time from the first request until every execution succeeded, and the workers' peak
memory. Nothing sleeps in a worker: a Wait parks its execution and a deferred job wakes it.

    .venv/bin/python bench/waits.py [--executions 1000] [--concurrency 50]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
from bson import ObjectId
from pymongo import AsyncMongoClient

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.e2e import PORTS, _gql  # noqa: E402
from klikkflow.kit.settings import PlatformSettings  # noqa: E402
from klikkflow.kit.supervisor import Supervisor, free_port  # noqa: E402
from klikkflow.platform import start_services, start_stores  # noqa: E402

WORKFLOW = {
    "nodes": [
        {
            "id": "h",
            "name": "Hook",
            "type": "webhook",
            "typeVersion": 2,
            "parameters": {"path": "wait", "httpMethod": "POST"},
        },
        {
            "id": "w",
            "name": "Wait",
            "type": "wait",
            "typeVersion": 1.1,
            "parameters": {"amount": 2, "unit": "seconds"},
        },
        {"id": "d", "name": "Done", "type": "noOp"},
    ],
    "connections": [{"source": "Hook", "target": "Wait"}, {"source": "Wait", "target": "Done"}],
}


def _rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def _worker_pids() -> list[int]:
    found = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                cmdline = (proc / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if b"worker" in cmdline and b"klikkflow.cli" in cmdline:
                found.append(int(proc.name))
    return found


class PeakMemory(threading.Thread):
    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.peak, self.stop = 0.0, threading.Event()

    def run(self) -> None:
        while not self.stop.wait(0.2):
            self.peak = max(self.peak, sum(_rss_mb(p) for p in _worker_pids()))


async def _round(url: str, mongo: AsyncMongoClient, db: str, n: int, c: int) -> tuple[float, float]:
    executions = mongo[db]["executions"]
    # This round's executions only, counted once a second: the count itself costs the
    # (embedded, Python) MongoDB server time that the platform needs.
    mine = {"_id": {"$gte": ObjectId.from_datetime(datetime.now(UTC) - timedelta(seconds=1))}}
    sampler = PeakMemory()
    sampler.start()
    began = time.perf_counter()
    todo = iter(range(n))
    limits = httpx.Limits(max_connections=c)
    async with httpx.AsyncClient(timeout=60, trust_env=False, limits=limits) as http:

        async def send() -> None:
            for _ in todo:
                answer = await http.post(url, json={})
                assert answer.status_code == 202, answer.text

        await asyncio.gather(*(send() for _ in range(c)))
    while await executions.count_documents({**mine, "status": "succeeded"}) < n:
        await asyncio.sleep(1)
    wall = time.perf_counter() - began
    sampler.stop.set()
    sampler.join()
    return wall, sampler.peak


async def main(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as scratch:
        tmp = args.data_dir or scratch
        settings = PlatformSettings(
            data_dir=Path(tmp),
            secret_key=secrets.token_urlsafe(32),
            **{f"{name}_port": free_port() for name in PORTS},
        )
        supervisor = Supervisor(Path(tmp) / "logs")
        extra: subprocess.Popen[bytes] | None = None
        try:
            platform = await start_stores(supervisor, settings, persist=False)
            await start_services(supervisor, settings, platform, web=False)
            router = platform.urls["router"]
            async with httpx.AsyncClient(timeout=30, trust_env=False) as http:
                signed = await _gql(
                    http,
                    router,
                    """mutation { signUp(input: {email: "w@example.com", name: "W",
                    password: "correct horse battery staple 42", organizationName: "W"}) {
                    ... on AuthPayload { accessToken organization { id } } } }""",
                    {},
                    "",
                )
                token = signed["signUp"]["accessToken"]
                made = await _gql(
                    http,
                    router,
                    """mutation ($d: JSON!) { createWorkflow(input: {name: "waits",
                    definition: $d}) { ... on CreateWorkflowSuccess { workflow { id } } } }""",
                    {"d": WORKFLOW},
                    token,
                )
                await _gql(
                    http,
                    router,
                    "mutation ($id: ID!) { activateWorkflow(input: {id: $id}) { __typename } }",
                    {"id": made["createWorkflow"]["workflow"]["id"]},
                    token,
                )
            org = signed["signUp"]["organization"]["id"]
            url = f"http://{settings.host}:{settings.executions_port}/webhook/{org}/wait"
            mongo: AsyncMongoClient = AsyncMongoClient(platform.mongo_uri)
            n, c = args.executions, args.concurrency
            print(f"{n} executions, each waiting 2 s, started {c} at a time")  # noqa: T201
            one = await _round(url, mongo, settings.mongo_db, n, c)
            print(f"one worker:  {one[0]:6.1f} s wall, workers' peak RSS {one[1]:5.0f} MB")  # noqa: T201
            env = {**os.environ, **platform.store_env(settings)}
            if not args.one_worker_twice:
                with (Path(tmp) / "logs" / "worker-2.log").open("ab") as log:
                    extra = subprocess.Popen(
                        [sys.executable, "-m", "klikkflow.cli", "worker"],
                        env=env,
                        stdout=log,
                        stderr=subprocess.STDOUT,
                    )
            await asyncio.sleep(3)
            two = await _round(url, mongo, settings.mongo_db, n, c)
            print(f"two workers: {two[0]:6.1f} s wall, workers' peak RSS {two[1]:5.0f} MB")  # noqa: T201
            print(f"speed-up with two workers: {one[0] / two[0]:.2f}x")  # noqa: T201
            await mongo.close()
        finally:
            if extra is not None:
                extra.terminate()
                extra.wait(20)
            await supervisor.stop_all()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--executions", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--data-dir", help="keep the stores' data and the logs here")
    parser.add_argument(
        "--one-worker-twice",
        action="store_true",
        help="run the second round with one worker too (tells load from scaling)",
    )
    asyncio.run(main(parser.parse_args()))
