"""n8n-compatible expressions: ``{{ ... }}`` segments of JavaScript inside parameters.

Each :class:`ExpressionEngine` owns one fresh QuickJS context (one per execution), so
nothing leaks between executions or tenants. Python never crosses into JS per item:
each distinct template is compiled once into a JS function, an ``evaluate`` call sends
all items as one JSON string, loops over them inside JS and reads back one JSON array.

A fresh context is cheap because it gets only the core runtime (js/runtime.js); the
rest is loaded once an expression's code names it, found by a regex over the code:
Luxon (``$now``, ``$today``, ``DateTime``, ...), and the n8n-style helper methods of
js/extensions.js (``.isEmpty()``, ``.sum()``, ``.toTitleCase()``, ...). Each template
function likewise binds only the names it mentions of ``$input``, ``$node``, ``$``,
``$vars``, ... The rule is textual: a name counts wherever it stands as a word (also
inside a string, so ``x["isEmpty"]()`` loads the helpers), but a name the code only
builds at run time (``x[name]()``, ``eval("$" + "vars")``) or spells with ``\\u``
escapes is not seen: such a helper exists only if another expression of the same
execution has loaded the helpers, and such a ``$`` name is not defined.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cache
from importlib import resources
from typing import Any
from zoneinfo import ZoneInfo

import orjson
import quickjs

Item = dict[str, Any]

_JS_NAMES = (
    "$input",
    "$node",
    "$",
    "$runIndex",
    "$vars",
    "$execution",
    "$workflow",
    "$now",
    "$today",
    "DateTime",
    "Duration",
    "Interval",
)
_JS_FIELDS = (
    "input",
    "node",
    "$",
    "runIndex",
    "vars",
    "execution",
    "workflow",
    "now",
    "today",
    "DateTime",
    "Duration",
    "Interval",
)
# A segment's code is compiled with only the names above that it mentions bound, so
# QuickJS parses a short head instead of all twelve ($json etc. are arguments).
_JS_NAME_REF = re.compile(
    r"(?<![\w$])(?:" + "|".join(re.escape(n) for n in _JS_NAMES) + r")(?![\w$])"
)
_LUXON_NAMES = re.compile(r"\$now\b|\$today\b|\bDateTime\b|\bDuration\b|\bInterval\b")
# The methods js/extensions.js puts on String/Number/Array prototypes (a test checks
# that this is the file's list). Math's own round/floor/ceil/min/max are no helpers:
# `Math.max(a, b)` alone loads nothing.
_EXTENSION_NAMES = (
    "isEmpty",
    "toTitleCase",
    "toSnakeCase",
    "isEmail",
    "extractDomain",
    "toNumber",
    "round",
    "floor",
    "ceil",
    "format",
    "first",
    "last",
    "unique",
    "sum",
    "average",
    "min",
    "max",
    "chunk",
    "compact",
)
_EXTENSION_REF = re.compile(
    r"(?<![\w$])(?<!Math\.)(?:" + "|".join(_EXTENSION_NAMES) + r")(?![\w$])"
)
_ITEM_NAMES = re.compile(r"\$input\b|\$binary\b")
_NODE_REF = re.compile(
    r"""\$\(\s*(?P<q1>['"])(?P<a>(?:(?!(?P=q1)).)*)(?P=q1)\s*\)"""
    r"""|\$node\s*\[\s*(?P<q2>['"])(?P<b>(?:(?!(?P=q2)).)*)(?P=q2)\s*\]"""
    r"""|\$node\.(?P<c>[A-Za-z_$][\w$]*)"""
)
_ANY_NODE_REF = re.compile(r"\$\(|\$node\b")
_QUOTED = re.compile(r"""(['"])([A-Za-z_]+(?:/[A-Za-z0-9_+\-]+)+)\1""")
_RESOURCE_ERRORS = ("InternalError: interrupted", "InternalError: out of memory")
# Parsed JSON costs QuickJS roughly 6x its text size; data we hand in is budgeted on
# top of memory_limit, so memory_limit bounds what an expression itself allocates.
_DATA_MEMORY_FACTOR = 8

_encoder = json.JSONEncoder(
    separators=(",", ":"), ensure_ascii=False, check_circular=False, default=str
)


def _dump_items(value: Any) -> str:
    """Bulk data (items, node outputs) crossing into JS: orjson is ~10x the stdlib here."""
    return orjson.dumps(value, default=str, option=orjson.OPT_NON_STR_KEYS).decode()


def is_expression(value: Any) -> bool:
    return isinstance(value, str) and "{{" in value


def contains_expression(value: Any) -> bool:
    if isinstance(value, str):
        return "{{" in value
    if isinstance(value, dict):
        return any(contains_expression(v) for v in value.values())
    if isinstance(value, list):
        return any(contains_expression(v) for v in value)
    return False


def strip_marker(value: Any) -> Any:
    """n8n marks every expression parameter with a leading "=", also one without
    `{{ }}`: "=high" means "high". Returns `value` itself when nothing changes."""
    if isinstance(value, str):
        return value[1:] if value.startswith("=") else value
    if isinstance(value, dict):
        stripped = {k: strip_marker(v) for k, v in value.items()}
        return value if all(stripped[k] is value[k] for k in value) else stripped
    if isinstance(value, list):
        items = [strip_marker(v) for v in value]
        return value if all(a is b for a, b in zip(items, value, strict=True)) else items
    return value


class ExpressionError(Exception):
    """An expression failed to compile or to evaluate for one item."""

    def __init__(
        self,
        message: str,
        *,
        node_name: str,
        parameter_path: str,
        item_index: int | None,
        expression: str,
        position: int | None,
    ) -> None:
        self.message = message
        self.node_name = node_name
        self.parameter_path = parameter_path
        self.item_index = item_index
        self.expression = expression
        self.position = position  # offset of the failing "{{" in the parameter string
        super().__init__(str(self))

    def __str__(self) -> str:
        where = [f'node "{self.node_name}"', f'parameter "{self.parameter_path}"']
        if self.item_index is not None:
            where.append(f"item {self.item_index}")
        if self.position is not None:
            where.append(f"at {self.position}")
        return f"{', '.join(where)}: {self.message}"


# ---- parsing templates


@dataclass(frozen=True, slots=True)
class _Segment:
    code: str
    position: int  # offset of "{{" in the original string


@dataclass(frozen=True, slots=True)
class _Parsed:
    texts: tuple[str, ...]  # len(segments) + 1 literal pieces around the segments
    segments: tuple[_Segment, ...]

    @property
    def is_single(self) -> bool:
        return len(self.segments) == 1 and not self.texts[0].strip() and not self.texts[1].strip()


def _segment_end(s: str, start: int) -> int:
    """Index of the "}}" closing a segment whose code starts at ``start``, or -1.

    Skips string literals and balanced braces, so ``{{ {a: {b: 1}} }}`` parses.
    """
    depth = 0
    i, n = start, len(s)
    while i < n:
        ch = s[i]
        if ch in "'\"`":
            i += 1
            while i < n and s[i] != ch:
                i += 2 if s[i] == "\\" else 1
        elif ch == "{":
            depth += 1
        elif ch == "}":
            if depth == 0 and s.startswith("}}", i):
                return i
            depth -= 1
        i += 1
    return -1


def _parse(source: str) -> _Parsed:
    base = 1 if source.startswith("=") else 0
    texts: list[str] = []
    segments: list[_Segment] = []
    pos, text_start = base, base
    while (open_at := source.find("{{", pos)) != -1:
        end = _segment_end(source, open_at + 2)
        if end == -1:
            break  # an unclosed "{{" is literal text, as in n8n
        texts.append(source[text_start:open_at])
        segments.append(_Segment(source[open_at + 2 : end], open_at))
        pos = text_start = end + 2
    texts.append(source[text_start:])
    return _Parsed(tuple(texts), tuple(segments))


@dataclass(frozen=True, slots=True)
class _Template:
    source: str
    fn_id: int
    positions: tuple[int, ...]
    needs_luxon: bool
    needs_items: bool  # $input / $binary: send whole items, not only their json
    node_refs: frozenset[str] | None  # None: refers to nodes by a computed name


@dataclass(frozen=True, slots=True)
class _Builder:
    """A compiled parameter tree: ``templates[k]`` is the k-th expression string in it."""

    fn_id: int
    templates: tuple[_Template, ...]
    paths: tuple[str, ...]


def _template_js(parsed: _Parsed) -> str:
    named = set(_JS_NAME_REF.findall("\n".join(seg.code for seg in parsed.segments)))
    head = "".join(
        f", {n} = __r[{json.dumps(f)}]"
        for n, f in zip(_JS_NAMES, _JS_FIELDS, strict=True)
        if n in named
    )
    body: list[str] = []
    for k, seg in enumerate(parsed.segments):
        # Newlines keep a trailing // comment in the code from eating the parenthesis.
        body.append(f"__s.seg = {k}; const __v{k} = (\n{seg.code}\n);")
    if parsed.is_single:
        result = "__v0 === undefined ? null : __v0"
    else:
        pieces = [json.dumps(parsed.texts[0])]
        for k in range(len(parsed.segments)):
            pieces += [f"__kf.str(__v{k})", json.dumps(parsed.texts[k + 1])]
        result = " + ".join(pieces)
    return (
        f"(function (__r) {{ const __s = __r.state{head};\n"
        "return function ($json, $binary, $itemIndex) {\n"
        + "\n".join(body)
        + f"\nreturn {result};\n}}; }})"
    )


def _node_refs(code: str) -> frozenset[str] | None:
    names = {
        next(g for g in (m["a"], m["b"], m["c"]) if g is not None) for m in _NODE_REF.finditer(code)
    }
    remaining = _NODE_REF.sub("", code)
    return None if _ANY_NODE_REF.search(remaining) else frozenset(names)


def _walk(value: Any, path: str) -> Iterator[tuple[str, str]]:
    """(path, string) for every expression string in a parameter tree, in order."""
    if isinstance(value, str):
        if "{{" in value:
            yield path, value
    elif isinstance(value, dict):
        for key, v in value.items():
            yield from _walk(v, f"{path}.{key}" if path else str(key))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _walk(v, f"{path}[{i}]")


def _tree_js(value: Any, counter: Iterator[int]) -> str:
    if isinstance(value, str) and "{{" in value:
        k = next(counter)
        return f"(__s.fn = {k}, __t{k}($json, $binary, $itemIndex))"
    if isinstance(value, dict) and contains_expression(value):
        fields = ", ".join(
            f"{json.dumps(str(k))}: {_tree_js(v, counter)}" for k, v in value.items()
        )
        return "{" + fields + "}"
    if isinstance(value, list) and contains_expression(value):
        return "[" + ", ".join(_tree_js(v, counter) for v in value) + "]"
    return _encoder.encode(value)


# ---- time zones for Luxon


@cache
def _zone_table(name: str) -> str | None:
    """JSON [[start_ms, offset_minutes], ...] for an IANA zone, 1970-2045."""
    try:
        zone = ZoneInfo(name)
    except (ValueError, OSError, KeyError):
        return None

    def offset(ts: float) -> int:
        delta = datetime.fromtimestamp(ts, zone).utcoffset() or timedelta()
        return int(delta.total_seconds() // 60)

    step = 7 * 86400  # zones never change offset twice within a week
    end = datetime(2045, 1, 1, tzinfo=UTC).timestamp()
    table = [[-8.64e15, offset(0)]]
    ts = 0.0
    while ts < end:
        nxt = ts + step
        if offset(nxt) != table[-1][1]:
            lo, hi = ts, nxt
            while hi - lo > 1:
                mid = (lo + hi) // 2
                lo, hi = (mid, hi) if offset(mid) == table[-1][1] else (lo, mid)
            table.append([hi * 1000, offset(hi)])
        ts = nxt
    return json.dumps(table)


# The runtime's functions Python calls (runtime.js, __kfApi).
_API = (
    "register",
    "configure",
    "useLuxon",
    "setOutput",
    "forgetOutput",
    "where",
    "seal",
    "intact",
    "run",
)


@cache
def _js_source(name: str) -> str:
    return resources.files("klikkflow.engine").joinpath("js", name).read_text(encoding="utf-8")


# ---- the engine


class ExpressionEngine:
    """The expressions of one execution at a time, in a QuickJS context of their own.

    An engine may serve the next execution of the same workflow version once this one is
    done (``reusable``, then ``restart``), keeping what it compiled: only if the
    expressions left the global object as they found it (built-ins take no new
    properties: runtime.js, ``seal``), left no promise job pending, and never after
    Luxon was loaded (it keeps settings out of sight). Anything else starts a fresh
    context.

    Not thread-safe: use an engine from one thread (one execution's task) at a time.
    """

    def __init__(
        self,
        *,
        execution_id: str,
        workflow: dict[str, Any],
        variables: dict[str, Any] | None = None,
        timezone: str = "UTC",
        mode: str = "manual",
        resume_url: str | None = None,
        memory_limit: int = 64 * 2**20,
        time_limit: float = 1.0,
    ) -> None:
        execution: dict[str, Any] = {"id": execution_id, "mode": mode}
        if resume_url is not None:  # where a call wakes the execution's Wait (n8n's name)
            execution["resumeUrl"] = resume_url
        self._env = {
            "vars": variables or {},
            "execution": execution,
            "workflow": {k: workflow.get(k) for k in ("id", "name", "active")},
        }
        nodes = workflow.get("nodes")
        self._node_names = [n["name"] for n in nodes] if isinstance(nodes, list) else None
        self._timezone = timezone
        self._memory_limit = memory_limit
        self._time_limit = time_limit
        self._outputs: dict[str, list[Item]] = {}  # node name -> items, not yet in JS
        self._context: quickjs.Context | None = None
        self._new_context()

    def _new_context(self) -> None:
        ctx = quickjs.Context()
        ctx.set_memory_limit(self._memory_limit)
        ctx.set_max_stack_size(1 * 2**20)
        ctx.eval(_js_source("runtime.js"))
        api = {name: ctx.eval(f"__kfApi.{name}") for name in _API}
        ctx.eval("delete globalThis.__kfApi")
        self._context = ctx
        self._api = api
        self._run = api["run"]
        self._set_output = api["setOutput"]
        self._register_fn = api["register"]
        self._templates: dict[str, _Template] = {}
        self._builders: dict[str, _Builder] = {}
        self._loaded_outputs: set[str] = set()
        self._luxon = False
        self._extensions = False
        self._zones: set[str] = set()
        self._data_size = 0
        self._dirty = False  # changed by expressions (found out while loading the helpers)
        self._configure()
        api["seal"](False)

    def _configure(self) -> None:
        self._api["configure"](_encoder.encode(self._env), json.dumps(self._node_names))

    def reusable(self) -> bool:
        """Whether this engine may serve another execution of its workflow version: not if
        a job its expressions queued (a promise's) is pending, nor if they changed what
        `intact` watches."""
        ctx = self._context
        if ctx is None or self._luxon or self._dirty:
            return False
        ctx.set_time_limit(self._time_limit)
        try:
            return not ctx.execute_pending_job() and bool(self._api["intact"]())
        except quickjs.JSException:
            return False
        finally:
            ctx.set_time_limit(-1)

    def restart(
        self,
        *,
        execution_id: str,
        variables: dict[str, Any] | None = None,
        mode: str = "manual",
        resume_url: str | None = None,
    ) -> None:
        """Serve the next execution (of the same workflow version): its `$execution` and
        `$vars`, no node outputs; compiled templates are kept."""
        assert self._context is not None, "ExpressionEngine is closed"
        execution: dict[str, Any] = {"id": execution_id, "mode": mode}
        if resume_url is not None:
            execution["resumeUrl"] = resume_url
        self._env = {**self._env, "vars": variables or {}, "execution": execution}
        self._context.set_time_limit(self._time_limit)
        try:
            self._configure()  # (drops the outputs in JS too)
        finally:
            self._context.set_time_limit(-1)
        self._outputs = {}
        self._loaded_outputs = set()
        self._data_size = 0

    def close(self) -> None:
        self._context = None
        self._api = {}
        self._templates = {}
        self._builders = {}
        self._outputs = {}
        self._loaded_outputs = set()

    # -- node outputs

    def set_node_output(self, node_name: str, items: list[Item], run_index: int = 0) -> None:
        """The main output of the node's latest run, for ``$node["Name"]`` and ``$("Name")``.

        Kept as is (nodes never change items they were given or gave out) and
        serialized only once an expression refers to the node: most outputs never are.
        """
        self._outputs[node_name] = items
        if node_name in self._loaded_outputs and self._context is not None:
            self._loaded_outputs.discard(node_name)
            self._api["forgetOutput"](node_name)

    def _load_outputs(self, names: frozenset[str] | None) -> None:
        wanted = self._outputs.keys() if names is None else names & self._outputs.keys()
        for name in wanted - self._loaded_outputs:
            text = _dump_items(self._outputs[name])
            self._data_size += len(text)
            self._set_output(name, text)
            self._loaded_outputs.add(name)

    # -- compiling

    def _ensure_extensions(self) -> None:
        if not self._extensions:
            assert self._context is not None
            # What expressions changed so far would pass for part of the helpers. (Only
            # the check: a promise job pending now is the reuse check's to refuse.)
            self._dirty = self._dirty or not self._api["intact"]()
            self._context.eval(_js_source("extensions.js"))
            if not self._dirty:
                self._api["seal"](True)
            self._extensions = True

    def _ensure_luxon(self, code: str) -> None:
        assert self._context is not None
        if not self._luxon:
            self._context.eval(_js_source("intl.js"))
            self._context.eval(_js_source("luxon.min.js"))
            self._add_zone(self._timezone)
            zone = json.dumps(self._timezone)
            self._context.eval(
                f"__kfIntl.setDefaultZone({zone}); luxon.Settings.defaultZone = {zone};"
                " luxon.Settings.defaultLocale = 'en-US';"
            )
            self._api["useLuxon"]()
            self._luxon = True
        for match in _QUOTED.finditer(code):
            self._add_zone(match[2])

    def _add_zone(self, name: str) -> None:
        if name in self._zones or name.upper() in ("UTC", "GMT"):
            return
        self._zones.add(name)
        if (table := _zone_table(name)) is not None:
            assert self._context is not None
            self._context.eval("__kfIntl.addZone")(name, table)

    def _template(self, source: str, node_name: str, path: str) -> _Template:
        if (found := self._templates.get(source)) is not None:
            return found
        parsed = _parse(source)
        code = "\n".join(seg.code for seg in parsed.segments)
        needs_luxon = bool(_LUXON_NAMES.search(code))
        if needs_luxon:
            self._ensure_luxon(code)
        if _EXTENSION_REF.search(code):
            self._ensure_extensions()
        fn_id = self._register(_template_js(parsed), parsed, source, node_name, path)
        template = _Template(
            source=source,
            fn_id=fn_id,
            positions=tuple(seg.position for seg in parsed.segments),
            needs_luxon=needs_luxon,
            needs_items=bool(_ITEM_NAMES.search(code)),
            node_refs=_node_refs(code),
        )
        self._templates[source] = template
        return template

    def _register(self, js: str, parsed: _Parsed, source: str, node_name: str, path: str) -> int:
        assert self._context is not None
        try:
            factory = self._context.eval(js)
        except quickjs.JSException as exc:
            raise self._syntax_error(parsed, source, node_name, path, exc) from None
        return int(self._register_fn(factory))

    def _syntax_error(
        self, parsed: _Parsed, source: str, node_name: str, path: str, exc: Exception
    ) -> ExpressionError:
        """Find the segment that does not parse, by compiling each one alone."""
        assert self._context is not None
        position, message = None, _first_line(exc)
        for seg in parsed.segments:
            try:
                self._context.eval(f"(function () {{ return (\n{seg.code}\n); }})")
            except quickjs.JSException as seg_exc:
                position, message = seg.position, _first_line(seg_exc)
                break
        return ExpressionError(
            message,
            node_name=node_name,
            parameter_path=path,
            item_index=None,
            expression=source,
            position=position,
        )

    def _builder(self, value: Any, node_name: str, path: str) -> _Builder:
        key = _encoder.encode(value)
        if (found := self._builders.get(key)) is not None:
            return found
        paths, sources = zip(*_walk(value, path), strict=True)
        templates = tuple(
            self._template(s, node_name, p) for s, p in zip(sources, paths, strict=True)
        )
        if isinstance(value, str):
            fn_id = templates[0].fn_id
        else:
            setup = ", ".join(
                f"__t{k} = __kf.factory({t.fn_id})(__r)" for k, t in enumerate(templates)
            )
            tree = _tree_js(value, iter(range(len(templates))))
            js = (
                f"(function (__r) {{ const __s = __r.state, {setup};\n"
                f"return function ($json, $binary, $itemIndex) {{ return {tree}; }}; }})"
            )
            assert self._context is not None
            fn_id = int(self._register_fn(self._context.eval(js)))
        builder = _Builder(fn_id=fn_id, templates=templates, paths=tuple(paths))
        self._builders[key] = builder
        return builder

    # -- evaluating

    def evaluate(
        self,
        value: Any,
        items: list[Item],
        *,
        node_name: str,
        parameter_path: str,
        run_index: int = 0,
    ) -> list[Any]:
        """One resolved copy of ``value`` per item (one for an empty item list)."""
        if not contains_expression(value):
            return [strip_marker(value)] * max(len(items), 1)
        if self._context is None:
            raise RuntimeError("ExpressionEngine is closed")
        builder = self._builder(value, node_name, parameter_path)
        refs: set[str] = set()
        for t in builder.templates:
            if t.node_refs is None:
                self._load_outputs(None)
                break
            refs |= t.node_refs
        else:
            self._load_outputs(frozenset(refs))
        full = any(t.needs_items for t in builder.templates)
        items = items or [{"json": {}}]
        payload = items if full else [item.get("json", {}) for item in items]
        text = _dump_items(payload)
        return self._call(builder, text, len(items), full, run_index, node_name)

    def evaluate_one(
        self,
        value: Any,
        items: list[Item],
        item_index: int,
        *,
        node_name: str,
        parameter_path: str,
    ) -> Any:
        """``value`` resolved for ``items[item_index]``, with ``$input.all()`` still all items."""
        if not contains_expression(value):
            return strip_marker(value)
        results = self.evaluate(value, items, node_name=node_name, parameter_path=parameter_path)
        return results[item_index]

    def _call(
        self, builder: _Builder, text: str, count: int, full: bool, run_index: int, node: str
    ) -> list[Any]:
        assert self._context is not None
        ctx = self._context
        ctx.set_memory_limit(
            self._memory_limit + _DATA_MEMORY_FACTOR * (len(text) + self._data_size)
        )
        # time_limit is per evaluate call of up to 100k items; larger calls get it per 100k.
        ctx.set_time_limit(self._time_limit * max(1.0, count / 100_000))
        try:
            result = self._run(builder.fn_id, text, full, run_index)
        except quickjs.JSException as exc:
            raise self._runtime_error(builder, node, exc) from None
        finally:
            if self._context is ctx:
                ctx.set_time_limit(-1)
        return orjson.loads(result)

    def _runtime_error(self, builder: _Builder, node: str, exc: Exception) -> ExpressionError:
        assert self._context is not None
        message = _first_line(exc)
        try:
            self._context.set_time_limit(-1)
            where = json.loads(self._api["where"]())
            if not message.startswith(_RESOURCE_ERRORS):
                message = where["error"] or message
            if message == "null":
                message = "InternalError: out of memory (null thrown)"
        except quickjs.JSException:
            where = None
        if (
            where is None
            or message.startswith(_RESOURCE_ERRORS)
            or isinstance(exc, quickjs.StackOverflow)
        ):
            # A runaway expression may have left garbage behind: start over.
            self._rebuild()
        if where is None:
            return ExpressionError(
                message,
                node_name=node,
                parameter_path=builder.paths[0],
                item_index=None,
                expression=builder.templates[0].source,
                position=None,
            )
        template = builder.templates[where["fn"]]
        return ExpressionError(
            _explain(message),
            node_name=node,
            parameter_path=builder.paths[where["fn"]],
            item_index=where["item"],
            expression=template.source,
            position=template.positions[where["seg"]],
        )

    def _rebuild(self) -> None:
        self._new_context()
        # Outputs already handed to the old context are re-sent on their next use.


def _first_line(exc: Exception) -> str:
    text = str(exc.args[0]) if exc.args else str(exc)
    return text.split("\n", 1)[0]


def _explain(message: str) -> str:
    if message == "InternalError: interrupted":
        return "InternalError: time limit exceeded"
    return message
