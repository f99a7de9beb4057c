"""GraphQL for execution analytics and token usage: `AnalyticsQuery`, which the AI
subgraph's Query inherits (subgraphs/ai/schema.py). Any member of an organization may
read its analytics, as they may read its workflows and executions."""

from __future__ import annotations

from datetime import date
from enum import Enum
from typing import Annotated

import strawberry

from klikkflow.kit.errors import InvalidInput
from klikkflow.kit.graphql import ValidationError, validation_error
from subgraphs.ai.analytics import (
    MAX_RANGE_DAYS,
    GroupBy,
    Stats,
    StatsRow,
    TokenGroupBy,
    TokenRow,
)
from subgraphs.ai.analytics import analytics as analytics_service
from subgraphs.ai.generation_schema import Workflow

RANGE = f"UTC days, both included; at most {MAX_RANGE_DAYS} days"


@strawberry.enum(description="How executionAnalytics rows are grouped.")
class AnalyticsGroupBy(Enum):
    DAY = strawberry.enum_value(GroupBy.DAY.value, description="A row per day of the range.")
    WORKFLOW = strawberry.enum_value(GroupBy.WORKFLOW.value, description="A row per workflow.")
    DAY_AND_WORKFLOW = strawberry.enum_value(
        GroupBy.DAY_AND_WORKFLOW.value,
        description="A row per day and workflow, for days the workflow had executions.",
    )
    MODE = strawberry.enum_value(
        GroupBy.MODE.value,
        description="A row per trigger mode (manual, webhook, schedule, sub-workflow, ...).",
    )


@strawberry.enum(description="How tokenUsage rows are grouped.")
class TokenUsageGroupBy(Enum):
    DAY = strawberry.enum_value(TokenGroupBy.DAY.value, description="A row per day of the range.")
    MODEL = strawberry.enum_value(
        TokenGroupBy.MODEL.value, description="A row per provider and model."
    )
    WORKFLOW = strawberry.enum_value(
        TokenGroupBy.WORKFLOW.value,
        description="A row per workflow (calls outside any workflow, such as "
        "generateWorkflow before it saved one, have no workflow).",
    )


@strawberry.input(description="Which executions to count and how to group them.")
class AnalyticsInput:
    from_: date = strawberry.field(name="from", description=f"First day ({RANGE}).")
    to: date = strawberry.field(description="Last day, included.")
    group_by: AnalyticsGroupBy = strawberry.field(
        default=AnalyticsGroupBy.DAY, description="How rows are grouped."
    )
    workflow_id: strawberry.ID | None = strawberry.field(
        default=None, description="Count only this workflow's executions."
    )


@strawberry.input(description="Which language-model calls to sum and how to group them.")
class TokenUsageInput:
    from_: date = strawberry.field(name="from", description=f"First day ({RANGE}).")
    to: date = strawberry.field(description="Last day, included.")
    group_by: TokenUsageGroupBy = strawberry.field(
        default=TokenUsageGroupBy.DAY, description="How rows are grouped."
    )
    workflow_id: strawberry.ID | None = strawberry.field(
        default=None, description="Sum only this workflow's calls."
    )


@strawberry.type(description="Counts and durations of finished executions.")
class ExecutionStats:
    executions: int = strawberry.field(description="Executions that finished.")
    succeeded: int = strawberry.field(description="Of them, those that succeeded.")
    failed: int = strawberry.field(description="Of them, those that failed.")
    cancelled: int = strawberry.field(description="Of them, those that were cancelled.")
    failure_rate: float | None = strawberry.field(
        description="failed / executions, from 0 to 1 (cancelled ones are no failures); "
        "null without executions."
    )
    avg_duration_ms: float | None = strawberry.field(
        description="Mean time from start to finish in milliseconds, waits included; null "
        "when none started."
    )
    p50_duration_ms: float | None = strawberry.field(
        description="Median duration (ms), estimated from a histogram of log-spaced buckets."
    )
    p95_duration_ms: float | None = strawberry.field(
        description="95th percentile of the durations (ms), estimated like the median and "
        "never above the maximum."
    )
    max_duration_ms: float | None = strawberry.field(description="Longest duration (ms).")

    @classmethod
    def from_stats(cls, s: Stats) -> ExecutionStats:
        def rounded(value: float | None, digits: int = 3) -> float | None:
            return None if value is None else round(value, digits)

        return cls(
            executions=s.executions,
            succeeded=s.succeeded,
            failed=s.failed,
            cancelled=s.cancelled,
            failure_rate=rounded(s.failure_rate, 6),
            avg_duration_ms=rounded(s.avg_duration_ms),
            p50_duration_ms=rounded(s.percentile(0.5)),
            p95_duration_ms=rounded(s.percentile(0.95)),
            max_duration_ms=s.max_duration_ms,
        )


@strawberry.type(description="One group of executions; the fields it was not grouped by are null.")
class ExecutionAnalyticsRow:
    day: date | None = strawberry.field(description="The UTC day they finished.")
    workflow: Workflow | None = strawberry.field(description="Their workflow.")
    mode: str | None = strawberry.field(description="How they were triggered.")
    stats: ExecutionStats = strawberry.field(description="Their counts and durations.")

    @classmethod
    def from_row(cls, row: StatsRow) -> ExecutionAnalyticsRow:
        workflow = Workflow(id=strawberry.ID(row.workflow_id)) if row.workflow_id else None
        return cls(
            day=row.day,
            workflow=workflow,
            mode=row.mode,
            stats=ExecutionStats.from_stats(row.stats),
        )


@strawberry.type(
    description="Your organization's finished executions in a range of days, grouped. "
    "Executions are counted by the day they finished, a few seconds after they do."
)
class ExecutionAnalytics:
    from_: date = strawberry.field(name="from", description="First day of the range.")
    to: date = strawberry.field(description="Last day of the range.")
    group_by: AnalyticsGroupBy = strawberry.field(description="How rows are grouped.")
    rows: list[ExecutionAnalyticsRow] = strawberry.field(
        description="By day: every day of the range, in order. Otherwise the groups with "
        "executions, most executions first (by day and workflow: day by day)."
    )
    totals: ExecutionStats = strawberry.field(description="The whole range.")


@strawberry.type(description="Tokens of language-model calls; the fields not grouped by are null.")
class TokenUsageRow:
    day: date | None = strawberry.field(description="The UTC day of the calls.")
    provider: str | None = strawberry.field(description="The provider (openai, anthropic, ...).")
    model: str | None = strawberry.field(description="The model as the provider names it.")
    workflow: Workflow | None = strawberry.field(description="The workflow that made the calls.")
    input_tokens: float = strawberry.field(
        description="Prompt tokens (a whole number; Float because totals may pass 2^31)."
    )
    output_tokens: float = strawberry.field(description="Answer tokens (a whole number).")
    total_tokens: float = strawberry.field(description="Input and output tokens together.")
    calls: float = strawberry.field(description="Calls to the model (a whole number).")

    @classmethod
    def from_row(cls, row: TokenRow) -> TokenUsageRow:
        workflow = Workflow(id=strawberry.ID(row.workflow_id)) if row.workflow_id else None
        return cls(
            day=row.day,
            provider=row.provider,
            model=row.model,
            workflow=workflow,
            input_tokens=row.input_tokens,
            output_tokens=row.output_tokens,
            total_tokens=row.total_tokens,
            calls=row.calls,
        )


@strawberry.type(description="Tokens your organization's language-model calls used, grouped.")
class TokenUsageReport:
    from_: date = strawberry.field(name="from", description="First day of the range.")
    to: date = strawberry.field(description="Last day of the range.")
    group_by: TokenUsageGroupBy = strawberry.field(description="How rows are grouped.")
    rows: list[TokenUsageRow] = strawberry.field(
        description="By day: every day of the range, in order. Otherwise the groups with "
        "calls, most tokens first."
    )
    totals: TokenUsageRow = strawberry.field(
        description="The whole range (day, provider, model and workflow null)."
    )


AnalyticsResult = Annotated[
    ExecutionAnalytics | ValidationError,
    strawberry.union("AnalyticsResult", description="Outcome of analytics."),
]
TokenUsageResult = Annotated[
    TokenUsageReport | ValidationError,
    strawberry.union("TokenUsageResult", description="Outcome of tokenUsage."),
]


def _totals(rows: list[StatsRow]) -> Stats:
    total = Stats()
    for row in rows:
        total.add(row.stats)
    return total


def _token_totals(rows: list[TokenRow]) -> TokenRow:
    return TokenRow(
        input_tokens=sum(r.input_tokens for r in rows),
        output_tokens=sum(r.output_tokens for r in rows),
        calls=sum(r.calls for r in rows),
    )


@strawberry.type
class AnalyticsQuery:
    @strawberry.field(
        description="Your organization's finished executions over a range of days: counts "
        "by outcome, failure rate and durations, grouped by day, workflow, both, or trigger "
        "mode, with totals."
    )
    async def analytics(self, info: strawberry.Info, input: AnalyticsInput) -> AnalyticsResult:
        viewer = info.context.require_viewer()
        workflow_id = None if input.workflow_id is None else str(input.workflow_id)
        async with info.context.state.sessions() as session:
            try:
                rows = await analytics_service.execution_stats(
                    session,
                    viewer.organization_id,
                    input.from_,
                    input.to,
                    GroupBy[input.group_by.name],
                    workflow_id,
                )
            except InvalidInput as exc:
                return validation_error(exc, f"analytics refused: {exc}")
        return ExecutionAnalytics(
            from_=input.from_,
            to=input.to,
            group_by=input.group_by,
            rows=[ExecutionAnalyticsRow.from_row(r) for r in rows],
            totals=ExecutionStats.from_stats(_totals(rows)),
        )

    @strawberry.field(
        description="Tokens your organization's language-model calls (AI nodes, "
        "generateWorkflow) used over a range of days, grouped by day, model or workflow, "
        "with totals."
    )
    async def token_usage(self, info: strawberry.Info, input: TokenUsageInput) -> TokenUsageResult:
        viewer = info.context.require_viewer()
        workflow_id = None if input.workflow_id is None else str(input.workflow_id)
        async with info.context.state.sessions() as session:
            try:
                rows = await analytics_service.token_usage(
                    session,
                    viewer.organization_id,
                    input.from_,
                    input.to,
                    TokenGroupBy[input.group_by.name],
                    workflow_id,
                )
            except InvalidInput as exc:
                return validation_error(exc, f"tokenUsage refused: {exc}")
        return TokenUsageReport(
            from_=input.from_,
            to=input.to,
            group_by=input.group_by,
            rows=[TokenUsageRow.from_row(r) for r in rows],
            totals=TokenUsageRow.from_row(_token_totals(rows)),
        )
