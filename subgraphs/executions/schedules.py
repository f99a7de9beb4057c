"""Firing cron schedules: every worker looks for due schedules every second; each tick
is claimed by one conditional update of the schedule (its `next_run_at` moves from the
tick to the next one), so however many workers look, one of them starts the execution.

Missed ticks (every worker was down): on catching up a schedule fires once, for the
latest missed tick, then goes on from the next tick in the future; it never fires a
burst of backlogged runs. A worker that dies between claiming a tick and queueing its
execution loses that one tick (at most once per tick)."""

from __future__ import annotations

import logging
from datetime import datetime

from arq.connections import ArqRedis
from redis.asyncio import Redis

from klikkflow.nodes.triggers import ScheduleParams, next_fire
from subgraphs.executions.models import now
from subgraphs.executions.service import execution as execution_service
from subgraphs.workflows.models import ScheduleRegistration

log = logging.getLogger("klikkflow.schedules")
BATCH = 200


def _following(schedule: ScheduleRegistration, at: datetime) -> datetime:
    params = ScheduleParams.model_validate(schedule.parameters)
    return next_fire(params, at, schedule.workflow_timezone)


async def fire_due(redis: Redis, queue: ArqRedis) -> int:
    """Start an execution for every schedule whose tick has come; how many started."""
    moment = now()
    due = (
        await ScheduleRegistration.find({"next_run_at": {"$lte": moment}})
        .sort("next_run_at")
        .limit(BATCH)
        .to_list()
    )
    started = 0
    for schedule in due:
        tick = schedule.next_run_at
        claimed = await ScheduleRegistration.get_pymongo_collection().update_one(
            {"_id": schedule.id, "next_run_at": tick},
            {"$set": {"next_run_at": _following(schedule, moment)}},
        )
        if claimed.modified_count != 1:
            continue  # another worker took this tick, or the schedule changed meanwhile
        item = {"json": {"timestamp": tick.isoformat(), "timezone": schedule.timezone}}
        await execution_service.submit_trigger(
            redis,
            queue,
            schedule.organization_id,
            schedule.workflow_id,
            schedule.version,
            schedule.node,
            [item],
            "schedule",
        )
        started += 1
    if started:
        log.info("started %d scheduled execution(s)", started)
    return started
