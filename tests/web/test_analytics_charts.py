"""The analytics page's SVG charts, from rows shaped as the router answers them: bars as
tall as their numbers, days without executions drawn as zero, lines broken where a day
has no value, tooltips and labels that say the numbers, and names escaped everywhere."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from datetime import date
from typing import Any

import pytest
from markupsafe import Markup

from web import charts
from web.analytics import (
    ZERO,
    Filters,
    Results,
    breakdown_rows,
    build_results,
    read_filters,
    workflows_by_day_chart,
)
from web.graphql_client import GraphQLResponse

SVG = "{http://www.w3.org/2000/svg}"
MARCH_4, MARCH_6 = date(2024, 3, 4), date(2024, 3, 6)
EVIL = '<script>alert("x")</script> & Co'


def stats(succeeded: int = 0, failed: int = 0, cancelled: int = 0, **more: Any) -> dict[str, Any]:
    executions = succeeded + failed + cancelled
    rate = failed / executions if executions else None
    return {
        **ZERO,
        "executions": executions,
        "succeeded": succeeded,
        "failed": failed,
        "cancelled": cancelled,
        "failureRate": rate,
        **more,
    }


def analytics(rows: list[dict[str, Any]]) -> dict[str, Any]:
    totals = stats(
        sum(r["stats"]["succeeded"] for r in rows),
        sum(r["stats"]["failed"] for r in rows),
        sum(r["stats"]["cancelled"] for r in rows),
    )
    return {"__typename": "ExecutionAnalytics", "rows": rows, "totals": totals}


def day_row(day: date, **counts: Any) -> dict[str, Any]:
    return {"day": day.isoformat(), "mode": None, "workflow": None, "stats": stats(**counts)}


def workflow_row(workflow_id: str, name: str, day: date | None = None, **counts: Any) -> dict:
    return {
        "day": day.isoformat() if day else None,
        "mode": None,
        "workflow": {"id": workflow_id, "name": name},
        "stats": stats(**counts),
    }


NO_TOKENS = {
    "__typename": "TokenUsageReport",
    "rows": [],
    "totals": {"inputTokens": 0, "outputTokens": 0, "totalTokens": 0, "calls": 0},
}


def results(
    days: list[dict], by_group: list[dict], tokens: dict = NO_TOKENS, models: dict = NO_TOKENS
) -> Results:
    """What the page shows for March 4 to 6, given the router's rows."""
    filters = Filters("custom", MARCH_4, MARCH_6, "", "workflow")
    data = {
        "daily": analytics(days),
        "breakdown": analytics(by_group),
        "tokensDaily": tokens,
        "tokensByModel": models,
    }
    return build_results(filters, GraphQLResponse(data=data))


def svg_of(figure: Markup) -> ET.Element:
    """The chart's <svg>, parsed as XML: it must be well-formed whatever the names."""
    root = ET.fromstring(str(figure))
    found = root.find(f"{SVG}svg")
    assert found is not None
    return found


def groups(svg: ET.Element, kind: str) -> dict[str, ET.Element]:
    return {g.get("data-category", ""): g for g in svg.iter(f"{SVG}g") if g.get("class") == kind}


def segments(group: ET.Element) -> dict[str, ET.Element]:
    return {r.get("data-series", ""): r for r in group.iter(f"{SVG}rect") if r.get("data-series")}


def test_executions_are_stacked_bars_as_tall_as_their_counts_with_empty_days_as_zero() -> None:
    # March 5 has no row at all: it is drawn, as zero.
    shown = results([day_row(MARCH_4, succeeded=3, failed=2), day_row(MARCH_6, cancelled=1)], [])
    svg = svg_of(shown.charts[0])
    bars = groups(svg, "chart-bar")
    assert list(bars) == ["2024-03-04", "2024-03-05", "2024-03-06"]
    assert [b.get("data-total") for b in bars.values()] == ["5", "0", "1"]
    assert segments(bars["2024-03-05"]) == {}

    # The axis runs 0, 2, 4, 6: three of six is half the plot, two a third.
    ticks = [t.text for t in svg.iter(f"{SVG}text") if "chart-tick-y" in (t.get("class") or "")]
    assert ticks == ["0", "2", "4", "6"]
    first = segments(bars["2024-03-04"])
    assert set(first) == {"succeeded", "failed"}  # no cancelled segment of height 0
    bottom = charts.TOP + charts.PLOT_HEIGHT
    assert float(first["succeeded"].get("height", "")) == charts.PLOT_HEIGHT / 2
    assert float(first["succeeded"].get("y", "")) == bottom - charts.PLOT_HEIGHT / 2
    assert float(first["failed"].get("height", "")) == pytest.approx(charts.PLOT_HEIGHT / 3)
    # Failed sits on top of succeeded.
    top_of_succeeded = float(first["succeeded"].get("y", ""))
    failed = first["failed"]
    assert float(failed.get("y", "")) + float(failed.get("height", "")) == pytest.approx(
        top_of_succeeded
    )
    assert float(segments(bars["2024-03-06"])["cancelled"].get("height", "")) == pytest.approx(
        charts.PLOT_HEIGHT / 6
    )

    # Tooltips and labels say the numbers and the days.
    tooltip = bars["2024-03-04"].find(f"{SVG}title")
    assert tooltip is not None
    assert tooltip.text == "Mon 2024-03-04: 5 executions (Succeeded 3; Failed 2; Cancelled 0)"
    empty_tooltip = bars["2024-03-05"].find(f"{SVG}title")
    assert empty_tooltip is not None
    assert empty_tooltip.text == "Tue 2024-03-05: 0 executions (Succeeded 0; Failed 0; Cancelled 0)"
    labels = [t.text for t in svg.iter(f"{SVG}text") if "chart-tick-x" in (t.get("class") or "")]
    assert labels == ["Mar 4", "Mar 5", "Mar 6"]
    assert {t.text for t in svg.iter(f"{SVG}text")} >= {"Day (UTC)", "Executions"}
    title, desc = svg.find(f"{SVG}title"), svg.find(f"{SVG}desc")
    assert title is not None
    assert title.text == "Executions per day"
    assert desc is not None
    assert desc.text is not None
    assert desc.text.startswith("6 executions from 2024-03-04 to 2024-03-06: 3 succeeded")
    assert svg.get("aria-labelledby") == "chart-executions-title chart-executions-desc"


def test_failure_rate_is_a_line_with_a_gap_where_a_day_had_no_executions() -> None:
    shown = results([day_row(MARCH_4, succeeded=3, failed=2), day_row(MARCH_6, failed=1)], [])
    svg = svg_of(shown.charts[1])
    points = {c.get("data-category"): c for c in svg.iter(f"{SVG}circle")}
    assert list(points) == ["2024-03-04", "2024-03-06"]  # none for March 5
    assert points["2024-03-04"].get("data-value") == "0.4"
    bottom = charts.TOP + charts.PLOT_HEIGHT
    assert float(points["2024-03-04"].get("cy", "")) == pytest.approx(bottom - 0.4 * 180)
    assert float(points["2024-03-06"].get("cy", "")) == charts.TOP  # 100 %, the axis' top
    tip = points["2024-03-04"].find(f"{SVG}title")
    assert tip is not None
    assert tip.text == "Mon 2024-03-04: Failure rate 40%"
    # Two lone points: no line joins them across the empty day.
    assert [p for p in svg.iter(f"{SVG}path")] == []
    column = groups(svg, "chart-column")["2024-03-05"].find(f"{SVG}title")
    assert column is not None
    assert column.text == "Tue 2024-03-05: no executions"


def test_durations_draw_average_and_longest_in_readable_units() -> None:
    daily = [
        day_row(MARCH_4, succeeded=2, avgDurationMs=1500.0, maxDurationMs=2500.0),
        day_row(date(2024, 3, 5), succeeded=1, avgDurationMs=400.0, maxDurationMs=400.0),
    ]
    svg = svg_of(results(daily, []).charts[2])
    paths = {p.get("class"): p.get("d", "") for p in svg.iter(f"{SVG}path")}
    assert set(paths) == {"chart-line chart-series-avg", "chart-line chart-series-max"}
    assert all(d.count("M") == 1 and d.count("L") == 1 for d in paths.values())
    tips = [c.find(f"{SVG}title") for c in svg.iter(f"{SVG}circle")]
    assert "Mon 2024-03-04: Average 1.5 s" in [t.text for t in tips if t is not None]
    assert "Tue 2024-03-05: Longest 400 ms" in [t.text for t in tips if t is not None]


def test_the_workflow_table_is_sorted_by_executions_and_escapes_names() -> None:
    rows = [
        workflow_row("w1", "Quiet", succeeded=1),
        workflow_row("w2", EVIL, succeeded=2, failed=2, avgDurationMs=1234.0),
        workflow_row("w3", "Busy", succeeded=3),
    ]
    table = breakdown_rows(rows, "WORKFLOW", [MARCH_4])
    assert [r.label for r in table] == [EVIL, "Busy", "Quiet"]
    assert [r.failure_rate for r in table] == ["50%", "0%", "0%"]
    assert table[0].avg_duration == "1.2 s"
    bar = str(table[0].bar)
    assert "<script" not in bar
    assert "&lt;script&gt;" in bar
    svg = ET.fromstring(bar)
    title = svg.find(f"{SVG}title")
    assert title is not None
    assert title.text == f"{EVIL}: 4 (2 succeeded, 2 failed, 0 cancelled)"
    # The busiest row's bar is full width; the others are as long as their share.
    widths = [
        sum(float(r.get("width", "")) for r in ET.fromstring(str(row.bar)).iter(f"{SVG}rect"))
        for row in table
    ]
    assert widths == [charts.ROW_BAR_WIDTH, charts.ROW_BAR_WIDTH * 3 / 4, charts.ROW_BAR_WIDTH / 4]


def test_executions_by_day_and_workflow_stack_the_busiest_workflows() -> None:
    days = [MARCH_4, date(2024, 3, 5)]
    rows = [workflow_row(f"w{n}", f"Flow {n}", MARCH_4, succeeded=10 - n) for n in range(7)]
    rows.append(workflow_row("evil", EVIL, days[1], failed=20))
    figure = str(workflows_by_day_chart(days, rows))
    assert "<script" not in figure
    svg = svg_of(Markup(figure))
    bars = groups(svg, "chart-bar")
    # Five workflows by name, the three quietest summed as one.
    assert set(segments(bars["2024-03-04"])) == {"w1", "w2", "w3", "w4", "other"}
    assert segments(bars["2024-03-04"])["other"].get("data-value") == str(4 + 5 + 6)
    assert set(segments(bars["2024-03-05"])) == {"w0"}  # the busiest: the evil one
    legend = ET.fromstring(figure).find("ul")
    assert legend is not None
    names = ["".join(li.itertext()) for li in legend]
    assert names == [EVIL, "Flow 0", "Flow 1", "Flow 2", "Flow 3", "3 more"]


def test_tokens_per_day_stack_input_and_output_and_fill_the_range() -> None:
    daily = {
        "__typename": "TokenUsageReport",
        "rows": [{"day": "2024-03-05", "inputTokens": 1200.0, "outputTokens": 300.0}],
        "totals": {"inputTokens": 1200.0, "outputTokens": 300.0, "totalTokens": 1500.0, "calls": 3},
    }
    by_model = {
        "__typename": "TokenUsageReport",
        "rows": [
            {"provider": "openai", "model": "small", "totalTokens": 100.0},
            {"provider": "anthropic", "model": "large", "totalTokens": 1400.0},
        ],
        "totals": daily["totals"],
    }
    shown = results([], [], daily, by_model)
    assert shown.tokens_chart is not None
    svg = svg_of(shown.tokens_chart)
    bars = groups(svg, "chart-bar")
    assert [b.get("data-total") for b in bars.values()] == ["0", "1500", "0"]
    ticks = [t.text for t in svg.iter(f"{SVG}text") if "chart-tick-y" in (t.get("class") or "")]
    assert ticks == ["0", "500", "1k", "1.5k"]
    assert [m["model"] for m in shown.models] == ["large", "small"]


def test_no_token_chart_without_calls_and_a_refusal_is_told() -> None:
    assert results([], []).tokens_chart is None
    refused = {
        "__typename": "ValidationError",
        "message": "analytics refused: to: the range is at most 366 days",
        "fields": [{"path": "to", "message": "the range is at most 366 days"}],
    }
    filters = Filters("custom", date(2020, 1, 1), MARCH_6, "", "workflow")
    shown = build_results(filters, GraphQLResponse(data={"daily": refused, "breakdown": refused}))
    assert shown.error == "These dates were refused. To: the range is at most 366 days"
    assert shown.problems == {"to": "the range is at most 366 days"}
    assert shown.charts == []


@pytest.mark.parametrize(
    ("maximum", "whole", "ticks"),
    [
        (0, True, [0, 1]),
        (1, True, [0, 1]),
        (3, True, [0, 1, 2, 3]),
        (5, True, [0, 2, 4, 6]),
        (17, True, [0, 5, 10, 15, 20]),
        (0.42, False, [0, 0.2, 0.4, 0.6]),
        (1.0, False, [0, 0.25, 0.5, 0.75, 1.0]),
        (2600, False, [0, 1000, 2000, 3000]),
    ],
)
def test_axes_end_on_a_round_number_at_or_above_the_largest_value(
    maximum: float, whole: bool, ticks: list[float]
) -> None:
    scale = charts.nice_scale(maximum, whole=whole)
    assert scale.ticks == pytest.approx(ticks)
    assert scale.top == pytest.approx(ticks[-1])


def test_filters_read_from_the_query_string() -> None:
    today = date(2024, 3, 31)
    last_week = read_filters({"range": "7", "group": "mode", "workflow": "abc"}, today)
    assert (last_week.since, last_week.until) == (date(2024, 3, 25), today)
    assert (last_week.group_by, last_week.workflow_id) == ("MODE", "abc")
    assert read_filters({}, today).since == date(2024, 3, 2)  # 30 days by default
    assert read_filters({"range": "bogus", "group": "bogus"}, today).group_by == "WORKFLOW"
    custom = read_filters({"range": "custom", "from": "2024-01-01", "to": "2024-02-01"}, today)
    assert (custom.since, custom.until, custom.problems) == (
        date(2024, 1, 1),
        date(2024, 2, 1),
        {},
    )
    unreadable = read_filters({"range": "custom", "from": "yesterday", "to": ""}, today)
    assert set(unreadable.problems) == {"from", "to"}


def test_durations_and_rates_read_as_people_write_them() -> None:
    assert [charts.duration(v) for v in (12, 999, 1000, 1540, 61_000, 7_200_000)] == [
        "12 ms",
        "999 ms",
        "1 s",
        "1.5 s",
        "1 min",
        "2 h",
    ]
    assert [charts.percent(v) for v in (0, 0.4, 1 / 3, 1)] == ["0%", "40%", "33.3%", "100%"]
    assert [charts.compact(v) for v in (950, 1500, 12_000_000)] == ["950", "1.5k", "12M"]
