"""Start, watch and stop the local processes of ``klikkflow up`` and of the test session.

Each service runs in a session (and so a process group) of its own: stopping it stops
whatever it spawned too (node under a wrapper, postgres backends), so nothing is left
behind holding a port.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import pwd
import random
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import httpx
import psutil

Probe = Callable[[], Awaitable[bool]]

_PR_SET_PDEATHSIG = 1
_TAIL_LINES = 20


@dataclass
class ServiceSpec:
    """How to run one local service and how to tell that it is ready."""

    name: str
    argv: list[str]
    env: dict[str, str] | None = None  # merged over os.environ
    cwd: Path | None = None
    port: int | None = None  # checked free on host before start
    host: str = "127.0.0.1"
    # None: ready once the port accepts TCP connections (at once if there is no port).
    ready: Probe | None = None
    url: str = ""  # shown in the table of `klikkflow up`
    user: str | None = None  # run as this unix user (we are root, the service refuses root)
    stop_signal: signal.Signals = signal.SIGTERM


class SupervisorError(Exception):
    """A local service could not run; ``str()`` says the cause and the fix."""


class PortInUse(SupervisorError):
    def __init__(self, name: str, host: str, port: int) -> None:
        self.name, self.host, self.port = name, host, port
        super().__init__(
            f"{name}: port {port} on {host} is already in use — stop what holds it "
            f"or set KLIKKFLOW_{name.upper()}_PORT"
        )


class MissingBinary(SupervisorError):
    def __init__(self, binary: str, fix: str) -> None:
        self.binary = binary
        super().__init__(f"{binary} not found: {fix}")


class ServiceDied(SupervisorError):
    def __init__(self, name: str, returncode: int, log_tail: str, log_path: Path) -> None:
        self.name, self.returncode = name, returncode
        self.log_tail, self.log_path = log_tail, log_path
        how = (
            f"killed by {signal.Signals(-returncode).name}"
            if returncode < 0
            else f"exited with code {returncode}"
        )
        tail = "\n".join(f"  | {line}" for line in log_tail.splitlines()) or "  (log is empty)"
        super().__init__(f"{name} {how}; the end of {log_path}:\n{tail}")


class StartupTimeout(SupervisorError):
    def __init__(self, names: list[str], timeout: float, log_dir: Path) -> None:
        self.names, self.timeout = names, timeout
        super().__init__(
            f"{', '.join(names)} not ready after {timeout:g} s — read their logs in {log_dir}; "
            "a slow machine may need a larger KLIKKFLOW_STARTUP_TIMEOUT"
        )


class Supervisor:
    """Owns a set of child processes; stop_all() leaves none of them, or their children."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.specs: dict[str, ServiceSpec] = {}
        self.processes: dict[str, subprocess.Popen[bytes]] = {}  # running, in start order
        self._stopping: set[str] = set()  # their exit is no death to report

    def log_path(self, name: str) -> Path:
        return self.log_dir / f"{name}.log"

    def pid(self, name: str) -> int:
        return self.processes[name].pid

    async def start(self, spec: ServiceSpec) -> None:
        running = self.processes.get(spec.name)
        if running is not None and running.poll() is None:
            raise SupervisorError(f"{spec.name} is already running (pid {running.pid})")
        if spec.port is not None:
            _check_port_free(spec.name, spec.host, spec.port)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        with self.log_path(spec.name).open("wb") as log:
            try:
                proc = _spawn(spec, log)
            except FileNotFoundError as exc:
                raise MissingBinary(spec.argv[0], f"install it to run {spec.name}") from exc
        self.specs[spec.name] = spec
        self.processes.pop(spec.name, None)  # a restart goes to the end of the stop order
        self.processes[spec.name] = proc

    async def wait_ready(self, names: Iterable[str] | None = None, timeout: float = 60) -> None:
        pending = list(self.processes if names is None else names)
        deadline = time.monotonic() + timeout
        while True:
            self._raise_if_died()
            ready = await asyncio.gather(*(self._is_ready(name) for name in pending))
            pending = [name for name, ok in zip(pending, ready, strict=True) if not ok]
            if not pending:
                return
            if time.monotonic() >= deadline:
                raise StartupTimeout(pending, timeout, self.log_dir)
            await asyncio.sleep(0.1)

    async def watch(self) -> ServiceDied:
        """Wait for the first child to die (callers cancel this when they stop us)."""
        while True:
            try:
                self._raise_if_died()
            except ServiceDied as died:
                return died
            await asyncio.sleep(0.2)

    async def stop_all(self, grace: float = 10) -> None:
        for name in reversed(list(self.processes)):
            await self._stop(name, grace)

    async def _stop(self, name: str, grace: float) -> None:
        proc = self.processes[name]
        self._stopping.add(name)
        family = _family(proc)
        _signal(proc.pid, family, self.specs[name].stop_signal)
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline and _living(family, proc):
            await asyncio.sleep(0.05)
        if _living(family, proc):
            # Re-read the family: a child may have forked while shutting down.
            family = _family(proc) + family
            _signal(proc.pid, family, signal.SIGKILL)
            # Bounded: a process stuck in the kernel (state D) must not hang our exit.
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline and _living(family, proc):
                await asyncio.sleep(0.02)
        proc.poll()
        spec = self.specs[name]
        if spec.port is not None:
            # The kernel may release a dying process's listening socket a moment after the
            # process is gone: wait for it, so the same port can be used again at once.
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline and not _port_free(spec.host, spec.port):
                await asyncio.sleep(0.05)
        # Forgotten only now: if stop_all is cancelled midway, a later call finishes it.
        del self.processes[name]
        self._stopping.discard(name)

    async def _is_ready(self, name: str) -> bool:
        spec = self.specs[name]
        probe = spec.ready
        if probe is None and spec.port is not None:
            probe = _tcp_probe(spec.host, spec.port)
        if probe is None:
            return True
        try:
            return await asyncio.wait_for(probe(), timeout=5)
        except Exception:  # a failing probe only means "not yet"
            return False

    def _raise_if_died(self) -> None:
        for name, proc in self.processes.items():
            returncode = proc.poll()
            if returncode is not None and name not in self._stopping:
                raise ServiceDied(name, returncode, _tail(self.log_path(name)), self.log_path(name))


# Below Linux's ephemeral range (32768-60999): a port handed out here is never taken
# meanwhile by the source port of some outgoing connection, so a service can be stopped
# and started again on it.
_FREE_PORT_RANGE = (20000, 32000)


# Ports free_port handed out in this process: never twice, since callers pick the ports of
# several services before any of them binds its own.
_GIVEN: set[int] = set()


def free_port(host: str = "127.0.0.1") -> int:
    for _ in range(200):
        port = random.randrange(*_FREE_PORT_RANGE)
        if port in _GIVEN:
            continue
        with socket.socket(_family_of(host)) as sock:
            try:
                sock.bind((host, port))
            except OSError:
                continue
            _GIVEN.add(port)
            return port
    raise SupervisorError(f"no free port in {_FREE_PORT_RANGE} on {host}")


async def http_ok(url: str, timeout: float = 1.0) -> bool:
    # trust_env=False: a proxy from the environment must not see our loopback probes.
    async with httpx.AsyncClient(timeout=timeout, trust_env=False) as client:
        try:
            response = await client.get(url)
        except httpx.HTTPError:
            return False
    return response.is_success


def _spawn(spec: ServiceSpec, log: IO[bytes]) -> subprocess.Popen[bytes]:
    account = pwd.getpwnam(spec.user) if spec.user else None
    return subprocess.Popen(
        spec.argv,
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ, **(spec.env or {})},
        cwd=spec.cwd,
        start_new_session=True,
        user=account.pw_uid if account else None,
        group=account.pw_gid if account else None,
        extra_groups=[] if account else None,  # drop root's supplementary groups
        preexec_fn=_die_with_parent(),
    )


def _die_with_parent() -> Callable[[], None] | None:
    """Have the kernel SIGTERM the child if we die without stopping it (kill -9 of `up`).

    The kernel ties this to the forking *thread*, so only arm it from the main thread.
    """
    if not sys.platform.startswith("linux") or threading.current_thread() is not (
        threading.main_thread()
    ):
        return None
    prctl = ctypes.CDLL(None, use_errno=True).prctl
    parent = os.getpid()

    def arm() -> None:
        prctl(_PR_SET_PDEATHSIG, int(signal.SIGTERM))
        if os.getppid() != parent:  # the parent died before the line above took effect
            os._exit(1)

    return arm


def _port_free(host: str, port: int) -> bool:
    with socket.socket(_family_of(host)) as sock:
        # SO_REUSEADDR: a port in TIME_WAIT from our own last run is free to listen on.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
        return True


def _check_port_free(name: str, host: str, port: int) -> None:
    if not _port_free(host, port):
        raise PortInUse(name, host, port)


def _family_of(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def _tcp_probe(host: str, port: int) -> Probe:
    async def probe() -> bool:
        _, writer = await asyncio.open_connection(host, port)
        writer.close()
        return True

    return probe


def _family(leader: subprocess.Popen[bytes]) -> list[psutil.Process]:
    """The leader, its descendants, and whatever else is left in its process group."""
    found: dict[int, psutil.Process] = {}
    # Once reaped, the leader's pid may belong to a stranger: only look it up while alive.
    if leader.poll() is None:
        with contextlib.suppress(psutil.Error):
            process = psutil.Process(leader.pid)
            found[leader.pid] = process
            found.update((child.pid, child) for child in process.children(recursive=True))
    for process in psutil.process_iter():
        with contextlib.suppress(OSError):
            # The kernel keeps a pid unused while a group of that id has members.
            if os.getpgid(process.pid) == leader.pid:
                found.setdefault(process.pid, process)
    return list(found.values())


def _signal(pgid: int, family: list[psutil.Process], sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)
    for process in family:  # descendants that left the group (setsid) get it too
        with contextlib.suppress(psutil.Error):
            process.send_signal(sig)


def _living(family: list[psutil.Process], leader: subprocess.Popen[bytes]) -> bool:
    leader.poll()  # reap our own child so it does not linger as a zombie
    for process in family:
        with contextlib.suppress(psutil.Error):
            # Orphaned zombies wait for init to reap them; they hold no port or memory.
            if process.is_running() and process.status() != psutil.STATUS_ZOMBIE:
                return True
    return False


def _tail(path: Path) -> str:
    with contextlib.suppress(OSError), path.open("rb") as log:
        log.seek(max(0, log.seek(0, os.SEEK_END) - 8192))
        return "\n".join(log.read().decode(errors="replace").splitlines()[-_TAIL_LINES:])
    return ""
