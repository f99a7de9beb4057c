"""arq jobs: thin shells around services (load, call, save, publish)."""

from __future__ import annotations

import time
from typing import Any

from klikkflow.kit import metrics
from subgraphs.ai.analytics import analytics
from subgraphs.executions import retention, schedules
from subgraphs.executions.models import TERMINAL
from subgraphs.executions.runs import runs


async def run_execution(ctx: dict[str, Any], execution_id: str) -> str | None:
    started = time.perf_counter()
    with metrics.BUSY_SLOTS.track_inprogress():
        status = await runs.execute(ctx["redis"], ctx["queue"], execution_id)
    if status in TERMINAL:
        metrics.execution_finished(status.value, time.perf_counter() - started)
    return status.value if status else None


async def sweep_executions(ctx: dict[str, Any]) -> int:
    """Cron: enqueue again the running executions whose worker died."""
    return len(await runs.sweep(ctx["redis"], ctx["queue"]))


async def fire_schedules(ctx: dict[str, Any]) -> int:
    """Cron: start the executions of schedules whose tick has come (once per tick)."""
    return await schedules.fire_due(ctx["redis"], ctx["queue"])


async def prune_executions(ctx: dict[str, Any]) -> int:
    """Cron: delete finished executions beyond the retention limits."""
    settings = ctx["settings"]
    return await retention.prune(
        settings.execution_retention_days, settings.execution_retention_per_workflow
    )


async def roll_up_analytics(ctx: dict[str, Any]) -> int:
    """Cron: count executions that finished since the last pass in the analytics rollup
    (PostgreSQL); how many it counted."""
    if "pg" not in ctx:  # a worker without the AI database keeps no analytics
        return 0
    return await analytics.rollup(ctx["pg"])
