"""`klikkflow up`: everything in the foreground, stopped as one by Ctrl-C."""

from __future__ import annotations

import asyncio
import signal
import sys

from klikkflow.kit.settings import PlatformSettings
from klikkflow.kit.supervisor import Supervisor, SupervisorError
from klikkflow.platform import Platform, start_services, start_stores
from klikkflow.router import RouterSetupError


def _say(message: str) -> None:
    print(message, flush=True)  # noqa: T201


def _table(platform: Platform) -> str:
    width = max(len(name) for name in platform.urls)
    rows = [f"  {name.ljust(width)}  {url}" for name, url in platform.urls.items()]
    return "\n".join(["KlikkFlow is up:", *rows, "Ctrl-C stops everything."])


async def _up(settings: PlatformSettings, web: bool) -> int:
    supervisor = Supervisor(settings.data_dir.absolute() / "logs")
    try:
        _say(f"starting stores (data in {settings.data_dir.absolute()}) ...")
        platform = await start_stores(supervisor, settings)
        _say("starting subgraphs, router, worker and web ...")
        await start_services(supervisor, settings, platform, web=web)
        _say(_table(platform))
        died = await supervisor.watch()
        _say(f"error: {died}")
        return 1
    except (SupervisorError, RouterSetupError) as exc:
        _say(f"error: {exc}")
        return 1
    finally:
        _say("stopping ...")
        await asyncio.shield(supervisor.stop_all())
        _say("stopped.")


def run_up(settings: PlatformSettings, web: bool = True) -> int:
    async def main() -> int:
        task = asyncio.current_task()
        loop = asyncio.get_running_loop()
        assert task is not None
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            loop.add_signal_handler(sig, task.cancel)
        try:
            return await _up(settings, web)
        except asyncio.CancelledError:
            return 130

    try:
        return asyncio.run(main())
    except KeyboardInterrupt:  # a second Ctrl-C during shutdown
        return 130
    finally:
        sys.stdout.flush()
