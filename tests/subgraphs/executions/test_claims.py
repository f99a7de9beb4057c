"""The worker claims the jobs a poll found in one Redis script: only jobs that are due
and not running elsewhere, and no more than it has room for; each claimed job runs once."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta

import pytest
from arq import func
from arq.connections import create_pool
from arq.constants import in_progress_key_prefix
from arq.jobs import Job

from klikkflow.kit.stores import arq_redis_settings
from workers.main import _CLAIM, ClaimingWorker


async def _twice(ctx, n: int) -> int:
    return 2 * n


async def test_a_poll_claims_due_jobs_not_running_elsewhere_up_to_its_room(platform):
    pool = await create_pool(arq_redis_settings(platform.redis_url))
    queue = f"claims-test-{uuid.uuid4().hex[:8]}"  # not the platform workers' queue
    try:
        for job_id, n in (("due", 1), ("busy", 2), ("also-due", 3)):
            await pool.enqueue_job("twice", n, _job_id=job_id, _queue_name=queue)
        await pool.enqueue_job(
            "twice", 4, _job_id="later", _queue_name=queue, _defer_by=timedelta(minutes=5)
        )
        await pool.set(in_progress_key_prefix + "busy", b"1", px=60_000)  # another worker's
        worker = ClaimingWorker(
            functions=[func(_twice, name="twice")],
            redis_pool=pool,
            queue_name=queue,
            max_jobs=1,
            burst=True,
            handle_signals=False,
        )
        ids = [b"busy", b"later", b"due", b"also-due"]
        await worker.start_jobs(ids)
        assert set(worker.tasks) == {"due"}  # room for one: the first due and free job
        await asyncio.gather(*worker.tasks.values())
        await worker.start_jobs(ids)  # "due" is done and gone from the queue
        assert set(worker.tasks) == {"due", "also-due"}
        await asyncio.gather(*worker.tasks.values())
        results = {
            job_id: await Job(job_id, pool, _queue_name=queue).result(timeout=5)
            for job_id in ("due", "also-due")
        }
        assert results == {"due": 2, "also-due": 6}
        assert await Job("busy", pool, _queue_name=queue).status() != "complete"
        assert await Job("later", pool, _queue_name=queue).status() == "deferred"
    finally:
        await pool.delete(queue)
        await pool.aclose()


async def test_a_claim_whose_answer_is_lost_frees_the_jobs_it_took(platform):
    pool = await create_pool(arq_redis_settings(platform.redis_url))
    queue = f"claims-test-{uuid.uuid4().hex[:8]}"
    try:
        for job_id in ("a", "b", "elsewhere"):
            await pool.enqueue_job("twice", 1, _job_id=job_id, _queue_name=queue)
        await pool.set(in_progress_key_prefix + "elsewhere", b"another worker", px=60_000)
        worker = ClaimingWorker(
            functions=[func(_twice, name="twice")],
            redis_pool=pool,
            queue_name=queue,
            burst=True,
            handle_signals=False,
        )
        real = pool.register_script

        def losing(script: str):
            registered = real(script)
            if script != _CLAIM:
                return registered

            async def run_then_lose_the_answer(**kwargs):
                await registered(**kwargs)  # Redis ran it: the keys are set
                raise ConnectionError("the answer was lost")

            return run_then_lose_the_answer

        pool.register_script = losing  # type: ignore[method-assign]
        with pytest.raises(ConnectionError):
            await worker.start_jobs([b"a", b"b", b"elsewhere"])
        assert not worker.tasks
        assert not await pool.exists(in_progress_key_prefix + "a", in_progress_key_prefix + "b")
        assert await pool.get(in_progress_key_prefix + "elsewhere") == b"another worker"
        pool.register_script = real  # type: ignore[method-assign]
        await worker.start_jobs([b"a", b"b"])  # the next poll takes them
        assert set(worker.tasks) == {"a", "b"}
        await asyncio.gather(*worker.tasks.values())
    finally:
        await pool.delete(queue)
        await pool.aclose()
