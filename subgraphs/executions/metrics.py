"""`/metrics` of the executions service: queue depth and unfinished executions, read when
Prometheus scrapes, and the webhook counters (see klikkflow.kit.metrics).

The counts are operator-wide, not a viewer's, so they live here rather than in the
viewer-scoped repository. Only unfinished statuses are counted, each by a range of the
`status` index: they stay cheap with millions of finished executions, which the workers
count as they finish them (`klikkflow_executions_finished_total`).
"""

from __future__ import annotations

import asyncio

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from klikkflow.kit import metrics
from subgraphs.executions.models import TERMINAL, ExecutionDocument, ExecutionStatus

UNFINISHED = [status for status in ExecutionStatus if status not in TERMINAL]


async def _count(status: ExecutionStatus) -> int:
    collection = ExecutionDocument.get_pymongo_collection()
    return int(await collection.count_documents({"status": status.value}))


async def scrape(request: Request) -> Response:
    queue = request.app.state.queue
    depth, *counts = await asyncio.gather(
        queue.zcard(queue.default_queue_name), *(_count(s) for s in UNFINISHED)
    )
    metrics.QUEUE_DEPTH.set(depth)
    for status, count in zip(UNFINISHED, counts, strict=True):
        metrics.EXECUTIONS.labels(status.value).set(count)
    return metrics.metrics_response(metrics.SERVICE)


ROUTES = [Route("/metrics", scrape)]
