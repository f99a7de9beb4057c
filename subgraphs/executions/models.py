from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, ClassVar

from beanie import Document, PydanticObjectId
from pydantic import Field
from pymongo import ASCENDING, DESCENDING, IndexModel

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def now() -> datetime:
    return datetime.now(UTC)


class ExecutionStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    WAITING = "waiting"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


class ExecutionPriority(StrEnum):
    NORMAL = "normal"
    HIGH = "high"  # taken before every normal job queued in the last HIGH_PRIORITY_LEAD_MS


TERMINAL = frozenset({ExecutionStatus.SUCCEEDED, ExecutionStatus.FAILED, ExecutionStatus.CANCELLED})


class ExecutionDocument(Document):
    organization_id: PydanticObjectId
    workflow_id: PydanticObjectId
    workflow_version: int | None = None
    mode: str = "manual"  # manual | webhook | schedule | sub-workflow
    items: list[dict[str, Any]] = Field(default_factory=list)  # what the start node gets
    start_node: str | None = None
    error: dict[str, Any] | None = None  # why it failed: message, node, type
    retry_of: PydanticObjectId | None = None  # the failed execution this one goes on from
    priority: ExecutionPriority = ExecutionPriority.NORMAL
    parent_id: PydanticObjectId | None = None  # the execution whose Execute Workflow ran it
    depth: int = 0  # how deep in sub-workflows
    resume_payload: dict[str, Any] | None = None  # what a resume call brought a Wait
    status: ExecutionStatus = ExecutionStatus.QUEUED
    created_at: datetime = Field(default_factory=now)
    started_at: datetime | None = None
    finished_at: datetime | None = None

    class Settings:
        name = "executions"
        # History pages walk these newest first (by id), a status at a time, merged (see
        # repository.page): no index without the status, as every index costs each write
        # of an execution (the embedded store rewrites all its entries on any update;
        # measured there: an index costs ~0.1-0.15 ms of its CPU per execution). The
        # status leads the first one, so that the recovery sweep's and requeue's queries
        # (a status, every organization) use it too and need no index of their own.
        indexes = [
            IndexModel(
                [("status", ASCENDING), ("organization_id", ASCENDING), ("_id", DESCENDING)]
            ),
            IndexModel(
                [
                    ("organization_id", ASCENDING),
                    ("workflow_id", ASCENDING),
                    ("status", ASCENDING),
                    ("_id", DESCENDING),
                ]
            ),
            # Analytics read finished executions in this order (subgraphs.ai.analytics).
            # Only finished ones are in it: an execution is indexed once, when it ends, not
            # also while it runs (with no finish time, an entry to delete at its end).
            IndexModel(
                [("finished_at", ASCENDING), ("_id", ASCENDING)],
                name="finished",
                partialFilterExpression={"finished_at": {"$gte": EPOCH}},
            ),
        ]

    # Dropped at start-up, before the indexes above are made (klikkflow.kit.stores).
    retired_indexes: ClassVar[tuple[str, ...]] = (
        "finished_at_1__id_1",
        "organization_id_1__id_-1",
        "organization_id_1_workflow_id_1__id_-1",
        "organization_id_1_status_1__id_-1",
        "status_1_started_at_1",
    )


class ExecutionLogDocument(Document):
    """A page of an execution's append-only event log: the events one checkpoint wrote,
    in order (a page per write, not a document per event: a quick execution's whole log
    is two or three documents). The Redis stream is its live copy. Each entry holds
    seq, type, status, at and data."""

    execution_id: PydanticObjectId
    organization_id: PydanticObjectId
    seq: int  # of its first entry
    last_seq: int
    events: list[dict[str, Any]]

    class Settings:
        name = "execution_log"
        indexes = [IndexModel([("execution_id", ASCENDING), ("seq", ASCENDING)], unique=True)]


DOCUMENTS = [ExecutionDocument, ExecutionLogDocument]
