"""Store probes shared by every service's /readyz and its GraphQL health field."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from pymongo import AsyncMongoClient
from redis.asyncio import Redis
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

PROBE_TIMEOUT = 2.0


@dataclass(frozen=True)
class StoreStatus:
    name: str
    ok: bool
    latency_ms: float | None = None
    error: str | None = None


async def probe(name: str, check: Callable[[], Awaitable[object]]) -> StoreStatus:
    started = time.perf_counter()
    try:
        await asyncio.wait_for(check(), PROBE_TIMEOUT)
    except Exception as exc:  # any failure means "not reachable"; the reason is shown
        return StoreStatus(name, False, error=f"{type(exc).__name__}: {exc}"[:300])
    return StoreStatus(name, True, latency_ms=round((time.perf_counter() - started) * 1000, 2))


def mongo_check(client: AsyncMongoClient) -> Callable[[], Awaitable[object]]:
    return lambda: client.admin.command("ping")


def redis_check(redis: Redis) -> Callable[[], Awaitable[object]]:
    async def check() -> object:
        return await redis.ping()

    return check


def postgres_check(engine: AsyncEngine) -> Callable[[], Awaitable[object]]:
    async def check() -> object:
        async with engine.connect() as conn:
            return await conn.execute(text("SELECT 1"))

    return check


async def probe_all(checks: dict[str, Callable[[], Awaitable[object]]]) -> list[StoreStatus]:
    return list(await asyncio.gather(*(probe(n, c) for n, c in checks.items())))
