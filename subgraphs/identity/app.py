"""The identity subgraph: users, organizations, memberships, sign-up and log-in."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from klikkflow.kit.asgi import subgraph_app
from klikkflow.kit.auth import INTROSPECT_PATH, JWKS_PATH, REFUSAL_PATH
from klikkflow.kit.forwarded import parse_networks
from klikkflow.kit.health import mongo_check, redis_check
from klikkflow.kit.ratelimit import RateLimiter
from klikkflow.kit.settings import SubgraphSettings
from klikkflow.kit.stores import create_redis, init_mongo
from subgraphs.identity.api_keys import api_keys
from subgraphs.identity.audit import GLOBAL_CHAIN, audit_log
from subgraphs.identity.keys import keys as signing_keys
from subgraphs.identity.models import DOCUMENTS
from subgraphs.identity.recovery import RESETS_PER_HOUR, recovery
from subgraphs.identity.schema import schema
from subgraphs.identity.service import address_limits
from subgraphs.identity.service import identity as identity_service

REFUSALS_PER_MINUTE = 120  # audit entries for refused tokens, all services together


def create_app(settings: SubgraphSettings | None = None) -> Starlette:
    settings = settings or SubgraphSettings()
    trusted_proxies = parse_networks(settings.trusted_proxies)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        mongo = await init_mongo(settings.mongo_uri, settings.mongo_db, DOCUMENTS)
        redis = create_redis(settings.redis_url)
        identity_service.use_redis(redis)
        address_limits.use_redis(redis)
        app.state.trusted_proxies = trusted_proxies
        app.state.refusals = RateLimiter(redis, "token-refusals", REFUSALS_PER_MINUTE, 60)
        recovery.use_limiter(RateLimiter(redis, "password-reset", RESETS_PER_HOUR, 3600))
        app.state.health_checks = {"mongo": mongo_check(mongo), "redis": redis_check(redis)}
        await signing_keys.signing_key(settings)  # the first start creates a key
        try:
            yield
        finally:
            await redis.aclose()
            await mongo.close()

    async def jwks(request: Request) -> JSONResponse:
        body = await signing_keys.jwks(settings)
        return JSONResponse(body, headers={"cache-control": "public, max-age=60"})

    async def introspect(request: Request) -> JSONResponse:
        # Answers only "what may this key do": asking requires holding the key already.
        try:
            key = (await request.json())["key"]
        except (ValueError, KeyError, TypeError):
            return JSONResponse({"active": False}, status_code=400)
        answer = await api_keys.introspect(str(key))
        return JSONResponse(answer.__dict__, headers={"cache-control": "no-store"})

    async def token_refused(request: Request) -> JSONResponse:
        # Any caller can say a token was refused: the log is capped, so this cannot flood it.
        try:
            body = await request.json()
            reason, service = str(body["reason"])[:300], str(body.get("service", ""))[:40]
        except (ValueError, KeyError, TypeError):
            return JSONResponse({"recorded": False}, status_code=400)
        if not (await request.app.state.refusals.hit("all")).allowed:
            return JSONResponse({"recorded": False, "reason": "rate limited"})
        await audit_log(settings).append(
            organization_id=GLOBAL_CHAIN,
            action="auth.token.refused",
            actor_kind="anonymous",
            data={"reason": reason, "service": service},
        )
        return JSONResponse({"recorded": True})

    return subgraph_app(
        "identity",
        schema,
        settings,
        lifespan,
        routes=[
            Route(JWKS_PATH, jwks),
            Route(INTROSPECT_PATH, introspect, methods=["POST"]),
            Route(REFUSAL_PATH, token_refused, methods=["POST"]),
        ],
    )
