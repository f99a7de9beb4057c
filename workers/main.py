"""The arq worker process: `klikkflow worker` runs it."""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import time
from typing import Any

from arq import cron, func
from arq.constants import in_progress_key_prefix
from arq.utils import timestamp_ms
from arq.worker import Worker, async_check_health
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.exceptions import WatchError

from klikkflow.ai.embeddings import embedder_from_settings
from klikkflow.kit import heap
from klikkflow.kit.metrics import serve_worker_metrics
from klikkflow.kit.settings import WorkerSettings
from klikkflow.kit.stores import (
    WORKER_HEALTH_KEY,
    arq_redis_settings,
    create_pg_engine,
    create_redis,
    init_mongo,
    pack_in_c,
)
from klikkflow.kit.vault import LocalKeyProvider
from subgraphs.ai.runtime import PostgresAiServices
from subgraphs.ai.service import knowledge_base as knowledge_base_service
from subgraphs.executions.models import DOCUMENTS as EXECUTION_DOCUMENTS
from subgraphs.executions.models import TERMINAL
from subgraphs.executions.runs import RunSettings, runs
from subgraphs.executions.service import RUN_EXECUTION
from subgraphs.workflows.credentials import credential as credential_service
from subgraphs.workflows.models import DOCUMENTS as WORKFLOW_DOCUMENTS
from workers.jobs import (
    fire_schedules,
    prune_executions,
    roll_up_analytics,
    run_execution,
    sweep_executions,
)

SWEEP_EVERY_SECONDS = 3
ANALYTICS_EVERY_SECONDS = 3
RECONNECT_SECONDS = 1.0
log = logging.getLogger("klikkflow.worker")


# Claim jobs a poll found: each one not running yet and due (its score) gets its
# in-progress key, as arq's per-job WATCH/MULTI transaction does, atomically, until
# `room` jobs are claimed. KEYS: the queue; ARGV: the in-progress key prefix, now (ms),
# the in-progress lifetime (ms), room, this worker's token (the keys' value), ids.
# Answers id, score, id, score, ... claimed.
_CLAIM = """
local claimed = {}
for i = 6, #ARGV do
  if #claimed >= 2 * tonumber(ARGV[4]) then break end
  local key = ARGV[1] .. ARGV[i]
  if redis.call('EXISTS', key) == 0 then
    local score = redis.call('ZSCORE', KEYS[1], ARGV[i])
    if score and tonumber(score) <= tonumber(ARGV[2]) then
      redis.call('PSETEX', key, ARGV[3], ARGV[5])
      claimed[#claimed + 1] = ARGV[i]
      claimed[#claimed + 1] = score
    end
  end
end
return claimed
"""


# Undo a claim whose answer was lost: the in-progress keys of `ids` that hold our token.
# ARGV: the in-progress key prefix, the token, ids.
_UNCLAIM = """
for i = 3, #ARGV do
  local key = ARGV[1] .. ARGV[i]
  if redis.call('GET', key) == ARGV[2] then redis.call('DEL', key) end
end
"""


class ClaimingWorker(Worker):
    """arq's Worker, claiming all the jobs one poll found in one Redis script call, where
    arq claims each job with a transaction of 4 round trips (measured: ~8% of a worker's
    CPU per bench-a execution). Relies on arq 0.28's Worker internals (pinned)."""

    async def start_jobs(self, job_ids: list[bytes]) -> None:
        room = self.max_jobs - self.job_counter
        if room <= 0 or not job_ids:
            return
        claim = self.pool.register_script(_CLAIM)
        lifetime = int(self.in_progress_timeout_s * 1000)
        token = f"{socket.gethostname()}:{os.getpid()}:{id(self)}"
        ids = [j.decode() for j in job_ids]
        args: list[str | int] = [in_progress_key_prefix, timestamp_ms(), lifetime, room, token]
        try:
            claimed = await claim(keys=[self.queue_name], args=[*args, *ids])
        except Exception:
            # Redis may have run the script and the answer got lost: without this, the jobs
            # it claimed would look in progress, with nobody running them, for an hour.
            with contextlib.suppress(Exception):
                unclaim = self.pool.register_script(_UNCLAIM)
                await unclaim(args=[in_progress_key_prefix, token, *ids])
            raise
        for job_id, score in zip(claimed[::2], claimed[1::2], strict=True):
            await self.sem.acquire()
            self.job_counter += 1
            task = self.loop.create_task(self.run_job(job_id.decode(), int(score)))
            task.add_done_callback(lambda _: self._release_sem_dec_counter_on_complete())
            self.tasks[job_id.decode()] = task


def build_worker(settings: WorkerSettings, *, burst: bool = False) -> ClaimingWorker:
    async def startup(ctx: dict[str, Any]) -> None:
        ctx["mongo"] = await init_mongo(
            settings.mongo_uri, settings.mongo_db, [*EXECUTION_DOCUMENTS, *WORKFLOW_DOCUMENTS]
        )
        ctx["settings"] = settings
        ctx["queue"] = pack_in_c(ctx["redis"])  # arq's own pool: enqueues jobs
        ctx["redis"] = create_redis(settings.redis_url)
        provider = LocalKeyProvider(settings.credentials_master_keys, settings.secret_key)
        credential_service.configure(settings, provider)
        node_extras: dict[str, Any] = {}
        if settings.database_url:  # AI nodes: memory, token usage, knowledge bases
            ctx["pg"] = create_pg_engine(settings.database_url)
            embedder = embedder_from_settings(settings)
            knowledge_base_service.configure(embedder, settings.document_max_bytes)
            node_extras["ai"] = PostgresAiServices(ctx["pg"], embedder)
        runs.configure(
            RunSettings(
                allow_private_network=settings.allow_private_network,
                execution_timeout_seconds=settings.execution_timeout_seconds or None,
                node_output_max_bytes=settings.node_output_max_bytes or None,
                organization_max_running=settings.organization_max_running,
                node_extras=node_extras,
                webhook_url=settings.webhook_url,
                secret_key=settings.secret_key,
            )
        )
        heap.settle()
        if not settings.worker_log_jobs:  # arq's start-up lines are out; its warnings stay
            logging.getLogger("arq.worker").setLevel(logging.WARNING)
        if settings.worker_metrics_port:
            ctx["metrics"] = serve_worker_metrics(
                settings.worker_metrics_host,
                settings.worker_metrics_port,
                settings.worker_max_jobs,
                [status.value for status in TERMINAL],
            )

    async def shutdown(ctx: dict[str, Any]) -> None:
        if "metrics" in ctx:
            ctx["metrics"].close()
        if "queue" in ctx and "redis" in ctx:
            await ctx["redis"].aclose()
        if "mongo" in ctx:
            await ctx["mongo"].close()
        if "pg" in ctx:
            await ctx["pg"].dispose()

    return ClaimingWorker(
        functions=[func(run_execution, name=RUN_EXECUTION, keep_result=0)],
        cron_jobs=[
            cron(
                sweep_executions,
                name="executions.sweep",
                second=set(range(0, 60, SWEEP_EVERY_SECONDS)),
                run_at_startup=True,
                unique=False,
            ),
            cron(prune_executions, name="executions.prune", minute={7}, second={0}, unique=False),
            cron(  # unique: one worker takes each tick (the pass also locks, in PostgreSQL)
                roll_up_analytics,
                name="analytics.rollup",
                second=set(range(1, 60, ANALYTICS_EVERY_SECONDS)),
                run_at_startup=True,
            ),
            cron(
                fire_schedules,
                name="schedules.fire",
                second=set(range(60)),
                run_at_startup=True,
                unique=False,
            ),
        ],
        redis_settings=arq_redis_settings(settings.redis_url),
        on_startup=startup,
        on_shutdown=shutdown,
        max_jobs=settings.worker_max_jobs,
        job_timeout=settings.worker_job_timeout,
        poll_delay=settings.worker_poll_delay,
        health_check_key=WORKER_HEALTH_KEY,
        health_check_interval=5,
        burst=burst,
        handle_signals=True,
    )


def run(settings: WorkerSettings, burst: bool = False) -> None:
    """Run a worker; when Redis goes away (a restart, a failover) arq's loop stops, so the
    worker starts again once Redis answers. Executions it was running finish first (their
    log is in MongoDB), and the recovery sweep takes back whatever Redis forgot."""
    while True:
        try:
            build_worker(settings, burst=burst).run()
            return
        # WatchError: the connection broke inside one of arq's watched transactions.
        except (RedisConnectionError, RedisTimeoutError, WatchError, OSError) as exc:
            log.warning("lost Redis (%s); starting the worker again", exc)
            time.sleep(RECONNECT_SECONDS)


async def check(settings: WorkerSettings) -> bool:
    """True when a worker has reported its health recently (exit code for `--check`)."""
    return await async_check_health(arq_redis_settings(settings.redis_url), WORKER_HEALTH_KEY) == 0
