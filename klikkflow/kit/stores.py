"""Connections to the three stores, built once per process from settings."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from arq.connections import ArqRedis, RedisSettings, create_pool
from beanie import PydanticObjectId, init_beanie
from pymongo import AsyncMongoClient
from pymongo.errors import OperationFailure
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine


class StoreNotConfigured(Exception):
    def __init__(self, variable: str) -> None:
        super().__init__(
            f"{variable} is not set: point it at a running store or use `klikkflow up`"
        )
        self.variable = variable


def object_id(value: str) -> PydanticObjectId | None:
    """A MongoDB id from an API string; None for anything that is not one (so lookups of
    garbage ids find nothing instead of failing)."""
    return PydanticObjectId(value) if PydanticObjectId.is_valid(value) else None


# Dropping an index that is not there: IndexNotFound, NamespaceNotFound (no collection).
_GONE = (26, 27)


def _required(value: str, variable: str) -> str:
    if not value:
        raise StoreNotConfigured(variable)
    return value


async def init_mongo(uri: str, db_name: str, documents: Sequence[Any]) -> AsyncMongoClient:
    """Connect to MongoDB and register Beanie documents (creates their indexes)."""
    client: AsyncMongoClient = AsyncMongoClient(
        _required(uri, "KLIKKFLOW_MONGO_URI"), tz_aware=True, serverSelectionTimeoutMS=5000
    )
    database = client[db_name]
    for document in documents:  # what an earlier version indexed that this one does not
        for name in getattr(document, "retired_indexes", ()):
            try:
                await database[document.Settings.name].drop_index(name)
            except OperationFailure as exc:
                if exc.code not in _GONE:
                    raise
    await init_beanie(database=database, document_models=list(documents))
    return client


def create_pg_engine(url: str) -> AsyncEngine:
    return create_async_engine(_required(url, "KLIKKFLOW_DATABASE_URL"), pool_pre_ping=True)


def create_redis(url: str) -> Redis:
    return Redis.from_url(_required(url, "KLIKKFLOW_REDIS_URL"), decode_responses=True)


def arq_redis_settings(url: str) -> RedisSettings:
    return RedisSettings.from_dsn(_required(url, "KLIKKFLOW_REDIS_URL"))


async def create_arq_pool(url: str) -> ArqRedis:
    return await create_pool(arq_redis_settings(url))


# Refreshed by every running arq worker (`klikkflow worker --check` reads it).
WORKER_HEALTH_KEY = "klikkflow:worker:health"
