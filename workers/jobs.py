"""arq jobs: thin shells around services (load, call, save, publish)."""

from __future__ import annotations

import time
from typing import Any

from klikkflow.kit import metrics
from subgraphs.ai.analytics import analytics
from subgraphs.executions import retention, schedules
from subgraphs.executions.models import TERMINAL
from subgraphs.executions.runs import runs


async def run_execution(
    ctx: dict[str, Any], execution_id: str, snapshot: bytes | None = None
) -> str | None:
    """`snapshot`: the new execution as saved when its job was enqueued; only the job's
    first try runs from it (a later try may find the execution moved on)."""
    started = time.perf_counter()
    first = snapshot if ctx.get("job_try", 1) == 1 else None
    with metrics.BUSY_SLOTS.track_inprogress():
        status = await runs.execute(ctx["redis"], ctx["queue"], execution_id, first)
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
