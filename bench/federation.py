"""Federation overhead: one-entity and cross-subgraph queries, direct vs through the router.

Starts its own platform (embedded stores, four subgraphs, router, worker) in a temporary
directory, then prints requests/s and latency percentiles for each case.

    .venv/bin/python bench/federation.py [--requests 2000] [--concurrency 16]
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from klikkflow.kit.settings import PlatformSettings  # noqa: E402
from klikkflow.kit.supervisor import Supervisor, free_port  # noqa: E402
from klikkflow.platform import start_services, start_stores  # noqa: E402

PORTS = ("router", "identity", "workflows", "executions", "ai", "web", "mongo", "postgres", "redis")


async def _post(http: httpx.AsyncClient, url: str, query: str, variables: dict, token: str) -> dict:
    response = await http.post(
        url,
        json={"query": query, "variables": variables},
        headers={"authorization": f"Bearer {token}"},
    )
    body = response.json()
    assert not body.get("errors"), body
    return body["data"]


async def _measure(url: str, query: str, variables: dict, token: str, n: int, c: int) -> str:
    latencies: list[float] = []
    remaining = iter(range(n))
    limits = httpx.Limits(max_connections=c, max_keepalive_connections=c)
    async with httpx.AsyncClient(timeout=30, trust_env=False, limits=limits) as http:
        await _post(http, url, query, variables, token)  # warm up

        async def loop() -> None:
            for _ in remaining:
                started = time.perf_counter()
                await _post(http, url, query, variables, token)
                latencies.append(time.perf_counter() - started)

        began = time.perf_counter()
        await asyncio.gather(*(loop() for _ in range(c)))
        elapsed = time.perf_counter() - began
    q = statistics.quantiles(latencies, n=100)
    return f"{n / elapsed:8.0f} req/s   p50 {q[49] * 1000:6.1f} ms   p95 {q[94] * 1000:6.1f} ms"


async def main(n: int, c: int) -> None:
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
            await _run_cases(platform.urls, n, c)
        finally:
            await supervisor.stop_all()


async def _run_cases(urls: dict[str, str], n: int, c: int) -> None:
    router = urls["router"]
    async with httpx.AsyncClient(timeout=30, trust_env=False) as http:
        signed = await http.post(
            router,
            json={
                "query": """mutation { signUp(input: {
            email: "bench@example.com", name: "Bench", password: "correct horse battery staple 42",
            organizationName: "Bench"}) { ... on AuthPayload { accessToken } } }"""
            },
        )
        token = signed.json()["data"]["signUp"]["accessToken"]
        created = await _post(
            http,
            router,
            """mutation { createWorkflow(input: {name: "b"}) {
            ... on CreateWorkflowSuccess { workflow { id } } } }""",
            {},
            token,
        )
    workflow = {"id": created["createWorkflow"]["workflow"]["id"]}
    one = "query ($id: ID!) { workflow(id: $id) { id name } }"
    cross = "query ($id: ID!) { workflow(id: $id) { name owner { email workflows { name } } } }"
    print(f"{n} requests, concurrency {c}")  # noqa: T201
    for label, url, query in (
        ("workflow, subgraph direct ", urls["workflows"], one),
        ("workflow, through router  ", router, one),
        ("workflow+owner via router ", router, cross),
    ):
        print(f"{label} {await _measure(url, query, workflow, token, n, c)}")  # noqa: T201


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=16)
    args = parser.parse_args()
    asyncio.run(main(args.requests, args.concurrency))
