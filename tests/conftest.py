"""Session fixtures: the real platform (stores, subgraphs, router, worker) started once.

Stores come from KLIKKFLOW_MONGO_URI / KLIKKFLOW_DATABASE_URL / KLIKKFLOW_REDIS_URL when
set (the suite then uses its own MongoDB database), else embedded ones on free ports.
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from klikkflow.kit.settings import PlatformSettings
from klikkflow.kit.supervisor import Supervisor, free_port
from klikkflow.platform import Platform, start_services, start_stores


def test_settings(data_dir: Path) -> PlatformSettings:
    ports = {
        f"{name}_port": free_port()
        for name in (
            "router",
            "identity",
            "workflows",
            "executions",
            "ai",
            "web",
            "mongo",
            "postgres",
            "redis",
        )
    }
    return PlatformSettings(
        data_dir=data_dir,
        mongo_db=f"klikkflow_test_{secrets.token_hex(4)}",
        secret_key=secrets.token_urlsafe(32),
        startup_timeout=90,
        **ports,
    )


@pytest.fixture(scope="session")
async def platform(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Platform]:
    data_dir = tmp_path_factory.mktemp("platform")
    settings = test_settings(data_dir)
    supervisor = Supervisor(data_dir / "logs")
    try:
        running = await start_stores(supervisor, settings, persist=False)
        await start_services(supervisor, settings, running, web=False)
        running.settings = settings  # type: ignore[attr-defined]
        yield running
    finally:
        await supervisor.stop_all()


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=15, trust_env=False) as http:
        yield http
