"""Run alembic migrations programmatically (the AI subgraph's PostgreSQL schema)."""

from __future__ import annotations

import asyncio
from importlib.resources import files

from alembic import command
from alembic.config import Config

# Named by package, not imported: the kernel does not import subgraph code.
AI_MIGRATIONS = "subgraphs.ai.migrations"


def alembic_config(database_url: str, package: str = AI_MIGRATIONS) -> Config:
    config = Config()
    config.set_main_option("script_location", str(files(package)))
    config.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    return config


async def upgrade(database_url: str, revision: str = "head") -> None:
    # env.py calls asyncio.run, so it runs in a thread with no loop of its own.
    await asyncio.to_thread(command.upgrade, alembic_config(database_url), revision)
