"""`klikkflow`: start the platform, one service, the worker, the router; manage schemas."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import sys
import textwrap
from pathlib import Path

from klikkflow.kit.settings import DEFAULT_PORTS, SUBGRAPHS, PlatformSettings

_PORTS = ", ".join(f"{name.upper()} {port}" for name, port in DEFAULT_PORTS.items())
_PORTS = "\n".join(textwrap.wrap(_PORTS, 52, subsequent_indent=" " * 28))
ENV_HELP = f"""
environment (all optional):
  KLIKKFLOW_MONGO_URI       MongoDB to use; unset: `up` starts embedded SecantusDB
  KLIKKFLOW_DATABASE_URL    PostgreSQL + pgvector (postgresql+asyncpg://...); unset: `up`
                            starts embedded PostgreSQL 18 + pgvector
  KLIKKFLOW_REDIS_URL       Redis; unset: `up` starts the system's redis-server
  KLIKKFLOW_MONGO_DB        MongoDB database name (default klikkflow)
  KLIKKFLOW_SECRET_KEY      key that signs access tokens (set it outside development)
  KLIKKFLOW_DATA_DIR        where embedded stores and logs live (default ./.klikkflow)
  KLIKKFLOW_HOST            address every service binds (default 127.0.0.1)
  KLIKKFLOW_<NAME>_PORT     ports, default: {_PORTS}
  KLIKKFLOW_ROUTER_URL      the router's /graphql, for `serve web` alone
  KLIKKFLOW_AI_URL          the AI service (document uploads), for `serve web` alone
"""

SERVE_APPS = {name: f"subgraphs.{name}.app:create_app" for name in SUBGRAPHS} | {
    "web": "web.app:create_app"
}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="klikkflow",
        description=__doc__,
        epilog=ENV_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", required=True)
    up = commands.add_parser(
        "up",
        help="start stores, subgraphs, router, worker and web; Ctrl-C stops all",
        epilog=ENV_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    up.add_argument("--data-dir", type=Path, help="overrides KLIKKFLOW_DATA_DIR")
    up.add_argument("--no-web", action="store_true", help="do not start the dashboard")

    serve = commands.add_parser("serve", help="run one service (uvicorn) in the foreground")
    serve.add_argument("service", choices=sorted(SERVE_APPS))
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, help="default: its port in `up`")
    serve.add_argument("--workers", type=int, default=1, help="uvicorn worker processes")

    worker = commands.add_parser("worker", help="run an arq worker")
    worker.add_argument("--burst", action="store_true", help="exit once the queue is empty")
    worker.add_argument("--check", action="store_true", help="exit 0 if a worker is alive")

    router = commands.add_parser("router", help="run the federation router (Hive Gateway)")
    router.add_argument("--host", default="127.0.0.1")
    router.add_argument("--port", type=int, default=DEFAULT_PORTS["router"])

    commands.add_parser("migrate", help="apply PostgreSQL migrations (alembic upgrade head)")

    run = commands.add_parser("run", help="run a workflow file in this process (no servers)")
    run.add_argument("workflow", type=Path, help="KlikkFlow or n8n workflow JSON")
    run.add_argument(
        "--input", type=Path, help="JSON file: the items (or one object) to start with"
    )
    run.add_argument("--start", help="name of the node to start from (default: the trigger)")
    run.add_argument("--json", action="store_true", help="print the result as JSON")
    run.add_argument(
        "--allow-private-network",
        action="store_true",
        help="let HTTP Request reach loopback and private addresses (refused by default)",
    )

    nodes = commands.add_parser("nodes", help="the node catalog")
    nodes.add_argument("action", choices=["list"])
    nodes.add_argument("--json", action="store_true")

    audit = commands.add_parser("audit", help="the tamper-evident audit log")
    audit.add_argument("action", choices=["verify"])
    audit.add_argument(
        "--organization",
        help="verify one organization's chain ('' for events without one); default: all",
    )

    commands.add_parser("permissions", help="print the role permission matrix")

    credentials = commands.add_parser("credentials", help="the credential vault's master keys")
    credentials.add_argument("action", choices=["rotate-key", "new-key"])

    schema = commands.add_parser("schema", help="the committed GraphQL contract in schemas/")
    schema.add_argument("action", choices=["export", "compose", "check"])
    return parser


def _serve(service: str, host: str, port: int | None, workers: int) -> int:
    import uvicorn

    uvicorn.run(
        SERVE_APPS[service],
        factory=True,
        host=host,
        port=port or DEFAULT_PORTS[service],
        workers=workers,
        log_level="info",
        ws="websockets-sansio",
        proxy_headers=False,
    )
    return 0


def _worker(burst: bool, check: bool) -> int:
    from klikkflow.kit.settings import WorkerSettings
    from workers import main as worker_main

    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    settings = WorkerSettings()
    if check:
        return 0 if asyncio.run(worker_main.check(settings)) else 1
    worker_main.run(settings, burst=burst)
    return 0


def _router(host: str, port: int) -> int:
    import os

    from klikkflow.router import ROUTER_DIR, ensure_router_deps, gateway_argv

    ensure_router_deps()
    os.chdir(ROUTER_DIR)
    argv = gateway_argv(host, port)
    os.execv(argv[0], argv)
    return 1  # pragma: no cover - execv does not return


def _schema(action: str) -> int:
    from klikkflow import schemas

    try:
        if action == "export":
            for path in schemas.export():
                print(f"wrote {path}")  # noqa: T201
        elif action == "compose":
            print(schemas.compose())  # noqa: T201
        else:
            schemas.check()
            print("schemas/ matches the code and composes")  # noqa: T201
    except schemas.SchemaDrift as exc:
        print(f"schema {action} failed: {exc}", file=sys.stderr)  # noqa: T201
        return 1
    return 0


def _migrate() -> int:
    from klikkflow.kit import migrations
    from klikkflow.kit.settings import StoreSettings

    asyncio.run(migrations.upgrade(StoreSettings().database_url))
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "up":
        from klikkflow.up import run_up

        settings = PlatformSettings()
        if args.data_dir:
            settings.data_dir = args.data_dir
        return run_up(settings, web=not args.no_web)
    if args.command == "serve":
        return _serve(args.service, args.host, args.port, args.workers)
    if args.command == "worker":
        return _worker(args.burst, args.check)
    if args.command == "router":
        return _router(args.host, args.port)
    if args.command == "migrate":
        return _migrate()
    if args.command == "permissions":
        from klikkflow.kit.permissions import table

        print(table())  # noqa: T201
        return 0
    if args.command == "run":
        from klikkflow import local

        return local.run(
            args.workflow, args.input, args.json, args.start, args.allow_private_network
        )
    if args.command == "nodes":
        from klikkflow import local

        return local.list_nodes(args.json)
    if args.command == "audit":
        from klikkflow.audit_cli import verify_command
        from klikkflow.kit.settings import SubgraphSettings

        return verify_command(SubgraphSettings(), args.organization)
    if args.command == "credentials":
        from klikkflow.credentials_cli import credentials_command
        from klikkflow.kit.settings import SubgraphSettings

        return credentials_command(SubgraphSettings(), args.action)
    return _schema(args.action)


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(main())
    sys.exit(130)
