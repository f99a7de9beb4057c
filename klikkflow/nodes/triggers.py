"""Trigger nodes: where an execution starts. Each passes the items it was started with on;
what starts it (a click, an HTTP request, a cron tick, a parent workflow, a failure) is
the platform's business, described by the parameters here."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter
from pydantic import Field, field_validator

from klikkflow.nodes.base import MAIN, Inputs, NodeContext, NodeType, Outputs, Parameters


class _Trigger(NodeType):
    is_trigger = True
    category = "trigger"
    inputs = ()
    pure = True  # hands on the items it was started with

    async def run(self, ctx: NodeContext, params: Parameters, inputs: Inputs) -> Outputs:
        return {MAIN: inputs.get(MAIN) or [{"json": {}}]}


class ManualTrigger(_Trigger):
    type = "manualTrigger"
    display_name = "Manual Trigger"
    description = "Starts the workflow when you run it by hand (or through runWorkflow)."


class WebhookParams(Parameters):
    http_method: Literal["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD"] = Field(
        "GET", alias="httpMethod"
    )
    path: str = Field(min_length=1, max_length=300)
    response_mode: Literal["onReceived", "lastNode", "responseNode"] = Field(
        "onReceived", alias="responseMode"
    )
    response_code: int = Field(200, alias="responseCode", ge=100, le=599)
    response_data: Literal["allEntries", "firstEntryJson", "noData"] = Field(
        "firstEntryJson", alias="responseData"
    )
    authentication: Literal["none", "basicAuth", "headerAuth", "hmac"] = "none"
    options: dict[str, Any] = Field(default_factory=dict)

    @field_validator("path")
    @classmethod
    def _no_slashes_around(cls, value: str) -> str:
        return value.strip("/")


class WebhookTrigger(_Trigger):
    type = "webhook"
    version = 2
    accepted_versions = (1, 1.1, 2, 2.1)
    display_name = "Webhook"
    description = "Starts the workflow on an HTTP request to /webhook/<path>."
    Params = WebhookParams


class ScheduleRule(Parameters):
    field: Literal["cronExpression"] = "cronExpression"
    expression: str

    @field_validator("expression")
    @classmethod
    def _valid_cron(cls, value: str) -> str:
        if not croniter.is_valid(value):
            raise ValueError(f"not a valid cron expression: {value!r}")
        return value


class ScheduleRules(Parameters):
    interval: list[ScheduleRule] = Field(min_length=1)


class ScheduleParams(Parameters):
    rule: ScheduleRules
    timezone: str | None = None

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                ZoneInfo(value)
            except (ZoneInfoNotFoundError, ValueError) as exc:
                raise ValueError(f"unknown time zone {value!r}") from exc
        return value


def next_fire(params: ScheduleParams, after: datetime, default_timezone: str = "UTC") -> datetime:
    """The first tick of any rule strictly after `after`, in UTC. Cron fields are read in
    the schedule's time zone (else the workflow's), so "0 9 * * *" stays 09:00 local
    across daylight-saving changes."""
    zone = ZoneInfo(params.timezone or default_timezone)
    local = after.astimezone(zone)
    ticks = [croniter(rule.expression, local).get_next(datetime) for rule in params.rule.interval]
    return min(ticks).astimezone(UTC)


class ScheduleTrigger(_Trigger):
    type = "scheduleTrigger"
    version = 1.2
    accepted_versions = (1, 1.1, 1.2)
    display_name = "Schedule Trigger"
    description = "Starts the workflow on cron schedules, in the workflow's time zone."
    Params = ScheduleParams


class ExecuteWorkflowTrigger(_Trigger):
    type = "executeWorkflowTrigger"
    version = 1.1
    accepted_versions = (1, 1.1)
    display_name = "Execute Workflow Trigger"
    description = "Starts the workflow when another workflow calls it with items."

    class Params(Parameters):
        input_source: Literal["passthrough"] = Field("passthrough", alias="inputSource")


class ErrorTrigger(_Trigger):
    type = "errorTrigger"
    display_name = "Error Trigger"
    description = "Starts this workflow when a workflow that names it as error workflow fails."


TRIGGER_NODES: list[type[NodeType]] = [
    ManualTrigger,
    WebhookTrigger,
    ScheduleTrigger,
    ExecuteWorkflowTrigger,
    ErrorTrigger,
]
