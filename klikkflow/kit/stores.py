"""Connections to the three stores, built once per process from settings."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import hiredis
from arq.connections import ArqRedis, RedisSettings, create_pool
from beanie import PydanticObjectId, init_beanie
from pymongo import AsyncMongoClient
from pymongo.errors import OperationFailure
from redis.asyncio import Redis
from redis.asyncio.connection import AbstractConnection
from redis.exceptions import DataError
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


class _PackedInC:
    """Packs commands with hiredis' C packer, as redis-py's sync connections already do
    (its asyncio ones pack in Python: ~13 us for an XADD instead of ~2, and a worker sends
    a dozen per execution). Same bytes; a value Redis cannot take is a DataError still."""

    def pack_command(self, *args: Any) -> list[bytes]:
        if isinstance(args[0], str):
            args = (*args[0].encode().split(), *args[1:])
        elif b" " in args[0]:
            args = (*args[0].split(), *args[1:])
        try:
            return [hiredis.pack_command(args)]
        except TypeError as exc:
            raise DataError(str(exc)) from exc


_PACKED: dict[type[AbstractConnection], type[AbstractConnection]] = {}


def pack_in_c(client: Redis) -> Redis:
    """Have `client`'s new connections pack commands in C (see _PackedInC)."""
    pool = client.connection_pool
    base = pool.connection_class
    if not issubclass(base, _PackedInC):
        if base not in _PACKED:
            _PACKED[base] = type(f"PackedInC{base.__name__}", (_PackedInC, base), {})
        pool.connection_class = _PACKED[base]
    return client


def create_redis(url: str) -> Redis:
    url = _required(url, "KLIKKFLOW_REDIS_URL")
    return pack_in_c(Redis.from_url(url, decode_responses=True))


def arq_redis_settings(url: str) -> RedisSettings:
    return RedisSettings.from_dsn(_required(url, "KLIKKFLOW_REDIS_URL"))


async def create_arq_pool(url: str) -> ArqRedis:
    return pack_in_c(await create_pool(arq_redis_settings(url)))  # type: ignore[return-value]


# Refreshed by every running arq worker (`klikkflow worker --check` reads it).
WORKER_HEALTH_KEY = "klikkflow:worker:health"
