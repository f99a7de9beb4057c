import asyncio
import os
import shutil
import signal
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest
from pymongo import AsyncMongoClient
from redis.asyncio import Redis
from sqlalchemy.engine import make_url

from klikkflow.kit.embedded import (
    mongo_spec,
    postgres_data_path,
    postgres_spec,
    redis_spec,
)
from klikkflow.kit.supervisor import MissingBinary, ServiceSpec, Supervisor, free_port


@pytest.fixture
async def supervisor(tmp_path: Path) -> AsyncIterator[Supervisor]:
    sup = Supervisor(tmp_path / "logs")
    yield sup
    await sup.stop_all(grace=5)


async def restart(supervisor: Supervisor, spec: ServiceSpec) -> None:
    await supervisor.stop_all()
    await supervisor.start(spec)
    await supervisor.wait_ready(timeout=30)


async def pg_connect(url: str) -> asyncpg.Connection:
    parts = make_url(url)
    return await asyncpg.connect(
        host=parts.host, port=parts.port, user=parts.username, database=parts.database
    )


async def test_mongo_answers_and_keeps_its_data_across_a_restart(
    supervisor: Supervisor, tmp_path: Path
) -> None:
    port = free_port()
    spec, uri = mongo_spec(port, tmp_path / "mongo")
    await supervisor.start(spec)
    await supervisor.wait_ready(timeout=30)
    client: AsyncMongoClient[dict[str, object]] = AsyncMongoClient(uri)
    await client.klikkflow.workflows.insert_one({"_id": 1, "name": "nightly sync"})
    await client.close()

    await restart(supervisor, mongo_spec(port, tmp_path / "mongo")[0])

    client = AsyncMongoClient(uri)
    found = await client.klikkflow.workflows.find_one({"_id": 1})
    await client.close()
    assert found == {"_id": 1, "name": "nightly sync"}


async def test_mongo_without_a_data_dir_runs_in_memory(supervisor: Supervisor) -> None:
    spec, uri = mongo_spec(free_port(), None)
    await supervisor.start(spec)
    await supervisor.wait_ready(timeout=30)

    client: AsyncMongoClient[dict[str, object]] = AsyncMongoClient(uri)
    await client.klikkflow.runs.insert_many([{"n": 1}, {"n": 2}])
    assert await client.klikkflow.runs.count_documents({"n": {"$gt": 1}}) == 1
    await client.close()
    assert spec.argv[spec.argv.index("--storage-path") + 1] == ":memory:"


async def test_postgres_serves_pgvector_and_survives_a_restart_and_a_kill(
    supervisor: Supervisor, tmp_path: Path
) -> None:
    data_dir = tmp_path / "postgres"  # under a 0700 pytest dir: as root, it moves
    port = free_port()
    try:
        spec, url = postgres_spec(port, data_dir)
        await supervisor.start(spec)
        await supervisor.wait_ready(timeout=30)
        conn = await pg_connect(url)
        await conn.execute(
            "CREATE EXTENSION vector;"
            "CREATE TABLE docs (id int PRIMARY KEY, embedding vector(3));"
            "INSERT INTO docs VALUES (1, '[1,0,0]'), (2, '[0,1,0]'), (3, '[0,0,1]');"
        )
        nearest = "SELECT id FROM docs ORDER BY embedding <-> '[0.1,0.9,0]' LIMIT 1"
        assert await conn.fetchval(nearest) == 2
        await conn.close()

        await restart(supervisor, postgres_spec(port, data_dir)[0])
        conn = await pg_connect(url)
        assert await conn.fetchval(nearest) == 2
        await conn.close()

        # kill -9 leaves a stale postmaster.pid behind; the next start must not mind.
        os.killpg(supervisor.pid("postgres"), signal.SIGKILL)
        await asyncio.sleep(0.2)
        await restart(supervisor, postgres_spec(port, data_dir)[0])
        conn = await pg_connect(url)
        assert await conn.fetchval("SELECT count(*) FROM docs") == 3
        await conn.close()
    finally:
        await supervisor.stop_all()
        shutil.rmtree(postgres_data_path(data_dir), ignore_errors=True)


async def test_deleting_the_data_dir_resets_postgres(
    supervisor: Supervisor, tmp_path: Path
) -> None:
    data_dir, port = tmp_path / "postgres", free_port()
    spec, url = postgres_spec(port, data_dir)
    await supervisor.start(spec)
    await supervisor.wait_ready(timeout=30)
    conn = await pg_connect(url)
    await conn.execute("CREATE TABLE leftover (id int)")
    await conn.close()
    await supervisor.stop_all()

    shutil.rmtree(data_dir)
    await restart(supervisor, postgres_spec(port, data_dir)[0])

    conn = await pg_connect(url)
    assert await conn.fetchval("SELECT to_regclass('leftover')") is None
    await conn.close()
    await supervisor.stop_all()
    shutil.rmtree(postgres_data_path(data_dir), ignore_errors=True)


async def test_redis_answers(supervisor: Supervisor) -> None:
    spec, url = redis_spec(free_port(), None)
    await supervisor.start(spec)
    await supervisor.wait_ready(timeout=30)

    client = Redis.from_url(url)
    await client.set("greeting", "hello")
    assert await client.get("greeting") == b"hello"
    await client.aclose()


def test_a_missing_redis_server_says_how_to_get_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))

    with pytest.raises(MissingBinary) as caught:
        redis_spec(free_port(), None)

    assert str(caught.value) == (
        "redis-server not found: install it (Debian: apt-get install redis-server) "
        "or set KLIKKFLOW_REDIS_URL to a running Redis"
    )
