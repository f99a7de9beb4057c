"""`klikkflow up` as a user runs it: a real process tree, stopped by Ctrl-C."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psutil
import pytest

from klikkflow.kit.supervisor import free_port

SERVICES = (
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


def _env(data_dir: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KLIKKFLOW_")}
    env.update({f"KLIKKFLOW_{name.upper()}_PORT": str(free_port()) for name in SERVICES})
    env["KLIKKFLOW_DATA_DIR"] = str(data_dir)
    env.update(extra)
    return env


def _start(env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "klikkflow.cli", "up"],
        env=env,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def _read_until(proc: subprocess.Popen[str], marker: str, timeout: float) -> str:
    seen = []
    deadline = time.monotonic() + timeout
    assert proc.stdout is not None
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        seen.append(line)
        if marker in line:
            return "".join(seen)
    raise AssertionError(f"no {marker!r} within {timeout}s:\n{''.join(seen)}")


def _stop(proc: subprocess.Popen[str]) -> tuple[int, str]:
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=60)
    return proc.returncode, out


def _graphql(port: str, query: str, variables: dict | None = None) -> dict:
    response = httpx.post(
        f"http://127.0.0.1:{port}/graphql",
        json={"query": query, "variables": variables or {}},
        timeout=10,
    )
    return response.json()


LOG_IN = """mutation ($e: String!) { logIn(input: {email: $e, password: "persist me please"}) {
  __typename } }"""
SIGN_UP = """mutation ($e: String!) { signUp(input: {email: $e, name: "P",
  password: "persist me please", organizationName: "Persist"}) { __typename } }"""


def test_up_starts_everything_stops_on_ctrl_c_and_keeps_data(tmp_path: Path):
    env = _env(tmp_path / "data")
    proc = _start(env)
    try:
        table = _read_until(proc, "Ctrl-C stops everything", 180)
        for name in (
            "mongo",
            "postgres",
            "redis",
            "identity",
            "workflows",
            "executions",
            "ai",
            "router",
            "worker",
            "web",
        ):
            assert f"  {name}" in table, table
        children = psutil.Process(proc.pid).children(recursive=True)
        assert len(children) >= 10
        router = env["KLIKKFLOW_ROUTER_PORT"]
        health = _graphql(router, "{ identityHealth { ok } aiHealth { ok } }")
        assert health["data"] == {"identityHealth": {"ok": True}, "aiHealth": {"ok": True}}
        page = httpx.get(f"http://127.0.0.1:{env['KLIKKFLOW_WEB_PORT']}/", timeout=10)
        assert page.status_code == 200
        assert "identity" in page.text
        signed = _graphql(router, SIGN_UP, {"e": "keep@example.com"})
        assert signed["data"]["signUp"]["__typename"] == "AuthPayload"
    finally:
        code, out = _stop(proc)
    assert code == 130, out
    assert "stopped." in out
    time.sleep(0.5)
    assert [c.pid for c in children if c.is_running() and c.status() != psutil.STATUS_ZOMBIE] == []

    again = _start(env)
    try:
        _read_until(again, "Ctrl-C stops everything", 180)
        logged = _graphql(env["KLIKKFLOW_ROUTER_PORT"], LOG_IN, {"e": "keep@example.com"})
        assert logged["data"]["logIn"]["__typename"] == "AuthPayload"  # survived the restart
        children = psutil.Process(again.pid).children(recursive=True)
        worker = next(c for c in children if c.cmdline()[-1:] == ["worker"])
        worker.kill()
        out, _ = again.communicate(timeout=60)
    finally:
        if again.poll() is None:
            _stop(again)
    # A child that dies is reported by name with the end of its log; the rest is stopped.
    assert again.returncode == 1, out
    assert "error: worker killed by SIGKILL" in out, out
    assert "worker.log" in out
    assert "INFO arq.worker" in out  # the tail of its log (arq's lines)
    time.sleep(0.5)
    assert [c.pid for c in children if c.is_running() and c.status() != psutil.STATUS_ZOMBIE] == []


def test_port_in_use_is_one_clear_line_and_nothing_is_left_running(tmp_path: Path):
    env = _env(tmp_path / "data")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", int(env["KLIKKFLOW_IDENTITY_PORT"])))
        taken.listen()
        proc = _start(env)
        out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 1
    errors = [line for line in out.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, out
    assert f"port {env['KLIKKFLOW_IDENTITY_PORT']}" in errors[0]
    assert "identity" in errors[0]
    leftovers = [
        p
        for p in psutil.process_iter(["cmdline"])
        if any(env["KLIKKFLOW_MONGO_PORT"] == part for part in (p.info["cmdline"] or []))
    ]
    assert leftovers == []


def test_missing_redis_server_says_how_to_get_one(tmp_path: Path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    env = _env(tmp_path / "data", PATH=str(bin_dir))
    proc = _start(env)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 1
    assert "redis-server" in out
    assert "apt-get install redis-server" in out
    assert "KLIKKFLOW_REDIS_URL" in out


@pytest.mark.parametrize("variable", ["KLIKKFLOW_MONGO_URI", "KLIKKFLOW_REDIS_URL"])
def test_configured_store_urls_start_no_embedded_store(tmp_path: Path, variable: str):
    # A URL nobody answers: `up` must use it (and fail on it), not start its own store.
    dead = {
        "KLIKKFLOW_MONGO_URI": f"mongodb://127.0.0.1:{free_port()}/?directConnection=true",
        "KLIKKFLOW_REDIS_URL": f"redis://127.0.0.1:{free_port()}/0",
    }[variable]
    env = _env(tmp_path / "data", **{variable: dead, "KLIKKFLOW_STARTUP_TIMEOUT": "20"})
    proc = _start(env)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 1
    store = "mongo" if "MONGO" in variable else "redis"
    assert f"  {store} " not in out
    assert not (tmp_path / "data" / store).exists()
