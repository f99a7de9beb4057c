"""Worker processes for tests: find the platform's own, pause it, start more."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


def platform_workers(redis_url: str) -> list[int]:
    """The test platform's own worker processes (found by their Redis URL)."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().split(b"\0")
            environ = (proc / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"worker" in cmdline and f"KLIKKFLOW_REDIS_URL={redis_url}".encode() in environ:
            found.append(int(proc.name))
    return found


@contextmanager
def paused(pids: list[int]) -> Iterator[None]:
    """Stop processes (SIGSTOP) for the block: they take no jobs meanwhile."""
    for pid in pids:
        os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        for pid in pids:
            os.kill(pid, signal.SIGCONT)


def start_worker(platform: Any, log: Path, **settings: str) -> subprocess.Popen[bytes]:
    """Another `klikkflow worker` on the platform's stores; `settings` are more
    KLIKKFLOW_* variables (name in lower case, without the prefix)."""
    env = {**os.environ, **platform.store_env(platform.settings)}
    env |= {f"KLIKKFLOW_{name.upper()}": value for name, value in settings.items()}
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "klikkflow.cli", "worker"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def stop(process: subprocess.Popen[bytes] | None) -> None:
    if process is not None and process.poll() is None:
        process.terminate()
        process.wait(20)
