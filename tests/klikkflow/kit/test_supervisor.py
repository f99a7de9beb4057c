import asyncio
import socket
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import psutil
import pytest

from klikkflow.kit.supervisor import (
    PortInUse,
    ServiceDied,
    ServiceSpec,
    StartupTimeout,
    Supervisor,
    free_port,
    http_ok,
)


@pytest.fixture
async def supervisor(tmp_path: Path) -> AsyncIterator[Supervisor]:
    sup = Supervisor(tmp_path / "logs")
    yield sup
    await sup.stop_all(grace=1)


async def never_ready() -> bool:
    return False


def alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


async def wait_for_children(pid: int, count: int) -> list[int]:
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        children = psutil.Process(pid).children(recursive=True)
        if len(children) >= count:
            return [child.pid for child in children]
        await asyncio.sleep(0.02)
    raise AssertionError(f"process {pid} did not start {count} children")


async def test_a_taken_port_is_refused_naming_the_service_and_the_setting(
    supervisor: Supervisor,
) -> None:
    with socket.create_server(("127.0.0.1", 0)) as holder:
        port = holder.getsockname()[1]
        with pytest.raises(PortInUse) as caught:
            await supervisor.start(ServiceSpec("identity", ["sleep", "30"], port=port))

    assert str(caught.value) == (
        f"identity: port {port} on 127.0.0.1 is already in use — stop what holds it "
        "or set KLIKKFLOW_IDENTITY_PORT"
    )
    assert supervisor.processes == {}


async def test_a_child_that_exits_is_reported_with_its_log_tail(supervisor: Supervisor) -> None:
    script = "for i in $(seq 1 30); do echo line $i; done; echo 'fatal: no config' >&2; exit 3"
    await supervisor.start(ServiceSpec("workflows", ["sh", "-c", script], ready=never_ready))

    with pytest.raises(ServiceDied) as caught:
        await supervisor.wait_ready(timeout=10)

    died = caught.value
    assert (died.name, died.returncode) == ("workflows", 3)
    assert died.log_tail.splitlines()[-1] == "fatal: no config"
    assert "line 1\n" not in died.log_tail  # only the tail, not the whole log
    assert str(died).startswith("workflows exited with code 3")
    assert "fatal: no config" in str(died)
    assert (await supervisor.watch()).name == "workflows"


async def test_stop_all_kills_children_and_grandchildren_even_if_they_ignore_sigterm(
    supervisor: Supervisor,
) -> None:
    polite = ["sh", "-c", "sleep 300 & sleep 300 & wait"]
    # An ignored signal stays ignored across exec: the sleeps ignore SIGTERM too.
    stubborn = ["sh", "-c", "trap '' TERM; sleep 300 & sleep 300 & wait"]
    await supervisor.start(ServiceSpec("polite", polite))
    await supervisor.start(ServiceSpec("stubborn", stubborn))
    pids = [supervisor.pid("polite"), supervisor.pid("stubborn")]
    pids += await wait_for_children(pids[0], 2) + await wait_for_children(pids[1], 2)

    started = time.monotonic()
    await supervisor.stop_all(grace=0.5)

    assert [pid for pid in pids if alive(pid)] == []
    assert time.monotonic() - started < 3
    await supervisor.stop_all()  # idempotent


async def test_wait_ready_names_the_services_that_never_became_ready(
    supervisor: Supervisor,
) -> None:
    await supervisor.start(ServiceSpec("fast", ["sleep", "30"]))
    await supervisor.start(ServiceSpec("router", ["sleep", "30"], ready=never_ready))

    with pytest.raises(StartupTimeout) as caught:
        await supervisor.wait_ready(timeout=0.3)

    assert caught.value.names == ["router"]
    assert str(caught.value).startswith("router not ready after 0.3 s")


async def test_a_port_is_ready_once_it_accepts_connections(supervisor: Supervisor) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    assert not await http_ok(url)
    server = [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1"]
    await supervisor.start(ServiceSpec("web", server, port=port))

    await supervisor.wait_ready(timeout=10)

    assert await http_ok(url)


def test_free_port_never_hands_out_a_port_twice():
    """The ports of a platform's services are picked before any of them binds: two of them
    on one port would fail the second service's start."""
    ports = [free_port() for _ in range(500)]  # at random, ~10 would repeat
    assert len(set(ports)) == len(ports)
