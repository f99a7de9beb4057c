"""Nodes that shape the run itself: Merge, Loop Over Items, Wait, Respond to Webhook,
Execute Workflow. Their semantics live with the planner (merge waits until its inputs
are settled; a loop node may sit on a cycle; Wait parks the execution)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, Literal

from pydantic import Field

from klikkflow.nodes.base import (
    MAIN,
    Inputs,
    Item,
    NodeContext,
    NodeError,
    NodeType,
    Outputs,
    Parameters,
    Wait,
)

# ---- Merge --------------------------------------------------------------------------


class MergeParams(Parameters):
    mode: Literal["append", "combine", "chooseBranch"] = "append"
    combine_by: Literal["combineByFields", "combineByPosition", "combineAll"] = Field(
        "combineByFields", alias="combineBy"
    )
    fields_to_match_string: str = Field("", alias="fieldsToMatchString")
    join_mode: Literal[
        "keepMatches", "keepNonMatches", "keepEverything", "enrichInput1", "enrichInput2"
    ] = Field("keepMatches", alias="joinMode")
    output_data_from: Literal["both", "input1", "input2"] = Field("both", alias="outputDataFrom")
    choose_branch_mode: Literal["waitForAll"] = Field("waitForAll", alias="chooseBranchMode")
    output: Literal["specifiedInput", "empty"] = "specifiedInput"
    use_data_of_input: int = Field(1, alias="useDataOfInput", ge=1, le=2)
    number_inputs: int = Field(2, alias="numberInputs", ge=2, le=2)
    options: dict[str, Any] = Field(default_factory=dict)


def _get(json: dict[str, Any], path: str) -> Any:
    value: Any = json
    for part in path.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return value


def _merged(a: Item | None, b: Item | None) -> Item:
    return {"json": {**(a or {}).get("json", {}), **(b or {}).get("json", {})}}


class Merge(NodeType):
    type = "merge"
    pure = True
    version = 3
    accepted_versions = (3, 3.1, 3.2)
    display_name = "Merge"
    description = "Waits for both inputs, then appends, zips, joins by key or picks one."
    category = "flow"
    Params = MergeParams
    inputs = ("input1", "input2")
    waits_for_all_inputs = True

    async def run(self, ctx: NodeContext, params: Parameters, inputs: Inputs) -> Outputs:
        assert isinstance(params, MergeParams)
        one, two = inputs.get("input1", []), inputs.get("input2", [])
        if params.mode == "append":
            return {MAIN: one + two}
        if params.mode == "chooseBranch":
            if params.output == "empty":
                return {MAIN: [{"json": {}}]}
            return {MAIN: one if params.use_data_of_input == 1 else two}
        if params.combine_by == "combineByPosition":
            include = params.options.get("includeUnpaired", False)
            count = max(len(one), len(two)) if include else min(len(one), len(two))
            pairs = [
                _merged(one[i] if i < len(one) else None, two[i] if i < len(two) else None)
                for i in range(count)
            ]
            return {MAIN: pairs}
        if params.combine_by == "combineAll":
            return {MAIN: [_merged(a, b) for a in one for b in two]}
        return {MAIN: self._join(params, one, two)}

    def _join(self, params: MergeParams, one: list[Item], two: list[Item]) -> list[Item]:
        fields = [f.strip() for f in params.fields_to_match_string.split(",") if f.strip()]
        if not fields:
            raise NodeError("name the fields to match in fieldsToMatchString")

        def key(entry: Item) -> tuple[Any, ...]:
            return tuple(repr(_get(entry.get("json", {}), f)) for f in fields)

        index: dict[tuple[Any, ...], list[Item]] = {}
        for entry in two:
            index.setdefault(key(entry), []).append(entry)
        matched_keys = set()
        out: list[Item] = []
        for entry in one:
            matches = index.get(key(entry), [])
            if matches:
                matched_keys.add(key(entry))
            if params.join_mode in ("keepMatches", "keepEverything", "enrichInput1"):
                out.extend(_merged(entry, m) for m in matches)
            if not matches and params.join_mode in (
                "keepNonMatches",
                "keepEverything",
                "enrichInput1",
            ):
                out.append({"json": dict(entry.get("json", {}))})
        if params.join_mode in ("keepNonMatches", "keepEverything"):
            out.extend(e for e in two if key(e) not in matched_keys)
        if params.join_mode == "enrichInput2":
            by_key: dict[tuple[Any, ...], list[Item]] = {}
            for entry in one:
                by_key.setdefault(key(entry), []).append(entry)
            out = []
            for entry in two:
                found = by_key.get(key(entry), [])
                out.extend([_merged(m, entry) for m in found] or [{"json": dict(entry["json"])}])
        return out


# ---- Loop Over Items ----------------------------------------------------------------


class LoopParams(Parameters):
    batch_size: int = Field(1, alias="batchSize", ge=1, le=100_000)
    options: dict[str, Any] = Field(default_factory=dict)


class LoopOverItems(NodeType):
    """First run: keep the items, emit the first batch on "loop". Each later run (the
    batch's results coming back round the cycle): collect them, emit the next batch; when
    none is left, emit everything collected on "done"."""

    type = "splitInBatches"
    pure = True
    version = 3
    display_name = "Loop Over Items"
    description = "Runs the nodes on its loop output once per batch of items."
    category = "flow"
    Params = LoopParams
    outputs = ("done", "loop")
    may_loop = True

    async def run(self, ctx: NodeContext, params: Parameters, inputs: Inputs) -> Outputs:
        assert isinstance(params, LoopParams)
        state = ctx.state()
        incoming = inputs.get(MAIN, [])
        if not state.get("active") or params.options.get("reset"):
            state.update(active=True, remaining=incoming, done=[])
        else:
            state["done"] = state["done"] + incoming
        remaining: list[Item] = state["remaining"]
        if remaining:
            batch, state["remaining"] = (
                remaining[: params.batch_size],
                remaining[params.batch_size :],
            )
            return {"loop": batch, "done": []}
        done = state["done"]
        state.update(active=False, remaining=[], done=[])
        return {"done": done, "loop": []}


# ---- Wait ---------------------------------------------------------------------------

_UNITS = {"seconds": 1, "minutes": 60, "hours": 3600, "days": 86400}


class WaitParams(Parameters):
    resume: Literal["timeInterval", "specificTime", "webhook"] = "timeInterval"
    amount: float = Field(1, ge=0)
    unit: Literal["seconds", "minutes", "hours", "days"] = "hours"
    date_time: datetime | None = Field(None, alias="dateTime")
    limit_wait_time: bool = Field(False, alias="limitWaitTime")
    resume_amount: float = Field(1, alias="resumeAmount", ge=0)
    resume_unit: Literal["seconds", "minutes", "hours", "days"] = Field("hours", alias="resumeUnit")
    options: dict[str, Any] = Field(default_factory=dict)


class WaitNode(NodeType):
    type = "wait"
    version = 1.1
    accepted_versions = (1, 1.1)
    display_name = "Wait"
    description = "Parks the execution for a time, until a moment, or until resumed by a call."
    category = "flow"
    Params = WaitParams

    async def run(self, ctx: NodeContext, params: Parameters, inputs: Inputs) -> Wait:
        assert isinstance(params, WaitParams)
        items = inputs.get(MAIN, [])
        now = ctx.now()
        if params.resume == "timeInterval":
            until = now + timedelta(seconds=params.amount * _UNITS[params.unit])
            return Wait(until=until, outputs={MAIN: items})
        if params.resume == "specificTime":
            if params.date_time is None:
                raise NodeError("dateTime is required to wait until a specific time")
            when = params.date_time
            if when.tzinfo is None:
                from zoneinfo import ZoneInfo

                when = when.replace(tzinfo=ZoneInfo(ctx.timezone))
            return Wait(until=when, outputs={MAIN: items})
        limit = (
            now + timedelta(seconds=params.resume_amount * _UNITS[params.resume_unit])
            if params.limit_wait_time
            else None
        )
        return Wait(until=limit, resumable=True, outputs={MAIN: items})


# ---- Respond to Webhook -------------------------------------------------------------


class RespondParams(Parameters):
    respond_with: Literal["firstIncomingItem", "allIncomingItems", "json", "text", "noData"] = (
        Field("firstIncomingItem", alias="respondWith")
    )
    response_body: Any = Field("", alias="responseBody")
    options: dict[str, Any] = Field(default_factory=dict)


class RespondToWebhook(NodeType):
    """Sets the HTTP response of the webhook that started the execution (kept in the
    node's state, which the webhook ingress reads); its items pass through."""

    type = "respondToWebhook"
    version = 1.1
    accepted_versions = (1, 1.1)
    display_name = "Respond to Webhook"
    description = "Answers the webhook call that started the workflow."
    category = "flow"
    Params = RespondParams

    async def run(self, ctx: NodeContext, params: Parameters, inputs: Inputs) -> Outputs:
        assert isinstance(params, RespondParams)
        items = inputs.get(MAIN, [])
        body: Any
        if params.respond_with == "firstIncomingItem":
            body = items[0]["json"] if items else {}
        elif params.respond_with == "allIncomingItems":
            body = [i["json"] for i in items]
        elif params.respond_with == "noData":
            body = None
        else:
            body = ctx.evaluate(params.response_body, items[:1], path="responseBody")[0]
        code = int(params.options.get("responseCode", 200))
        headers = {
            h["name"]: str(h["value"])
            for h in params.options.get("responseHeaders", {}).get("entries", [])
        }
        ctx.state()["response"] = {
            "status": code,
            "headers": headers,
            "body": body,
            "kind": params.respond_with,
        }
        return {MAIN: items}


# ---- Execute Workflow ---------------------------------------------------------------


class ExecuteWorkflowParams(Parameters):
    source: Literal["database"] = "database"
    workflow_id: str | dict[str, Any] = Field(alias="workflowId")
    mode: Literal["once", "each"] = "once"
    options: dict[str, Any] = Field(default_factory=dict)


class ExecuteWorkflow(NodeType):
    type = "executeWorkflow"
    version = 1.1
    accepted_versions = (1, 1.1)
    display_name = "Execute Workflow"
    description = "Runs another workflow with these items; waits for its result or not."
    category = "flow"
    Params = ExecuteWorkflowParams

    async def run(self, ctx: NodeContext, params: Parameters, inputs: Inputs) -> Outputs:
        assert isinstance(params, ExecuteWorkflowParams)
        items = inputs.get(MAIN, []) or [{"json": {}}]
        target = params.workflow_id
        workflow_id = str(target.get("value") if isinstance(target, dict) else target)
        wait = bool(params.options.get("waitForSubWorkflow", True))
        batches = [[entry] for entry in items] if params.mode == "each" else [items]
        out: list[Item] = []
        for batch in batches:
            result = await ctx.execute_workflow(workflow_id, batch, wait=wait)
            out.extend(result if wait and result is not None else batch)
        return {MAIN: out}


CONTROL_NODES: list[type[NodeType]] = [
    Merge,
    LoopOverItems,
    WaitNode,
    RespondToWebhook,
    ExecuteWorkflow,
]
