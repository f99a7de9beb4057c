"""Start the whole platform under one Supervisor: `klikkflow up` and the test suite share it.

Order: stores (embedded unless URLs are set) -> migrations -> four subgraphs -> router
-> worker -> web. Each step waits for health checks before the next one starts.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from functools import partial

from redis.asyncio import Redis

from klikkflow.kit import embedded, migrations
from klikkflow.kit.auth import INTROSPECT_PATH, JWKS_PATH, REFUSAL_PATH
from klikkflow.kit.settings import SUBGRAPHS, PlatformSettings
from klikkflow.kit.stores import WORKER_HEALTH_KEY
from klikkflow.kit.supervisor import ServiceSpec, Supervisor, http_ok
from klikkflow.router import ROUTER_DIR, ensure_router_deps, gateway_argv, gateway_env


@dataclass
class Platform:
    mongo_uri: str
    database_url: str
    redis_url: str
    urls: dict[str, str] = field(default_factory=dict)  # service -> URL for people

    @property
    def router_url(self) -> str:
        return self.urls["router"]

    def store_env(self, settings: PlatformSettings) -> dict[str, str]:
        identity = f"http://{settings.host}:{settings.identity_port}"
        return {
            "KLIKKFLOW_MONGO_URI": self.mongo_uri,
            "KLIKKFLOW_MONGO_DB": settings.mongo_db,
            "KLIKKFLOW_DATABASE_URL": self.database_url,
            "KLIKKFLOW_REDIS_URL": self.redis_url,
            "KLIKKFLOW_SECRET_KEY": settings.secret_key,
            "KLIKKFLOW_JWKS_URL": f"{identity}{JWKS_PATH}",
            "KLIKKFLOW_API_KEY_INTROSPECTION_URL": f"{identity}{INTROSPECT_PATH}",
            "KLIKKFLOW_TOKEN_REFUSAL_URL": f"{identity}{REFUSAL_PATH}",
            "KLIKKFLOW_SMTP_HOST": settings.smtp_host,
            "KLIKKFLOW_SMTP_PORT": str(settings.smtp_port),
            "KLIKKFLOW_PUBLIC_URL": settings.public_url,
            "KLIKKFLOW_CREDENTIALS_MASTER_KEYS": settings.credentials_master_keys,
            "KLIKKFLOW_ALLOW_PRIVATE_NETWORK": str(settings.allow_private_network).lower(),
            "KLIKKFLOW_WEBHOOK_URL": f"http://{settings.host}:{settings.executions_port}",
        }


async def start_stores(
    sup: Supervisor, settings: PlatformSettings, persist: bool = True
) -> Platform:
    """Use the configured store URLs; start an embedded stand-in for each one missing."""
    data = settings.data_dir.absolute()
    mongo_uri, database_url, redis_url = (
        settings.mongo_uri,
        settings.database_url,
        settings.redis_url,
    )
    started = []
    if not mongo_uri:
        spec, mongo_uri = embedded.mongo_spec(
            settings.mongo_port, data / "mongo" if persist else None, settings.host
        )
        started.append(spec)
    if not database_url:
        spec, database_url = embedded.postgres_spec(settings.postgres_port, data / "postgres")
        started.append(spec)
    if not redis_url:
        spec, redis_url = embedded.redis_spec(
            settings.redis_port, data / "redis" if persist else None
        )
        started.append(spec)
    for spec in started:
        await sup.start(spec)
    await sup.wait_ready([s.name for s in started], timeout=settings.startup_timeout)
    platform = Platform(mongo_uri, database_url, redis_url)
    platform.urls.update({s.name: s.url for s in started})
    return platform


def _python(*args: str) -> list[str]:
    return [sys.executable, "-m", "klikkflow.cli", *args]


def _http_service(
    name: str, argv: list[str], host: str, port: int, env: dict[str, str], ready_path: str
) -> ServiceSpec:
    base = f"http://{host}:{port}"
    return ServiceSpec(
        name,
        argv,
        env=env,
        port=port,
        host=host,
        ready=partial(http_ok, base + ready_path),
        url=base,
    )


async def _worker_alive(redis_url: str) -> bool:
    redis = Redis.from_url(redis_url)
    try:
        return bool(await redis.exists(WORKER_HEALTH_KEY))
    except Exception:
        return False
    finally:
        await redis.aclose()


async def start_services(
    sup: Supervisor, settings: PlatformSettings, platform: Platform, *, web: bool = True
) -> Platform:
    env = platform.store_env(settings)
    await migrations.upgrade(platform.database_url)
    host = settings.host
    for name in SUBGRAPHS:
        port = settings.subgraph_port(name)
        argv = _python("serve", name, "--host", host, "--port", str(port))
        await sup.start(_http_service(name, argv, host, port, env, "/readyz"))
        platform.urls[name] = f"http://{host}:{port}/graphql"
    await sup.wait_ready(SUBGRAPHS, timeout=settings.startup_timeout)

    ensure_router_deps()
    router_env = {**env, **gateway_env({n: platform.urls[n] for n in SUBGRAPHS})}
    router = _http_service(
        "router",
        gateway_argv(host, settings.router_port),
        host,
        settings.router_port,
        router_env,
        "/readiness",
    )
    router.cwd = ROUTER_DIR
    await sup.start(router)
    platform.urls["router"] = f"http://{host}:{settings.router_port}/graphql"

    metrics_port = settings.worker_metrics_port
    worker_env = {
        **env,
        "KLIKKFLOW_WORKER_METRICS_HOST": host,
        "KLIKKFLOW_WORKER_METRICS_PORT": str(metrics_port),
    }
    worker = ServiceSpec(
        "worker",
        _python("worker"),
        env=worker_env,
        port=metrics_port or None,
        host=host,
        ready=partial(_worker_alive, platform.redis_url),
    )
    worker.url = f"arq worker on {platform.redis_url}"
    await sup.start(worker)
    platform.urls["worker"] = worker.url
    if metrics_port:
        platform.urls["worker-metrics"] = f"http://{host}:{metrics_port}/metrics"
    names = ["router", "worker"]
    if web:
        web_env = {
            **env,
            "KLIKKFLOW_ROUTER_URL": platform.router_url,
            "KLIKKFLOW_AI_URL": f"http://{host}:{settings.ai_port}",
        }
        argv = _python("serve", "web", "--host", host, "--port", str(settings.web_port))
        await sup.start(_http_service("web", argv, host, settings.web_port, web_env, "/healthz"))
        platform.urls["web"] = f"http://{host}:{settings.web_port}/"
        names.append("web")
    await sup.wait_ready(names, timeout=settings.startup_timeout)
    return platform
