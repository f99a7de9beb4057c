"""Session fixtures: the real platform (stores, subgraphs, router, worker) started once.

Stores come from KLIKKFLOW_MONGO_URI / KLIKKFLOW_DATABASE_URL / KLIKKFLOW_REDIS_URL when
set (the suite then uses its own MongoDB database), else embedded ones on free ports.
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Iterator
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path

import httpx
import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import Envelope

from klikkflow.kit.settings import PlatformSettings
from klikkflow.kit.supervisor import Supervisor, free_port
from klikkflow.platform import Platform, start_services, start_stores


class Mailbox:
    """A real SMTP server (aiosmtpd) that keeps what it receives, for tests to read."""

    def __init__(self) -> None:
        self.messages: list[EmailMessage] = []

    async def handle_DATA(self, server: object, session: object, envelope: Envelope) -> str:  # noqa: N802
        self.messages.append(message_from_bytes(envelope.content, policy=policy.default))  # type: ignore[arg-type]
        return "250 OK"

    def to(self, address: str) -> list[EmailMessage]:
        return [m for m in self.messages if m["To"] == address]


@pytest.fixture(scope="session")
def mailbox() -> Iterator[tuple[Mailbox, int]]:
    box = Mailbox()
    port = free_port()
    controller = Controller(box, hostname="127.0.0.1", port=port)
    controller.start()
    yield box, port
    controller.stop()


def platform_settings(data_dir: Path, smtp_port: int = 0) -> PlatformSettings:
    ports = {
        f"{name}_port": free_port()
        for name in (
            "router",
            "identity",
            "workflows",
            "executions",
            "ai",
            "worker_metrics",
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
        smtp_host="127.0.0.1" if smtp_port else "",
        smtp_port=smtp_port or 25,
        public_url="http://dashboard.test",
        # Credential tests and HTTP nodes call local stand-ins of third parties.
        allow_private_network=True,
        **ports,
    )


@pytest.fixture(scope="session")
async def platform(
    tmp_path_factory: pytest.TempPathFactory, mailbox: tuple[Mailbox, int]
) -> AsyncIterator[Platform]:
    data_dir = tmp_path_factory.mktemp("platform")
    settings = platform_settings(data_dir, smtp_port=mailbox[1])
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
