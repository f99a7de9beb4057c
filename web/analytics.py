"""The analytics page: the organization's finished executions and language-model tokens
over a range of UTC days (the last 7, 30 or 90, or two dates), for every workflow or one,
as server-rendered SVG charts (executions per day by outcome, failure rate, average and
longest duration, tokens per day) with totals, a breakdown grouped by workflow, trigger
mode, day, or day and workflow, and tokens by model.

One GraphQL document asks the router for all of it (``analytics`` and ``tokenUsage`` of
the AI subgraph, aliased). The numbers come from a rollup a worker cron keeps, so an
execution shows a few seconds after it finished. Changing the range, workflow or grouping
re-renders the results with HTMX; the form itself stays.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from markupsafe import Markup
from starlette.requests import Request
from starlette.responses import Response

from web import charts
from web.charts import Category, Series
from web.forms import ERROR_FIELDS, error_text
from web.graphql_client import JSON, GraphQLResponse
from web.session import Api
from web.templating import is_htmx
from web.viewer import load_viewer, render_page

PRESETS = {"7": 7, "30": 30, "90": 90}
CUSTOM = "custom"
DEFAULT_RANGE = "30"
# URL value -> (the API's groupBy, the heading of the breakdown).
GROUPINGS = {
    "workflow": ("WORKFLOW", "By workflow"),
    "mode": ("MODE", "By trigger"),
    "day": ("DAY", "By day"),
    "day_and_workflow": ("DAY_AND_WORKFLOW", "By day and workflow"),
}
DEFAULT_GROUP = "workflow"
WORKFLOW_OPTIONS = 100  # the filter offers the newest hundred workflows
MAX_ID_LENGTH = 64
# The day-and-workflow chart draws this many workflows; the others are summed as one.
CHART_WORKFLOWS = 6
OUTCOMES = (("succeeded", "Succeeded"), ("failed", "Failed"), ("cancelled", "Cancelled"))

STATS = (
    "executions succeeded failed cancelled failureRate avgDurationMs p50DurationMs "
    "p95DurationMs maxDurationMs"
)
ANALYTICS_FIELDS = f"""__typename
    ... on ExecutionAnalytics {{
      rows {{ day mode workflow {{ id name }} stats {{ {STATS} }} }}
      totals {{ {STATS} }}
    }}
    {ERROR_FIELDS}"""
TOKEN_FIELDS = f"""__typename
    ... on TokenUsageReport {{
      rows {{ day provider model inputTokens outputTokens totalTokens calls }}
      totals {{ inputTokens outputTokens totalTokens calls }}
    }}
    {ERROR_FIELDS}"""

QUERY = f"""\
query Analytics(
  $daily: AnalyticsInput!, $breakdown: AnalyticsInput!,
  $tokensDaily: TokenUsageInput!, $tokensByModel: TokenUsageInput!,
  $withWorkflows: Boolean!, $workflowOptions: Int!
) {{
  daily: analytics(input: $daily) {{ {ANALYTICS_FIELDS} }}
  breakdown: analytics(input: $breakdown) {{ {ANALYTICS_FIELDS} }}
  tokensDaily: tokenUsage(input: $tokensDaily) {{ {TOKEN_FIELDS} }}
  tokensByModel: tokenUsage(input: $tokensByModel) {{ {TOKEN_FIELDS} }}
  workflows(first: $workflowOptions) @include(if: $withWorkflows) {{
    edges {{ node {{ id name }} }}
  }}
}}
"""

WORKFLOWS_QUERY = """\
query AnalyticsWorkflows($first: Int!) { workflows(first: $first) { edges { node { id name } } } }
"""

ZERO: JSON = {
    "executions": 0,
    "succeeded": 0,
    "failed": 0,
    "cancelled": 0,
    "failureRate": None,
    "avgDurationMs": None,
    "p50DurationMs": None,
    "p95DurationMs": None,
    "maxDurationMs": None,
}
ZERO_TOKENS: JSON = {"inputTokens": 0, "outputTokens": 0, "totalTokens": 0, "calls": 0}


# -- what is asked --------------------------------------------------------------------


def today() -> date:
    return datetime.now(UTC).date()


@dataclass(frozen=True)
class Filters:
    """What the form asks for; ``problems`` (field -> why) when its dates are unusable."""

    range: str
    since: date | None
    until: date | None
    workflow_id: str
    group: str
    problems: dict[str, str] = field(default_factory=dict)

    @property
    def group_by(self) -> str:
        return GROUPINGS[self.group][0]

    @property
    def group_title(self) -> str:
        return GROUPINGS[self.group][1]

    def span(self) -> tuple[date, date]:
        """The first and last day (for filters without problems)."""
        if self.since is None or self.until is None:
            raise ValueError("the range has no days")
        return self.since, self.until


def _date(value: str) -> date | None:
    try:
        return date.fromisoformat(value.strip())
    except ValueError:
        return None


def read_filters(params: Mapping[str, str], now: date) -> Filters:
    """The filters of a query string; a preset range ends today (UTC). The API checks
    the order and length of a range: only dates that are no dates are refused here."""
    chosen = params.get("range", DEFAULT_RANGE)
    group = params.get("group", DEFAULT_GROUP)
    group = group if group in GROUPINGS else DEFAULT_GROUP
    workflow_id = params.get("workflow", "").strip()[:MAX_ID_LENGTH]
    if chosen != CUSTOM:
        chosen = chosen if chosen in PRESETS else DEFAULT_RANGE
        start = now - timedelta(days=PRESETS[chosen] - 1)
        return Filters(chosen, start, now, workflow_id, group)
    since, until = _date(params.get("from", "")), _date(params.get("to", ""))
    problems = {
        name: "Pick a day (YYYY-MM-DD)."
        for name, value in (("from", since), ("to", until))
        if value is None
    }
    return Filters(CUSTOM, since, until, workflow_id, group, problems)


def _variables(filters: Filters, with_workflows: bool) -> JSON:
    since, until = filters.span()
    scope: JSON = {
        "from": since.isoformat(),
        "to": until.isoformat(),
        "workflowId": filters.workflow_id or None,
    }
    return {
        "daily": {**scope, "groupBy": "DAY"},
        "breakdown": {**scope, "groupBy": filters.group_by},
        "tokensDaily": {**scope, "groupBy": "DAY"},
        "tokensByModel": {**scope, "groupBy": "MODEL"},
        "withWorkflows": with_workflows,
        "workflowOptions": WORKFLOW_OPTIONS,
    }


# -- numbers for people ---------------------------------------------------------------


def rate_text(value: float | None) -> str:
    return "—" if value is None else charts.percent(value)


def duration_text(value: float | None) -> str:
    return "—" if value is None else charts.duration(value)


def days_of(since: date, until: date) -> list[date]:
    return [since + timedelta(days=n) for n in range((until - since).days + 1)]


def day_label(day: date) -> str:
    return f"{day:%b} {day.day}"


def day_title(day: date) -> str:
    return f"{day:%a} {day.isoformat()}"


def _categories(days: Sequence[date]) -> list[Category]:
    return [Category(d.isoformat(), day_label(d), day_title(d)) for d in days]


def fill_days(
    rows: Iterable[Mapping[str, Any]], days: Sequence[date], key: str, zero: JSON
) -> list[JSON]:
    """``rows`` (each with a ``day``) laid over ``days``: a day without a row is zero."""
    by_day = {str(r.get("day")): r[key] for r in rows if isinstance(r.get(key), dict)}
    return [{**zero, **by_day.get(d.isoformat(), {})} for d in days]


def workflow_name(row: Mapping[str, Any]) -> str:
    workflow = row.get("workflow")
    if isinstance(workflow, dict) and workflow.get("name"):
        return str(workflow["name"])
    return "Unknown workflow"  # deleted, or its name could not be read


def _workflow_id(row: Mapping[str, Any]) -> str | None:
    workflow = row.get("workflow")
    return str(workflow["id"]) if isinstance(workflow, dict) and workflow.get("id") else None


# -- charts ---------------------------------------------------------------------------


def executions_chart(days: Sequence[date], stats: Sequence[JSON]) -> Markup:
    """Executions per day, stacked by outcome."""
    totals = {key: sum(int(s[key]) for s in stats) for key, _ in OUTCOMES}
    executions = sum(totals.values())
    summary = f"{executions:,} executions from {days[0]} to {days[-1]}" + (
        ": " + ", ".join(f"{totals[k]:,} {label.lower()}" for k, label in OUTCOMES) + "."
        if executions
        else "."
    )
    if executions:
        busiest = max(range(len(days)), key=lambda i: int(stats[i]["executions"]))
        summary += f" Busiest day {days[busiest]} with {stats[busiest]['executions']:,}."
    series = [Series(k, label, [s[k] for s in stats]) for k, label in OUTCOMES]
    return charts.stacked_bars(
        "chart-executions",
        "Executions per day",
        summary,
        _categories(days),
        series,
        x_title="Day (UTC)",
        y_title="Executions",
        unit="executions",
    )


def failure_rate_chart(days: Sequence[date], stats: Sequence[JSON]) -> Markup:
    rates = [s["failureRate"] for s in stats]
    known = [(days[i], r) for i, r in enumerate(rates) if r is not None]
    if known:
        worst_day, worst = max(known, key=lambda pair: pair[1])
        summary = (
            f"Share of executions that failed, on {len(known)} days with executions; "
            f"highest {charts.percent(worst)} on {worst_day}."
        )
    else:
        summary = "No executions in this range, so no failure rate."
    return charts.lines(
        "chart-failure-rate",
        "Failure rate per day",
        summary + " Days without executions leave a gap.",
        _categories(days),
        [Series("rate", "Failure rate", rates)],
        x_title="Day (UTC)",
        y_title="Failed",
        fmt=charts.percent,
        top=1.0,
    )


def duration_chart(days: Sequence[date], stats: Sequence[JSON]) -> Markup:
    averages = [s["avgDurationMs"] for s in stats]
    longest = [s["maxDurationMs"] for s in stats]
    known = [m for m in longest if m is not None]
    summary = (
        f"Average and longest execution time per day; the longest of the range took "
        f"{charts.duration(max(known))}."
        if known
        else "No executions in this range, so no durations."
    )
    return charts.lines(
        "chart-duration",
        "Duration per day",
        summary + " Days without executions leave a gap.",
        _categories(days),
        [Series("avg", "Average", averages), Series("max", "Longest", longest)],
        x_title="Day (UTC)",
        y_title="Duration",
        fmt=charts.duration,
    )


def tokens_chart(days: Sequence[date], tokens: Sequence[JSON]) -> Markup:
    total = sum(float(t["totalTokens"]) for t in tokens)
    calls = sum(float(t["calls"]) for t in tokens)
    summary = f"{charts.integer(total)} tokens in {charts.integer(calls)} language-model calls."
    return charts.stacked_bars(
        "chart-tokens",
        "Tokens per day",
        summary,
        _categories(days),
        [
            Series("input", "Input", [t["inputTokens"] for t in tokens]),
            Series("output", "Output", [t["outputTokens"] for t in tokens]),
        ],
        x_title="Day (UTC)",
        y_title="Tokens",
        unit="tokens",
        tick_fmt=charts.compact,
    )


def workflows_by_day_chart(days: Sequence[date], rows: Sequence[Mapping[str, Any]]) -> Markup:
    """Executions per day stacked by workflow: the busiest few, the others as one."""
    totals: dict[str, int] = {}
    names: dict[str, str] = {}
    for row in rows:
        key = _workflow_id(row) or ""
        totals[key] = totals.get(key, 0) + int(row["stats"]["executions"])
        names[key] = workflow_name(row)
    ranked = sorted(totals, key=lambda k: (-totals[k], names[k].lower()))
    shown = ranked if len(ranked) <= CHART_WORKFLOWS else ranked[: CHART_WORKFLOWS - 1]
    index = {d.isoformat(): i for i, d in enumerate(days)}
    values = {k: [0.0] * len(days) for k in [*shown, "other"]}
    for row in rows:
        key = _workflow_id(row) or ""
        i = index.get(str(row.get("day")))
        if i is not None:
            values[key if key in shown else "other"][i] += int(row["stats"]["executions"])
    series = [Series(f"w{n}", names[k], values[k]) for n, k in enumerate(shown)]
    if len(ranked) > len(shown):
        series.append(Series("other", f"{len(ranked) - len(shown)} more", values["other"]))
    summary = f"Executions per day of {len(ranked)} workflows" + (
        ", the busiest first in the legend." if ranked else "."
    )
    return charts.stacked_bars(
        "chart-workflows-by-day",
        "Executions per day by workflow",
        summary,
        _categories(days),
        series,
        x_title="Day (UTC)",
        y_title="Executions",
        unit="executions",
    )


# -- the breakdown table --------------------------------------------------------------


class _StatsText:
    """An ExecutionStats' failure rate and durations as the page shows them."""

    @property
    def figures(self) -> JSON:
        raise NotImplementedError

    @property
    def failure_rate(self) -> str:
        return rate_text(self.figures.get("failureRate"))

    @property
    def avg_duration(self) -> str:
        return duration_text(self.figures.get("avgDurationMs"))

    @property
    def p95_duration(self) -> str:
        return duration_text(self.figures.get("p95DurationMs"))

    @property
    def max_duration(self) -> str:
        return duration_text(self.figures.get("maxDurationMs"))


@dataclass(frozen=True)
class BreakdownRow(_StatsText):
    label: str
    stats: JSON
    bar: Markup
    workflow_id: str | None = None
    workflow_name: str | None = None
    day: str | None = None
    mode: str | None = None

    @property
    def figures(self) -> JSON:
        return self.stats


def _row_label(row: Mapping[str, Any], group_by: str) -> str:
    if group_by == "MODE":
        return str(row.get("mode") or "unknown")
    if group_by == "DAY":
        return str(row.get("day"))
    if group_by == "DAY_AND_WORKFLOW":
        return f"{row.get('day')} · {workflow_name(row)}"
    return workflow_name(row)


def _ordered(
    rows: Sequence[Mapping[str, Any]], group_by: str, days: Sequence[date]
) -> list[Mapping[str, Any]]:
    """By day every day of the range in order; otherwise most executions first (by day
    and workflow, day by day), ties by name."""
    if group_by == "DAY":
        filled = fill_days(rows, days, "stats", ZERO)
        return [{"day": d.isoformat(), "stats": s} for d, s in zip(days, filled, strict=True)]

    def order(r: Mapping[str, Any]) -> tuple[str, int, str]:
        day = str(r.get("day") or "") if group_by == "DAY_AND_WORKFLOW" else ""
        return (day, -int(r["stats"]["executions"]), _row_label(r, group_by).lower())

    return sorted(rows, key=order)


def breakdown_rows(
    rows: Sequence[Mapping[str, Any]], group_by: str, days: Sequence[date]
) -> list[BreakdownRow]:
    """The table's rows, each with a bar of its executions by outcome (the longest bar
    is the row with the most)."""
    ordered = _ordered(rows, group_by, days)
    most = max((int(r["stats"]["executions"]) for r in ordered), default=0)
    by_workflow = group_by in ("WORKFLOW", "DAY_AND_WORKFLOW")
    found = []
    for row in ordered:
        stats = {**ZERO, **row["stats"]}
        label = _row_label(row, group_by)
        parts = [(k, name.lower(), float(stats[k])) for k, name in OUTCOMES]
        found.append(
            BreakdownRow(
                label=label,
                stats=stats,
                bar=charts.row_bar(label, parts, most),
                workflow_id=_workflow_id(row) if by_workflow else None,
                workflow_name=workflow_name(row) if by_workflow else None,
                day=str(row["day"]) if row.get("day") else None,
                mode=str(row["mode"]) if row.get("mode") else None,
            )
        )
    return found


# -- the page -------------------------------------------------------------------------


@dataclass
class Results(_StatsText):
    """What the results partial shows."""

    filters: Filters
    error: str | None = None
    problems: dict[str, str] = field(default_factory=dict)
    totals: JSON = field(default_factory=lambda: dict(ZERO))
    tokens: JSON = field(default_factory=lambda: dict(ZERO_TOKENS))
    charts: list[Markup] = field(default_factory=list)
    breakdown_chart: Markup | None = None
    breakdown: list[BreakdownRow] = field(default_factory=list)
    tokens_chart: Markup | None = None
    models: list[JSON] = field(default_factory=list)

    @property
    def figures(self) -> JSON:
        return self.totals


FIELD_LABELS = {"from": "From", "to": "To", "workflowId": "Workflow", "groupBy": "Grouping"}


def _refusal(result: Mapping[str, Any]) -> tuple[str, dict[str, str]]:
    """A ValidationError told for the form: its problems by the form's field names."""
    problems = {
        str(f.get("path", "")).split(".")[-1]: str(f.get("message", ""))
        for f in result.get("fields") or []
        if isinstance(f, dict)
    }
    told = "; ".join(f"{FIELD_LABELS.get(k, k)}: {v}" for k, v in problems.items())
    return f"These dates were refused. {told or result.get('message', '')}".strip(), problems


def build_results(filters: Filters, response: GraphQLResponse) -> Results:
    data = response.data or {}
    daily, breakdown = data.get("daily"), data.get("breakdown")
    if not isinstance(daily, dict) or not isinstance(breakdown, dict):
        message = error_text(response) or "The analytics did not come back."
        return Results(filters, error=f"The analytics could not be read: {message}")
    for result in (daily, breakdown):
        if result.get("__typename") != "ExecutionAnalytics":
            message, problems = _refusal(result)
            return Results(filters, error=message, problems=problems)
    days = days_of(*filters.span())
    stats = fill_days(daily["rows"], days, "stats", ZERO)
    results = Results(
        filters,
        totals={**ZERO, **daily["totals"]},
        charts=[
            executions_chart(days, stats),
            failure_rate_chart(days, stats),
            duration_chart(days, stats),
        ],
        breakdown=breakdown_rows(breakdown["rows"], filters.group_by, days),
    )
    if filters.group_by == "DAY_AND_WORKFLOW":
        results.breakdown_chart = workflows_by_day_chart(days, breakdown["rows"])
    _add_tokens(results, data, days)
    return results


def _add_tokens(results: Results, data: JSON, days: Sequence[date]) -> None:
    daily, by_model = data.get("tokensDaily"), data.get("tokensByModel")
    if not isinstance(daily, dict) or daily.get("__typename") != "TokenUsageReport":
        return
    results.tokens = {**ZERO_TOKENS, **daily["totals"]}
    if float(results.tokens["calls"]) > 0:
        results.tokens_chart = tokens_chart(days, fill_days_flat(daily["rows"], days))
    if isinstance(by_model, dict) and by_model.get("__typename") == "TokenUsageReport":
        results.models = sorted(by_model["rows"], key=lambda r: -float(r["totalTokens"]))


def fill_days_flat(rows: Iterable[Mapping[str, Any]], days: Sequence[date]) -> list[JSON]:
    """Token rows (their numbers beside ``day``) laid over ``days``, zero where none."""
    by_day = {str(r.get("day")): r for r in rows}
    return [{**ZERO_TOKENS, **by_day.get(d.isoformat(), {})} for d in days]


def _workflow_options(data: JSON, selected: str) -> list[JSON]:
    found = (data.get("workflows") or {}).get("edges") or []
    options = [e["node"] for e in found if isinstance(e, dict) and isinstance(e.get("node"), dict)]
    options.sort(key=lambda w: str(w.get("name", "")).lower())
    if selected and all(o.get("id") != selected for o in options):
        options.append({"id": selected, "name": f"Workflow {selected}"})
    return options


async def analytics_page(request: Request) -> Response:
    """The page, or only its results for HTMX as the form changes."""
    htmx = is_htmx(request)
    viewer = None if htmx else await load_viewer(request, required=True)
    filters = read_filters(request.query_params, today())
    api = Api(request)
    data: JSON = {}
    if filters.problems:
        results = Results(filters, error="Pick both days of the range.", problems=filters.problems)
        if not htmx:
            response = await api.call(WORKFLOWS_QUERY, {"first": WORKFLOW_OPTIONS})
            data = response.data or {}
    else:
        response = await api.call(QUERY, _variables(filters, with_workflows=not htmx))
        data = response.data or {}
        results = build_results(filters, response)
    context: dict[str, Any] = {
        "nav": "ai",
        "filters": filters,
        "results": results,
        "presets": PRESETS,
        "groupings": GROUPINGS,
        "workflows": [] if htmx else _workflow_options(data, filters.workflow_id),
        # After a preset range, the form's days show what it covers (see the partial).
        "oob": htmx and filters.range != CUSTOM,
    }
    if viewer is not None:
        context["viewer"] = viewer
    return await render_page(
        request, "pages/analytics.html", context, fragment="partials/analytics_results.html"
    )
