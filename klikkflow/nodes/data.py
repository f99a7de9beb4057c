"""Item-shaping nodes: Edit Fields (Set), Sort, Limit, Remove Duplicates, Aggregate,
Summarize and Split Out, with n8n's parameter shapes.

Field names accept dot notation (`customer.address.city`) unless the node's option turns it
off. Nodes never mutate their input items: outputs share unchanged values with the input
and copy every dict they write into.
"""

from __future__ import annotations

import copy
import json
import math
import random
from collections.abc import Callable, Iterable
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
    parse_boolean,
    parse_collection,
    parse_json_text,
    parse_number,
    to_js_string,
)

_ABSENT = object()


# ---------------------------------------------------------------- field paths


def split_fields(text: str) -> list[str]:
    """n8n's comma-separated field lists ("a, b.c") as names."""
    return [name.strip() for name in (text or "").split(",") if name.strip()]


def field_path(name: str, dot_notation: bool = True) -> tuple[str, ...]:
    return tuple(name.split(".")) if dot_notation and "." in name else (name,)


def get_path(data: Any, path: tuple[str, ...], default: Any = None) -> Any:
    for key in path:
        if isinstance(data, dict):
            data = data.get(key, _ABSENT)
        elif isinstance(data, list) and key.isdigit() and int(key) < len(data):
            data = data[int(key)]
        else:
            return default
        if data is _ABSENT:
            return default
    return data


def set_path(data: dict[str, Any], path: tuple[str, ...], value: Any) -> None:
    """Set a (nested) key, copying every intermediate dict so shared input stays intact."""
    for key in path[:-1]:
        child = data.get(key)
        child = dict(child) if isinstance(child, dict) else {}
        data[key] = child
        data = child
    data[path[-1]] = value


def unset_path(data: dict[str, Any], path: tuple[str, ...]) -> None:
    for key in path[:-1]:
        child = data.get(key)
        if not isinstance(child, dict):
            return
        child = dict(child)
        data[key] = child
        data = child
    data.pop(path[-1], None)


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, ensure_ascii=False, default=str)


def _items(inputs: Inputs) -> list[Item]:
    return inputs.get(MAIN, [])


# ---------------------------------------------------------------- Edit Fields (Set)

FieldType = Literal["string", "number", "boolean", "array", "object"]


class Assignment(Parameters):
    id: str = ""
    name: str
    value: Any = None
    type: FieldType = "string"


class AssignmentCollection(Parameters):
    assignments: list[Assignment] = Field(default_factory=list)


class SetOptions(Parameters):
    dot_notation: bool = Field(True, alias="dotNotation")
    ignore_conversion_errors: bool = Field(False, alias="ignoreConversionErrors")
    # Set 3.3 keeps binary only when includeBinary is set; 3.4 keeps it unless stripBinary.
    include_binary: bool | None = Field(None, alias="includeBinary")
    strip_binary: bool | None = Field(None, alias="stripBinary")


class SetParams(Parameters):
    mode: Literal["manual", "raw"] = "manual"
    # Editor-only duplication for testing in n8n; ignored when a workflow runs.
    duplicate_item: bool = Field(False, alias="duplicateItem")
    duplicate_count: int = Field(0, alias="duplicateCount", ge=0)
    assignments: AssignmentCollection = Field(default_factory=AssignmentCollection)  # type: ignore[arg-type]
    json_output: Any = Field(
        '{\n  "my_field_1": "value",\n  "my_field_2": 1\n}\n', alias="jsonOutput"
    )
    include_other_fields: bool = Field(False, alias="includeOtherFields")
    include: Literal["all", "none", "selected", "except"] = "all"
    include_fields: str = Field("", alias="includeFields")
    exclude_fields: str = Field("", alias="excludeFields")
    options: SetOptions = Field(default_factory=SetOptions)  # type: ignore[arg-type]


class _Unconvertible(Exception):
    pass


def _to_string(value: Any) -> Any:
    return to_js_string(value)


def _to_number(value: Any) -> Any:
    number = parse_number(value)
    if number is None:
        raise _Unconvertible
    return number


def _to_boolean(value: Any) -> Any:
    parsed = parse_boolean(value)
    if parsed is None:
        raise _Unconvertible
    return parsed


def _to_array(value: Any) -> Any:
    parsed = parse_collection(value, list)
    if parsed is None:
        raise _Unconvertible
    return parsed


def _to_object(value: Any) -> Any:
    parsed = parse_collection(value, dict)
    if parsed is None:
        raise _Unconvertible
    return parsed


_CONVERTERS: dict[str, Callable[[Any], Any]] = {
    "string": _to_string,
    "number": _to_number,
    "boolean": _to_boolean,
    "array": _to_array,
    "object": _to_object,
}


def convert_column(values: list[Any], field_type: str, name: str, ignore_errors: bool) -> list[Any]:
    """Coerce one assignment's per-item values to its type (n8n's validateEntry).
    A repeated (static) value is converted once; a repeated list or dict is copied per item."""
    convert = _CONVERTERS[field_type]
    containers = field_type in ("array", "object")
    out: list[Any] = []
    last_in: Any = _ABSENT
    last_out: Any = None
    for index, value in enumerate(values):
        if value is None or value is _ABSENT:
            out.append(value)
            continue
        if value is last_in:
            out.append(copy.deepcopy(last_out) if containers else last_out)
            continue
        last_in = value
        try:
            last_out = convert(value)
        except _Unconvertible:
            if not ignore_errors:
                raise _conversion_error(name, field_type, value, index) from None
            last_out = value
        out.append(last_out)
    return out


def _conversion_error(name: str, field_type: str, value: Any, index: int) -> NodeError:
    return NodeError(
        f"'{name}' expects {'an' if field_type[0] in 'aeiou' else 'a'} {field_type} "
        f"but we got '{to_js_string(value)}' [item {index}]",
        item_index=index,
        description=(
            f'To fix the error try to change the type for the field "{name}" or activate the '
            "option “Ignore Type Conversion Errors” to apply a less strict type validation"
        ),
    )


class EditFields(NodeType):
    type = "set"
    pure = True
    version = 3.4
    accepted_versions = (3.3, 3.4)
    display_name = "Edit Fields (Set)"
    description = "Add, change or remove item fields, by field list or JSON."
    category = "data"
    Params = SetParams

    async def run(self, ctx: NodeContext, params: Parameters, inputs: Inputs) -> Outputs:
        assert isinstance(params, SetParams)
        items = _items(inputs)
        if not items:
            return {MAIN: []}
        if params.mode == "raw":
            columns = self._raw_columns(ctx, params, items)
        else:
            columns = self._assignment_columns(ctx, params, items)
        include = params.include if params.include_other_fields else "none"
        base = _base_json(items, include, params)
        keep_binary = self._keeps_binary(ctx, params, include)
        # Writes keep the assignments' order (a later one may overwrite an earlier one).
        writes: list[tuple[Any, list[Any], bool]] = [
            (path[0] if len(path) == 1 else path, values, len(path) > 1) for path, values in columns
        ]
        out: list[Item] = []
        append = out.append
        for index, json_out in enumerate(base):
            for key, values, nested in writes:
                value = values[index]
                if value is _ABSENT:  # a per-item field name that this item does not use
                    continue
                if nested:
                    set_path(json_out, key, value)
                else:
                    json_out[key] = value
            made: Item = {"json": json_out, "pairedItem": {"item": index}}
            if keep_binary and "binary" in items[index]:
                made["binary"] = dict(items[index]["binary"])
            append(made)
        return {MAIN: out}

    @staticmethod
    def _keeps_binary(ctx: NodeContext, params: SetParams, include: str) -> bool:
        if ctx.node.type_version >= 3.4:
            return params.options.strip_binary is not True and include != "none"
        return params.options.include_binary is True

    def _assignment_columns(
        self, ctx: NodeContext, params: SetParams, items: list[Item]
    ) -> list[tuple[tuple[str, ...], list[Any]]]:
        dots = params.options.dot_notation
        assignments = params.assignments.assignments
        computed = self._computed_values(ctx, assignments, items)
        columns = []
        for k, assignment in enumerate(assignments):
            base = f"assignments.assignments[{k}]"
            values = computed.get(k)
            if values is None:
                values = ctx.evaluate(assignment.value, items, path=f"{base}.value")
            names = [assignment.name]
            if "{{" in assignment.name:
                names = [str(n) for n in ctx.evaluate(assignment.name, items, path=f"{base}.name")]
            values = convert_column(
                values, assignment.type, names[0], params.options.ignore_conversion_errors
            )
            if len(set(names)) == 1:
                columns.append((field_path(names[0], dots), values))
                continue
            # A per-item name: one sparse column per distinct name.
            for name in dict.fromkeys(names):
                mask = [v if n == name else _ABSENT for n, v in zip(names, values, strict=True)]
                columns.append((field_path(name, dots), mask))
        return columns

    @staticmethod
    def _computed_values(
        ctx: NodeContext, assignments: list[Assignment], items: list[Item]
    ) -> dict[int, list[Any]]:
        """The values of all the assignments with expressions, in one evaluation (one call
        into the expression engine for them all, not one each), by assignment index."""
        dynamic = [
            {"value": a.value} if isinstance(a.value, str) and "{{" in a.value else None
            for a in assignments
        ]
        if sum(d is not None for d in dynamic) < 2:
            return {}
        rows = ctx.evaluate(dynamic, items, path="assignments.assignments")
        return {
            k: [row[k]["value"] for row in rows] for k, d in enumerate(dynamic) if d is not None
        }

    def _raw_columns(
        self, ctx: NodeContext, params: SetParams, items: list[Item]
    ) -> list[tuple[tuple[str, ...], list[Any]]]:
        objects = [
            _json_object(value, index)
            for index, value in enumerate(
                ctx.evaluate(params.json_output, items, path="jsonOutput")
            )
        ]
        dots = params.options.dot_notation
        keys = dict.fromkeys(key for obj in objects for key in obj)
        return [(field_path(key, dots), [obj.get(key, _ABSENT) for obj in objects]) for key in keys]


def _json_object(value: Any, index: int) -> dict[str, Any]:
    parsed = value
    if isinstance(value, str):
        try:
            parsed = parse_json_text(value)
        except ValueError:
            raise NodeError(
                f"The 'JSON Output' in item {index} contains invalid JSON",
                item_index=index,
                description=value,
            ) from None
    if not isinstance(parsed, dict):
        raise NodeError(
            f"The 'JSON Output' in item {index} does not contain a valid JSON object",
            item_index=index,
        )
    return parsed


def _base_json(items: list[Item], include: str, params: SetParams) -> list[dict[str, Any]]:
    if include == "none":
        return [{} for _ in items]
    if include == "all":
        return [dict(source["json"]) for source in items]
    dots = params.options.dot_notation
    if include == "selected":
        fields = [(field_path(f, dots), f) for f in split_fields(params.include_fields)]
        picked = []
        for source in items:
            json_out: dict[str, Any] = {}
            for path, name in fields:
                value = get_path(source["json"], path, _ABSENT)
                if value is not _ABSENT:
                    json_out[path[-1] if dots else name] = value
            picked.append(json_out)
        return picked
    excluded = [field_path(f, dots) for f in split_fields(params.exclude_fields)]
    kept = []
    for source in items:
        json_out = dict(source["json"])
        for path in excluded:
            unset_path(json_out, path)
        kept.append(json_out)
    return kept


# ---------------------------------------------------------------- Sort, Limit


class SortField(Parameters):
    field_name: str = Field("", alias="fieldName")
    order: Literal["ascending", "descending"] = "ascending"


class SortFieldsUi(Parameters):
    sort_field: list[SortField] = Field(default_factory=list, alias="sortField")


class DotNotationOptions(Parameters):
    disable_dot_notation: bool = Field(False, alias="disableDotNotation")


class SortParams(Parameters):
    # n8n's "code" type (a JavaScript comparator) is not supported.
    type: Literal["simple", "random"] = "simple"
    sort_fields_ui: SortFieldsUi = Field(default_factory=SortFieldsUi, alias="sortFieldsUi")  # type: ignore[arg-type]
    options: DotNotationOptions = Field(default_factory=DotNotationOptions)  # type: ignore[arg-type]


def _sort_key(value: Any) -> tuple[int, Any]:
    """Numbers, then text, then booleans, then anything else; missing values last."""
    if value is None:
        return (4, 0)
    if isinstance(value, bool):
        return (2, value)
    if isinstance(value, int | float):
        return (0, value if not (isinstance(value, float) and math.isnan(value)) else math.inf)
    if isinstance(value, str):
        return (1, value)
    return (3, _canonical(value))


class Sort(NodeType):
    type = "sort"
    pure = True
    version = 1
    display_name = "Sort"
    description = "Reorder items by one or more fields, or randomly."
    category = "data"
    Params = SortParams

    async def run(self, ctx: NodeContext, params: Parameters, inputs: Inputs) -> Outputs:
        assert isinstance(params, SortParams)
        indexed = list(enumerate(_items(inputs)))
        if params.type == "random":
            random.shuffle(indexed)
        else:
            fields = params.sort_fields_ui.sort_field
            if not fields:
                raise NodeError("No sorting specified", description="Add a field to sort by")
            dots = not params.options.disable_dot_notation
            # Stable sorts from the last field to the first give a multi-key order in which
            # missing values stay last whatever the direction.
            for spec in reversed(fields):
                path = field_path(spec.field_name, dots)
                descending = spec.order == "descending"
                present = [p for p in indexed if get_path(p[1]["json"], path) is not None]
                missing = [p for p in indexed if get_path(p[1]["json"], path) is None]
                present.sort(
                    key=lambda p: _sort_key(get_path(p[1]["json"], path)), reverse=descending
                )
                indexed = present + missing
        return {MAIN: [_passed(source, index) for index, source in indexed]}


def _passed(source: Item, index: int) -> Item:
    passed = dict(source)
    passed["pairedItem"] = {"item": index}
    return passed


class LimitParams(Parameters):
    max_items: int = Field(1, alias="maxItems", ge=1)
    keep: Literal["firstItems", "lastItems"] = "firstItems"


class Limit(NodeType):
    type = "limit"
    pure = True
    version = 1
    display_name = "Limit"
    description = "Keep only the first or last N items."
    category = "data"
    Params = LimitParams

    async def run(self, ctx: NodeContext, params: Parameters, inputs: Inputs) -> Outputs:
        assert isinstance(params, LimitParams)
        items = _items(inputs)
        start = 0 if params.keep == "firstItems" else max(len(items) - params.max_items, 0)
        end = min(start + params.max_items, len(items))
        return {MAIN: [_passed(items[i], i) for i in range(start, end)]}


# ---------------------------------------------------------------- Remove Duplicates


class RemoveDuplicatesOptions(Parameters):
    disable_dot_notation: bool = Field(False, alias="disableDotNotation")
    remove_other_fields: bool = Field(False, alias="removeOtherFields")


class RemoveDuplicatesParams(Parameters):
    # Version 2's other operations (deduplicating across executions) are not supported.
    operation: Literal["removeDuplicateInputItems"] = "removeDuplicateInputItems"
    compare: Literal["allFields", "allFieldsExcept", "selectedFields"] = "allFields"
    fields_to_exclude: str = Field("", alias="fieldsToExclude")
    fields_to_compare: str = Field("", alias="fieldsToCompare")
    options: RemoveDuplicatesOptions = Field(default_factory=RemoveDuplicatesOptions)  # type: ignore[arg-type]


class RemoveDuplicates(NodeType):
    type = "removeDuplicates"
    version = 2
    accepted_versions = (1.1, 2)
    display_name = "Remove Duplicates"
    description = "Drop items whose compared fields equal an earlier item's."
    category = "data"
    Params = RemoveDuplicatesParams

    async def run(self, ctx: NodeContext, params: Parameters, inputs: Inputs) -> Outputs:
        assert isinstance(params, RemoveDuplicatesParams)
        items = _items(inputs)
        dots = not params.options.disable_dot_notation
        selected = [field_path(f, dots) for f in split_fields(params.fields_to_compare)]
        if params.compare == "selectedFields" and not selected:
            raise NodeError("No fields specified", description="Add a field to compare")
        excluded = [field_path(f, dots) for f in split_fields(params.fields_to_exclude)]
        seen: set[str] = set()
        kept: list[Item] = []
        for index, source in enumerate(items):
            compared = self._compared(source["json"], params.compare, selected, excluded)
            key = _canonical(compared)
            if key in seen:
                continue
            seen.add(key)
            if params.compare == "selectedFields" and params.options.remove_other_fields:
                kept.append({"json": compared, "pairedItem": {"item": index}})
            else:
                kept.append(_passed(source, index))
        return {MAIN: kept}

    @staticmethod
    def _compared(
        data: dict[str, Any],
        compare: str,
        selected: list[tuple[str, ...]],
        excluded: list[tuple[str, ...]],
    ) -> dict[str, Any]:
        if compare == "allFields":
            return data
        if compare == "allFieldsExcept":
            rest = dict(data)
            for path in excluded:
                unset_path(rest, path)
            return rest
        picked: dict[str, Any] = {}
        for path in selected:
            set_path(picked, path, get_path(data, path))
        return picked


# ---------------------------------------------------------------- Aggregate


class FieldToAggregate(Parameters):
    field_to_aggregate: str = Field("", alias="fieldToAggregate")
    rename_field: bool = Field(False, alias="renameField")
    output_field_name: str = Field("", alias="outputFieldName")


class FieldsToAggregate(Parameters):
    field_to_aggregate: list[FieldToAggregate] = Field(
        default_factory=list, alias="fieldToAggregate"
    )


class AggregateOptions(Parameters):
    group_by_fields: str = Field("", alias="groupByFields")
    disable_dot_notation: bool = Field(False, alias="disableDotNotation")
    merge_lists: bool = Field(False, alias="mergeLists")
    include_binaries: bool = Field(False, alias="includeBinaries")
    keep_only_unique: bool = Field(False, alias="keepOnlyUnique")
    keep_missing: bool = Field(False, alias="keepMissing")


class AggregateParams(Parameters):
    aggregate: Literal["aggregateIndividualFields", "aggregateAllItemData"] = (
        "aggregateIndividualFields"
    )
    fields_to_aggregate: FieldsToAggregate = Field(
        default_factory=FieldsToAggregate,
        alias="fieldsToAggregate",  # type: ignore[arg-type]
    )
    destination_field_name: str = Field("data", alias="destinationFieldName")
    include: Literal["allFields", "specifiedFields", "allFieldsExcept"] = "allFields"
    fields_to_exclude: str = Field("", alias="fieldsToExclude")
    fields_to_include: str = Field("", alias="fieldsToInclude")
    options: AggregateOptions = Field(default_factory=AggregateOptions)  # type: ignore[arg-type]


class Aggregate(NodeType):
    type = "aggregate"
    pure = True
    version = 1
    display_name = "Aggregate"
    description = "Combine a field from many items (or whole items) into lists in one item."
    category = "data"
    Params = AggregateParams

    async def run(self, ctx: NodeContext, params: Parameters, inputs: Inputs) -> Outputs:
        assert isinstance(params, AggregateParams)
        items = _items(inputs)
        if params.aggregate == "aggregateIndividualFields":
            self._check_fields(params)
        groups = _group(items, split_fields(params.options.group_by_fields))
        out = []
        for group_values, members in groups:
            json_out: dict[str, Any] = {}
            for path, value in group_values:
                set_path(json_out, path, value)
            group_items = [items[i] for i in members]
            if params.aggregate == "aggregateIndividualFields":
                self._individual(params, group_items, json_out)
            else:
                kept = self._whole_items(params, group_items)
                json_out[params.destination_field_name] = [j for j, _ in kept]
                members = [members[i] for _, i in kept]
            made: Item = {"json": json_out, "pairedItem": [{"item": i} for i in members]}
            if params.options.include_binaries:
                binary = _merge_binaries(group_items, params.options.keep_only_unique)
                if binary:
                    made["binary"] = binary
            out.append(made)
        return {MAIN: out}

    @staticmethod
    def _check_fields(params: AggregateParams) -> None:
        fields = params.fields_to_aggregate.field_to_aggregate
        if not fields:
            raise NodeError("No fields specified", description="Please add a field to aggregate")
        names = [f.output_field_name if f.rename_field else f.field_to_aggregate for f in fields]
        for name in names:
            if names.count(name) > 1:
                raise NodeError(
                    f"The '{name}' output field is used more than once",
                    description="Please make sure each output field name is unique",
                )

    @staticmethod
    def _individual(params: AggregateParams, items: list[Item], json_out: dict[str, Any]) -> None:
        options = params.options
        dots = not options.disable_dot_notation
        for spec in params.fields_to_aggregate.field_to_aggregate:
            if not spec.field_to_aggregate:
                continue
            path = field_path(spec.field_to_aggregate, dots)
            output = (
                spec.output_field_name if spec.rename_field and spec.output_field_name else path[-1]
            )
            collected: list[Any] = []
            for source in items:
                value = get_path(source["json"], path)
                if not options.keep_missing:
                    if isinstance(value, list):
                        value = [v for v in value if v is not None]
                    elif value is None:
                        continue
                if isinstance(value, list) and options.merge_lists:
                    collected.extend(value)
                else:
                    collected.append(value)
            set_path(json_out, field_path(output, dots), collected)

    @staticmethod
    def _whole_items(
        params: AggregateParams, items: list[Item]
    ) -> list[tuple[dict[str, Any], int]]:
        include = (
            set(split_fields(params.fields_to_include))
            if params.include == "specifiedFields"
            else None
        )
        exclude = (
            set(split_fields(params.fields_to_exclude))
            if params.include == "allFieldsExcept"
            else set()
        )
        kept = []
        for index, source in enumerate(items):
            data = source["json"]
            if include is None and not exclude:
                kept.append((data, index))
                continue
            picked = {
                k: v
                for k, v in data.items()
                if k not in exclude and (include is None or k in include)
            }
            if picked:
                kept.append((picked, index))
        return kept


def _group(
    items: list[Item], fields: list[str]
) -> list[tuple[list[tuple[tuple[str, ...], Any]], list[int]]]:
    """Items grouped by the values of `fields` (first-seen order); one group when none."""
    if not fields:
        return [([], list(range(len(items))))]
    paths = [field_path(f) for f in fields]
    groups: dict[str, tuple[list[tuple[tuple[str, ...], Any]], list[int]]] = {}
    for index, source in enumerate(items):
        values = [get_path(source["json"], path) for path in paths]
        for name, value in zip(fields, values, strict=True):
            if isinstance(value, dict | list):
                raise NodeError(
                    f'Field "{name}" has a non-scalar value which cannot be used for grouping.',
                    item_index=index,
                    description="Only scalar values (string, number, boolean, null) can be used.",
                )
        key = _canonical(values)
        if key not in groups:
            groups[key] = (list(zip(paths, values, strict=True)), [])
        groups[key][1].append(index)
    return list(groups.values())


def _merge_binaries(items: list[Item], only_unique: bool) -> dict[str, Any]:
    merged: dict[str, Any] = {}
    seen: set[str] = set()
    for source in items:
        for key, data in (source.get("binary") or {}).items():
            if only_unique:
                fingerprint = _canonical(
                    [data.get(k) for k in ("mimeType", "fileType", "fileSize", "fileExtension")]
                )
                if fingerprint in seen:
                    continue
                seen.add(fingerprint)
            name, n = key, 1
            while name in merged:
                name, n = f"{key}_{n}", n + 1
            merged[name] = data
    return merged


# ---------------------------------------------------------------- Summarize

Aggregation = Literal[
    "append", "average", "concatenate", "count", "countUnique", "max", "min", "sum"
]
_PREFIX = {
    "append": "appended_",
    "average": "average_",
    "concatenate": "concatenated_",
    "count": "count_",
    "countUnique": "unique_count_",
    "max": "max_",
    "min": "min_",
    "sum": "sum_",
}


class FieldToSummarize(Parameters):
    aggregation: Aggregation = "count"
    field: str = ""
    include_empty: bool = Field(False, alias="includeEmpty")
    separate_by: str = Field(",", alias="separateBy")
    custom_separator: str = Field("", alias="customSeparator")


class FieldsToSummarize(Parameters):
    values: list[FieldToSummarize] = Field(default_factory=list)


class SummarizeOptions(Parameters):
    continue_if_field_not_found: bool = Field(False, alias="continueIfFieldNotFound")
    disable_dot_notation: bool = Field(False, alias="disableDotNotation")
    output_format: Literal["separateItems", "singleItem"] = Field(
        "separateItems", alias="outputFormat"
    )
    skip_empty_split_fields: bool = Field(False, alias="skipEmptySplitFields")


class SummarizeParams(Parameters):
    fields_to_summarize: FieldsToSummarize = Field(
        default_factory=FieldsToSummarize,
        alias="fieldsToSummarize",  # type: ignore[arg-type]
    )
    fields_to_split_by: str = Field("", alias="fieldsToSplitBy")
    options: SummarizeOptions = Field(default_factory=SummarizeOptions)  # type: ignore[arg-type]


def _is_empty(value: Any) -> bool:
    return value is None or value == ""


def _output_name(name: str) -> str:
    """n8n strips brackets and quotes from output keys and turns spaces and dots into _."""
    for char in '[]"':
        name = name.replace(char, "")
    return name.replace(" ", "_").replace(".", "_")


def summarize_values(spec: FieldToSummarize, values: list[Any]) -> Any:
    kind = spec.aggregation
    if kind in ("sum", "average"):
        numbers = [v for v in values if isinstance(v, int | float) and not isinstance(v, bool)]
        if kind == "sum":
            return sum(numbers)
        return sum(numbers) / len(numbers) if numbers else None
    if kind in ("min", "max"):
        present = [v for v in values if not _is_empty(v)]
        if not present:
            return None
        pick = min if kind == "min" else max
        try:
            return pick(present)
        except TypeError:  # mixed types: order as Sort does
            return pick(present, key=_sort_key)
    if not spec.include_empty:
        values = [v for v in values if not _is_empty(v)]
    if kind == "append":
        return values
    if kind == "concatenate":
        separator = spec.custom_separator if spec.separate_by == "other" else spec.separate_by
        return separator.join(to_js_string(v) for v in values)
    if kind == "countUnique":
        return len({_canonical(v) for v in values})
    return len(values)


class Summarize(NodeType):
    type = "summarize"
    pure = True
    version = 1.1
    accepted_versions = (1, 1.1)
    display_name = "Summarize"
    description = "Count, sum, average, min, max or list fields across items, optionally per group."
    category = "data"
    Params = SummarizeParams

    async def run(self, ctx: NodeContext, params: Parameters, inputs: Inputs) -> Outputs:
        assert isinstance(params, SummarizeParams)
        items = _items(inputs)
        specs = [s for s in params.fields_to_summarize.values if s.field]
        if not specs:
            raise NodeError(
                "You need to add at least one aggregation to 'Fields to Summarize' "
                "with non empty 'Field'"
            )
        dots = not params.options.disable_dot_notation
        self._check_found(ctx, params, items, specs, dots)
        split_by = split_fields(params.fields_to_split_by)
        groups = self._groups(items, split_by, dots, params.options.skip_empty_split_fields)
        rows = []
        for key_values, members in groups:
            summary = {}
            for spec in specs:
                path = field_path(spec.field, dots)
                values = [get_path(items[i]["json"], path) for i in members]
                summary[_output_name(_PREFIX[spec.aggregation] + spec.field)] = summarize_values(
                    spec, values
                )
            rows.append((key_values, summary, members))
        if params.options.output_format == "singleItem":
            return {MAIN: [self._single_item(rows, len(items))]}
        names = [_output_name(f) for f in split_by]
        return {
            MAIN: [
                {
                    "json": {**dict(zip(names, key_values, strict=True)), **summary},
                    "pairedItem": [{"item": i} for i in members],
                }
                for key_values, summary, members in rows
            ]
        }

    @staticmethod
    def _check_found(
        ctx: NodeContext,
        params: SummarizeParams,
        items: list[Item],
        specs: list[FieldToSummarize],
        dots: bool,
    ) -> None:
        lenient = ctx.node.type_version > 1 or params.options.continue_if_field_not_found
        for spec in specs:
            path = field_path(spec.field, dots)
            if not any(get_path(s["json"], path, _ABSENT) is not _ABSENT for s in items):
                if not lenient:
                    raise NodeError(f"The field '{spec.field}' does not exist in any items")
                ctx.log.info("summarize: field %r not found in any item", spec.field)

    @staticmethod
    def _groups(
        items: list[Item], split_by: list[str], dots: bool, skip_empty: bool
    ) -> list[tuple[list[Any], list[int]]]:
        paths = [field_path(f, dots) for f in split_by]
        groups: dict[str, tuple[list[Any], list[int]]] = {}
        for index, source in enumerate(items):
            values = [get_path(source["json"], path) for path in paths]
            if skip_empty and any(not isinstance(v, int | float) and not v for v in values):
                continue
            key = _canonical(values)
            if key not in groups:
                groups[key] = (values, [])
            groups[key][1].append(index)
        if not groups and not split_by:
            groups["[]"] = ([], [])
        return list(groups.values())

    @staticmethod
    def _single_item(rows: list[tuple[list[Any], dict[str, Any], list[int]]], count: int) -> Item:
        nested: dict[str, Any] = {}
        for key_values, summary, _ in rows:
            level = nested
            for value in key_values:
                label = value if isinstance(value, str) else to_js_string(value)
                level = level.setdefault(label, {})
            level.update(summary)
        return {"json": nested, "pairedItem": [{"item": i} for i in range(count)]}


# ---------------------------------------------------------------- Split Out


class SplitOutOptions(Parameters):
    disable_dot_notation: bool = Field(False, alias="disableDotNotation")
    destination_field_name: str = Field("", alias="destinationFieldName")
    include_binary: bool = Field(False, alias="includeBinary")


class SplitOutParams(Parameters):
    field_to_split_out: str = Field(alias="fieldToSplitOut", min_length=1)
    include: Literal["noOtherFields", "allOtherFields", "selectedOtherFields"] = "noOtherFields"
    fields_to_include: str = Field("", alias="fieldsToInclude")
    options: SplitOutOptions = Field(default_factory=SplitOutOptions)  # type: ignore[arg-type]


def _entries(value: Any) -> list[Any]:
    if value is None:
        return []
    if isinstance(value, list):
        return value
    if isinstance(value, dict):
        return list(value.values())
    return [value]


class SplitOut(NodeType):
    type = "splitOut"
    pure = True
    version = 1
    display_name = "Split Out"
    description = "Turn a list inside each item into separate items."
    category = "data"
    Params = SplitOutParams

    async def run(self, ctx: NodeContext, params: Parameters, inputs: Inputs) -> Outputs:
        assert isinstance(params, SplitOutParams)
        dots = not params.options.disable_dot_notation
        fields = [f.removeprefix("$json.") for f in split_fields(params.field_to_split_out)]
        destinations = split_fields(params.options.destination_field_name)
        if destinations and len(destinations) != len(fields):
            raise NodeError(
                "If multiple fields to split out are given, the same number of destination "
                "fields must be given"
            )
        selected = split_fields(params.fields_to_include)
        if params.include == "selectedOtherFields" and not selected:
            raise NodeError("No fields specified", description="Please add a field to include")
        out: list[Item] = []
        for index, source in enumerate(_items(inputs)):
            out.extend(self._split(source, index, params, fields, destinations, selected, dots))
        return {MAIN: out}

    @staticmethod
    def _split(
        source: Item,
        index: int,
        params: SplitOutParams,
        fields: list[str],
        destinations: list[str],
        selected: list[str],
        dots: bool,
    ) -> Iterable[Item]:
        data = source["json"]
        rows: list[dict[str, Any]] = []
        merge_objects = params.include == "noOtherFields" and not destinations and len(fields) == 1
        for position, name in enumerate(fields):
            target = destinations[position] if destinations else name
            for row, element in enumerate(_entries(get_path(data, field_path(name, dots)))):
                if row == len(rows):
                    rows.append({})
                if merge_objects and isinstance(element, dict):
                    rows[row].update(element)
                else:
                    rows[row][target] = element
        others: dict[str, Any] = {}
        if params.include == "allOtherFields":
            others = dict(data)
            for name in fields:
                unset_path(others, field_path(name, dots))
        elif params.include == "selectedOtherFields":
            others = {name: get_path(data, field_path(name, dots)) for name in selected}
        for fields_out in rows:
            made: Item = {"json": {**others, **fields_out}, "pairedItem": {"item": index}}
            if params.options.include_binary and "binary" in source:
                made["binary"] = source["binary"]
            yield made


DATA_NODES: list[type[NodeType]] = [
    EditFields,
    Sort,
    Limit,
    RemoveDuplicates,
    Aggregate,
    Summarize,
    SplitOut,
]
