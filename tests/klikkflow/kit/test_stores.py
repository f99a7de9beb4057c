"""Redis clients pack commands in C (hiredis), byte for byte as redis-py packs them in
Python, and still refuse what Redis cannot take."""

from __future__ import annotations

import pytest
from redis.asyncio.connection import Connection
from redis.exceptions import DataError

from klikkflow.kit.stores import create_redis, pack_in_c

COMMANDS = [
    ("XADD", "stream", "MAXLEN", "~", 10_000, "*", "seq", 3, "at", "2026-12-01T03:41:00+00:00"),
    ("ZADD", "queue", 1764560460123.5, "æøå-job"),
    ("SET", b"raw\x00key", memoryview(b"\xff\x00bytes"), "PX", 2**70),
    ("CONFIG GET", "maxmemory"),
    ("ZADD", "k", 0.1 + 0.2, "m", float("inf"), "n", -0.0, "o"),
]


@pytest.mark.parametrize("command", COMMANDS)
def test_commands_are_packed_in_c_as_redis_py_packs_them(command):
    client = create_redis("redis://127.0.0.1:1/0")  # never connects
    packed = client.connection_pool.connection_class()
    assert type(packed).pack_command is not Connection.pack_command
    assert b"".join(packed.pack_command(*command)) == b"".join(Connection().pack_command(*command))


@pytest.mark.parametrize("value", [True, None, [1], {"a": 1}])
def test_a_value_redis_cannot_take_is_refused(value):
    packed = create_redis("redis://127.0.0.1:1/0").connection_pool.connection_class()
    with pytest.raises(DataError):
        packed.pack_command("SET", "key", value)


async def test_a_client_packing_in_c_talks_to_redis(platform):
    from redis.asyncio import Redis

    client = pack_in_c(Redis.from_url(platform.redis_url, decode_responses=True))
    assert pack_in_c(client) is client
    try:
        await client.set("klikkflow:test:packed", "værdi", px=10_000)
        async with client.pipeline(transaction=False) as pipe:
            pipe.get("klikkflow:test:packed").strlen("klikkflow:test:packed")
            assert await pipe.execute() == ["værdi", len("værdi".encode())]
    finally:
        await client.delete("klikkflow:test:packed")
        await client.aclose()
