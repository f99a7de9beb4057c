"""Routing nodes: If, Switch, Filter, No Op and Stop And Error (n8n parameter shapes)."""

from __future__ import annotations

import json
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
)
from klikkflow.nodes.conditions import (
    Conditions,
    FilterSettings,
    evaluate_conditions,
    parse_json_text,
    parse_number,
    to_js_string,
)


def paired(source: Item, index: int) -> Item:
    """The input item passed on unchanged, pointing back at its input position."""
    passed = dict(source)
    passed["pairedItem"] = {"item": index}
    return passed


class ConditionNodeOptions(Parameters):
    ignore_case: bool | None = Field(None, alias="ignoreCase")
    # Before If 2.1 / Filter 2.1 / Switch 3.1 this option lived here, not at the top level.
    loose_type_validation: bool | None = Field(None, alias="looseTypeValidation")


class ConditionNodeParams(Parameters):
    conditions: Conditions = Field(default_factory=Conditions)  # type: ignore[arg-type]
    loose_type_validation: bool | None = Field(None, alias="looseTypeValidation")
    options: ConditionNodeOptions = Field(default_factory=ConditionNodeOptions)  # type: ignore[arg-type]

    def settings(self) -> FilterSettings:
        loose = self.loose_type_validation
        if loose is None:
            loose = self.options.loose_type_validation
        return FilterSettings(
            self.conditions, ignore_case=self.options.ignore_case, loose_type_validation=loose
        )


class If(NodeType):
    type = "if"
    pure = True
    version = 2.2
    accepted_versions = (2, 2.1, 2.2)
    display_name = "If"
    description = "Route items to the true or false output by conditions."
    category = "flow"
    Params = ConditionNodeParams
    outputs = ("true", "false")

    async def run(self, ctx: NodeContext, params: Parameters, inputs: Inputs) -> Outputs:
        assert isinstance(params, ConditionNodeParams)
        items = inputs.get(MAIN, [])
        passes = evaluate_conditions(
            ctx, params.conditions, items, path="conditions", settings=params.settings()
        )
        outputs: Outputs = {"true": [], "false": []}
        for index, (source, passed) in enumerate(zip(items, passes, strict=True)):
            outputs["true" if passed else "false"].append(paired(source, index))
        return outputs


class Filter(NodeType):
    type = "filter"
    pure = True
    version = 2.2
    accepted_versions = (2, 2.1, 2.2)
    display_name = "Filter"
    description = "Keep only the items that match the conditions."
    category = "flow"
    Params = ConditionNodeParams

    async def run(self, ctx: NodeContext, params: Parameters, inputs: Inputs) -> Outputs:
        assert isinstance(params, ConditionNodeParams)
        items = inputs.get(MAIN, [])
        passes = evaluate_conditions(
            ctx, params.conditions, items, path="conditions", settings=params.settings()
        )
        kept = [
            paired(source, i)
            for i, (source, ok) in enumerate(zip(items, passes, strict=True))
            if ok
        ]
        return {MAIN: kept}


# ---------------------------------------------------------------- Switch


class SwitchRule(Parameters):
    conditions: Conditions = Field(default_factory=Conditions)  # type: ignore[arg-type]
    rename_output: bool = Field(False, alias="renameOutput")
    output_key: str = Field("", alias="outputKey")


class SwitchRules(Parameters):
    values: list[SwitchRule] = Field(default_factory=list)


class SwitchOptions(Parameters):
    # "none" drops unmatched items, "extra" sends them to an extra last output,
    # a number sends them to that rule's output.
    fallback_output: Literal["none", "extra"] | int = Field("none", alias="fallbackOutput")
    rename_fallback_output: str = Field("", alias="renameFallbackOutput")
    ignore_case: bool | None = Field(None, alias="ignoreCase")
    loose_type_validation: bool | None = Field(None, alias="looseTypeValidation")
    all_matching_outputs: bool = Field(False, alias="allMatchingOutputs")


class SwitchParams(Parameters):
    mode: Literal["rules", "expression"] = "rules"
    rules: SwitchRules = Field(default_factory=SwitchRules)  # type: ignore[arg-type]
    number_outputs: int = Field(4, alias="numberOutputs", ge=1, le=256)
    output: Any = Field("={{}}", description="Expression mode: the output index per item.")
    loose_type_validation: bool | None = Field(None, alias="looseTypeValidation")
    options: SwitchOptions = Field(default_factory=SwitchOptions)  # type: ignore[arg-type]

    def settings(self, rule: SwitchRule) -> FilterSettings:
        loose = self.loose_type_validation
        if loose is None:
            loose = self.options.loose_type_validation
        return FilterSettings(
            rule.conditions, ignore_case=self.options.ignore_case, loose_type_validation=loose
        )


def _unique(names: list[str]) -> tuple[str, ...]:
    seen: set[str] = set()
    result = []
    for index, name in enumerate(names):
        if name in seen:
            name = f"{name}_{index}"
        seen.add(name)
        result.append(name)
    return tuple(result)


class Switch(NodeType):
    type = "switch"
    pure = True
    version = 3.2
    accepted_versions = (3, 3.1, 3.2)
    display_name = "Switch"
    description = "Route each item to the output of the first (or every) matching rule."
    category = "flow"
    Params = SwitchParams
    outputs = ("0",)

    def output_ports(self, params: Parameters) -> tuple[str, ...]:
        """One port per rule, in n8n's output order: its name when renamed, else its index;
        then the fallback port when fallbackOutput is "extra"."""
        assert isinstance(params, SwitchParams)
        if params.mode == "expression":
            return tuple(str(i) for i in range(params.number_outputs))
        names = [
            rule.output_key if rule.rename_output and rule.output_key else str(index)
            for index, rule in enumerate(params.rules.values)
        ]
        if params.options.fallback_output == "extra":
            names.append(params.options.rename_fallback_output or "fallback")
        return _unique(names)

    async def run(self, ctx: NodeContext, params: Parameters, inputs: Inputs) -> Outputs:
        assert isinstance(params, SwitchParams)
        items = inputs.get(MAIN, [])
        ports = self.output_ports(params)
        outputs: Outputs = {port: [] for port in ports}
        if params.mode == "expression":
            self._route_by_expression(ctx, params, items, ports, outputs)
        else:
            self._route_by_rules(ctx, params, items, ports, outputs)
        return outputs

    def _route_by_expression(
        self,
        ctx: NodeContext,
        params: SwitchParams,
        items: list[Item],
        ports: tuple[str, ...],
        outputs: Outputs,
    ) -> None:
        targets = ctx.evaluate(params.output, items, path="output")
        for index, source in enumerate(items):
            target = _output_index(targets[index], len(ports), index)
            outputs[ports[target]].append(paired(source, index))

    def _route_by_rules(
        self,
        ctx: NodeContext,
        params: SwitchParams,
        items: list[Item],
        ports: tuple[str, ...],
        outputs: Outputs,
    ) -> None:
        matches = [
            evaluate_conditions(
                ctx,
                rule.conditions,
                items,
                path=f"rules.values[{r}].conditions",
                settings=params.settings(rule),
            )
            for r, rule in enumerate(params.rules.values)
        ]
        fallback = params.options.fallback_output
        if isinstance(fallback, int) and not 0 <= fallback < len(params.rules.values):
            raise NodeError(
                f"The fallback output {fallback} is not allowed",
                description=f"It has to be between 0 and {len(params.rules.values) - 1}",
            )
        for index, source in enumerate(items):
            matched = False
            for rule_index, rule_matches in enumerate(matches):
                if rule_matches[index]:
                    matched = True
                    outputs[ports[rule_index]].append(paired(source, index))
                    if not params.options.all_matching_outputs:
                        break
            if matched or fallback == "none":
                continue
            target = ports[-1] if fallback == "extra" else ports[int(fallback)]
            outputs[target].append(paired(source, index))


def _output_index(value: Any, count: int, item_index: int) -> int:
    number = parse_number(value) if value is not None and value != "" else None
    if number is None or isinstance(number, float) and not number.is_integer():
        raise NodeError(
            f"The output index {to_js_string(value)!r} is not a whole number [item {item_index}]",
            item_index=item_index,
        )
    target = int(number)
    if not 0 <= target < count:
        raise NodeError(
            f"The output {target} is not allowed [item {item_index}]",
            item_index=item_index,
            description=f"It has to be between 0 and {count - 1}",
        )
    return target


# ---------------------------------------------------------------- No Op, Stop And Error


class NoOp(NodeType):
    type = "noOp"
    pure = True
    version = 1
    display_name = "No Operation, do nothing"
    description = "Pass the items through unchanged (a placeholder or a junction)."
    category = "flow"

    async def run(self, ctx: NodeContext, params: Parameters, inputs: Inputs) -> Outputs:
        return {MAIN: [paired(source, i) for i, source in enumerate(inputs.get(MAIN, []))]}


class StopAndErrorParams(Parameters):
    error_type: Literal["errorMessage", "errorObject"] = Field("errorMessage", alias="errorType")
    error_message: Any = Field("", alias="errorMessage")
    # A JSON object (as text, possibly an expression) with message / description fields.
    error_object: Any = Field("", alias="errorObject")


class StopAndError(NodeType):
    type = "stopAndError"
    pure = True
    version = 1
    display_name = "Stop and Error"
    description = "Fail the execution with a message or an error object."
    category = "flow"
    Params = StopAndErrorParams
    outputs = ()

    async def run(self, ctx: NodeContext, params: Parameters, inputs: Inputs) -> Outputs:
        assert isinstance(params, StopAndErrorParams)
        items = inputs.get(MAIN, [])[:1]  # n8n reads the parameters for the first item
        if params.error_type == "errorMessage":
            message = ctx.evaluate(params.error_message, items, path="errorMessage")[0]
            raise NodeError(to_js_string(message) if message is not None else "Error")
        raw = ctx.evaluate(params.error_object, items, path="errorObject")[0]
        raise _error_from_object(raw)


def _error_from_object(raw: Any) -> NodeError:
    error = raw
    if isinstance(raw, str):
        try:
            error = parse_json_text(raw)
        except ValueError:
            return NodeError(raw or "Error")
    if not isinstance(error, dict):
        return NodeError(to_js_string(error))
    nested = error.get("error")
    message = (
        error.get("message")
        or (nested.get("message") if isinstance(nested, dict) else nested)
        or error.get("description")
        or json.dumps(error, ensure_ascii=False, default=str)
    )
    description = error.get("description") if message != error.get("description") else ""
    return NodeError(to_js_string(message), description=to_js_string(description or ""))


FLOW_NODES: list[type[NodeType]] = [If, Switch, Filter, NoOp, StopAndError]
