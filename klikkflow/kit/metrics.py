"""Prometheus metrics of the executions service and the workers.

Two registries, one per deployable, so neither process exposes the other's metrics as
zeros: `SERVICE` is served at the executions subgraph's `/metrics`, `WORKER` by a small
HTTP server inside each worker process (`KLIKKFLOW_WORKER_METRICS_PORT`). Both carry the
process, platform and garbage-collector collectors of prometheus_client.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from dataclasses import dataclass
from wsgiref.simple_server import WSGIServer

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    GC_COLLECTOR,
    PLATFORM_COLLECTOR,
    PROCESS_COLLECTOR,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    start_http_server,
)
from starlette.responses import Response

# Nodes take from a millisecond (Set, If) to minutes (HTTP, AI); executions up to an hour.
NODE_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)
EXECUTION_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600)


def _registry() -> CollectorRegistry:
    registry = CollectorRegistry()
    for collector in (PROCESS_COLLECTOR, PLATFORM_COLLECTOR, GC_COLLECTOR):
        registry.register(collector)
    return registry


# The executions subgraph: gauges read from Redis and MongoDB when scraped, and counters.
SERVICE = _registry()
QUEUE_DEPTH = Gauge(
    "klikkflow_queue_depth",
    "Jobs in the arq queue, deferred ones (Wait wake-ups) included",
    registry=SERVICE,
)
EXECUTIONS = Gauge(
    "klikkflow_executions",
    "Executions not finished yet, by status (finished ones: klikkflow_executions_finished_total "
    "on the workers)",
    ["status"],
    registry=SERVICE,
)
WEBHOOK_REQUESTS = Counter(
    "klikkflow_webhook_requests",
    "Webhook requests: outcome 'started' (an execution started) or the HTTP status refusing it",
    ["outcome"],
    registry=SERVICE,
)

# A worker process.
WORKER = _registry()
BUSY_SLOTS = Gauge(
    "klikkflow_worker_busy_slots", "Executions this worker is running now", registry=WORKER
)
MAX_SLOTS = Gauge(
    "klikkflow_worker_max_slots", "Jobs this worker runs at once at most", registry=WORKER
)
EXECUTIONS_FINISHED = Counter(
    "klikkflow_executions_finished",
    "Executions this worker ran to their end, by final status",
    ["status"],
    registry=WORKER,
)
NODE_DURATION = Histogram(
    "klikkflow_node_duration_seconds",
    "Time of one node run, by node type",
    ["node_type"],
    buckets=NODE_BUCKETS,
    registry=WORKER,
)
EXECUTION_DURATION = Histogram(
    "klikkflow_execution_duration_seconds",
    "Time the worker spent on the job that finished an execution (after a Wait: the "
    "part after the wake-up)",
    buckets=EXECUTION_BUCKETS,
    registry=WORKER,
)


def metrics_response(registry: CollectorRegistry) -> Response:
    """The registry in the Prometheus text format, for a Starlette route."""
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)


def webhook_request(outcome: str) -> None:
    WEBHOOK_REQUESTS.labels(outcome).inc()


def observe_node(node_type: str, seconds: float) -> None:
    """One node run took `seconds` (called by the worker when a node succeeds or fails)."""
    NODE_DURATION.labels(node_type).observe(seconds)


def execution_finished(status: str, seconds: float) -> None:
    EXECUTIONS_FINISHED.labels(status).inc()
    EXECUTION_DURATION.observe(seconds)


@dataclass
class MetricsServer:
    """The worker's metrics endpoint: prometheus_client's HTTP server in a thread, so a
    scrape is answered even while the event loop is busy."""

    server: WSGIServer
    thread: threading.Thread

    @property
    def port(self) -> int:
        return int(self.server.server_port)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


def serve_worker_metrics(
    host: str, port: int, max_slots: int, final_statuses: Iterable[str]
) -> MetricsServer:
    """Start the worker's /metrics server (any path answers) on host:port."""
    MAX_SLOTS.set(max_slots)
    for status in final_statuses:  # present from the start, so rate() sees the first one
        EXECUTIONS_FINISHED.labels(status)
    server, thread = start_http_server(port, host, registry=WORKER)
    return MetricsServer(server, thread)
