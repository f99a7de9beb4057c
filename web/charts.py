"""Charts as server-rendered SVG: stacked bars and lines over a row of categories (days),
and the small bar of a table row. No chart library and no script: the markup is built
here with every text escaped, so a template only inserts it.

Each chart is a ``<figure>`` holding an ``<svg role="img">`` named by its ``<title>`` and
summed up by its ``<desc>``, with labelled axes, a legend in HTML, and a tooltip per
category (a ``<title>`` in the group of its bars, or on each point of a line). Series are
coloured by CSS class (``chart-series-<key>``, see app.css), so the palette lives in one
place and the markup stays small.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from markupsafe import Markup, escape

WIDTH = 720
PLOT_HEIGHT = 180
LEFT = 64  # room for the y axis' ticks and title
RIGHT = 16
TOP = 12
BOTTOM = 48  # room for the x axis' ticks and title
HEIGHT = TOP + PLOT_HEIGHT + BOTTOM
PLOT_WIDTH = WIDTH - LEFT - RIGHT
BAR_SHARE = 0.7  # of its category's band
MAX_X_LABELS = 8
Y_TICKS = 4
ROW_BAR_WIDTH = 120
ROW_BAR_HEIGHT = 10

Format = Callable[[float], str]


def integer(value: float) -> str:
    return f"{round(value):,}"


def compact(value: float) -> str:
    """A short number for an axis: 950, 1.5k, 12M."""
    for size, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= size:
            return f"{value / size:.1f}".removesuffix(".0") + suffix
    return integer(value)


def percent(value: float) -> str:
    return f"{value * 100:.1f}%".replace(".0%", "%")


def duration(ms: float) -> str:
    """A duration in the unit a person reads best."""
    if ms < 1_000:
        return f"{ms:.0f} ms"
    if ms < 60_000:
        return f"{ms / 1_000:.1f} s".replace(".0 s", " s")
    if ms < 3_600_000:
        return f"{ms / 60_000:.1f} min".replace(".0 min", " min")
    return f"{ms / 3_600_000:.1f} h".replace(".0 h", " h")


@dataclass(frozen=True)
class Series:
    """One quantity over the categories; ``None`` where it has no value (a gap)."""

    key: str  # the CSS class suffix: chart-series-<key>
    name: str  # for the legend and tooltips
    values: Sequence[float | None]


@dataclass(frozen=True)
class Category:
    """A place on the x axis: ``key`` in data attributes, ``label`` under the axis (when
    there is room), ``title`` in tooltips."""

    key: str
    label: str
    title: str


@dataclass(frozen=True)
class Scale:
    top: float
    ticks: list[float]

    def y(self, value: float) -> float:
        """The SVG y of ``value`` (0 at the plot's bottom)."""
        return TOP + PLOT_HEIGHT - self.height(value)

    def height(self, value: float) -> float:
        return PLOT_HEIGHT * min(max(value, 0.0), self.top) / self.top


def nice_scale(maximum: float, *, whole: bool = False, count: int = Y_TICKS) -> Scale:
    """An axis from 0 to a round number at or above ``maximum``, with about ``count``
    ticks at steps of 1, 2, 2.5 or 5 times a power of ten (whole steps for counts)."""
    if maximum <= 0 or not math.isfinite(maximum):
        return Scale(1.0, [0.0, 1.0])
    raw = maximum / count
    magnitude = 10 ** math.floor(math.log10(raw))
    steps = (1, 2, 5, 10) if whole else (1, 2, 2.5, 5, 10)
    step = next(m * magnitude for m in steps if m * magnitude * count >= maximum)
    if whole:
        step = max(1.0, float(round(step)))
    n = math.ceil(maximum / step - 1e-9)
    return Scale(step * n, [step * i for i in range(n + 1)])


def _number(value: float) -> str:
    """A coordinate: two decimals at most, no trailing zeros."""
    text = f"{value:.2f}".rstrip("0").rstrip(".")
    return "0" if text == "-0" else text


def _value(value: float) -> str:
    """A value in a data attribute, as exact as it came."""
    return f"{value:.10g}"


def _band(index: int, count: int) -> tuple[float, float]:
    """The left edge and width of category ``index`` of ``count``."""
    width = PLOT_WIDTH / max(count, 1)
    return LEFT + index * width, width


def _x_labels(categories: Sequence[Category]) -> list[str]:
    every = max(1, math.ceil(len(categories) / MAX_X_LABELS))
    labels = []
    for i, category in enumerate(categories):
        if i % every:
            continue
        left, width = _band(i, len(categories))
        labels.append(
            f'<text class="chart-tick chart-tick-x" x="{_number(left + width / 2)}"'
            f' y="{TOP + PLOT_HEIGHT + 16}" text-anchor="middle">{escape(category.label)}</text>'
        )
    return labels


def _axes(scale: Scale, fmt: Format, x_title: str, y_title: str) -> list[str]:
    parts = []
    for tick in scale.ticks:
        y = _number(scale.y(tick))
        parts.append(
            f'<line class="chart-grid" x1="{LEFT}" x2="{LEFT + PLOT_WIDTH}" y1="{y}" y2="{y}"/>'
            f'<text class="chart-tick chart-tick-y" x="{LEFT - 6}" y="{y}" text-anchor="end"'
            f' dominant-baseline="middle">{escape(fmt(tick))}</text>'
        )
    bottom = TOP + PLOT_HEIGHT
    parts.append(
        f'<line class="chart-axis" x1="{LEFT}" x2="{LEFT + PLOT_WIDTH}" y1="{bottom}"'
        f' y2="{bottom}"/>'
        f'<text class="chart-axis-title" x="{LEFT + PLOT_WIDTH / 2:.0f}" y="{HEIGHT - 8}"'
        f' text-anchor="middle">{escape(x_title)}</text>'
        f'<text class="chart-axis-title" transform="translate(14 {TOP + PLOT_HEIGHT / 2:.0f})'
        f' rotate(-90)" text-anchor="middle">{escape(y_title)}</text>'
    )
    return parts


def _figure(
    chart_id: str, title: str, description: str, body: list[str], series: Sequence[Series]
) -> Markup:
    legend = "".join(
        f'<li><span class="chart-swatch chart-series-{escape(s.key)}" aria-hidden="true">'
        f"</span>{escape(s.name)}</li>"
        for s in series
    )
    ident = escape(chart_id)
    return Markup(
        f'<figure class="chart" id="{ident}" data-chart="{ident}">'
        f'<figcaption class="chart-caption">{escape(title)}</figcaption>'
        f'<svg class="chart-svg" xmlns="http://www.w3.org/2000/svg" role="img"'
        f' viewBox="0 0 {WIDTH} {HEIGHT}" aria-labelledby="{ident}-title {ident}-desc">'
        f'<title id="{ident}-title">{escape(title)}</title>'
        f'<desc id="{ident}-desc">{escape(description)}</desc>'
        f"{''.join(body)}</svg>"
        f'<ul class="chart-legend">{legend}</ul></figure>'
    )


def stacked_bars(
    chart_id: str,
    title: str,
    description: str,
    categories: Sequence[Category],
    series: Sequence[Series],
    *,
    x_title: str,
    y_title: str,
    unit: str,
    fmt: Format = integer,
    tick_fmt: Format | None = None,
    whole: bool = True,
) -> Markup:
    """A bar per category made of one segment per series, bottom to top in the order of
    ``series``; hovering a category's column tells its total and every part."""
    totals = [sum(s.values[i] or 0 for s in series) for i in range(len(categories))]
    scale = nice_scale(max(totals, default=0), whole=whole)
    body = _axes(scale, tick_fmt or fmt, x_title, y_title)
    for i, category in enumerate(categories):
        left, width = _band(i, len(categories))
        bar_left, bar_width = left + width * (1 - BAR_SHARE) / 2, width * BAR_SHARE
        parts = "; ".join(f"{s.name} {fmt(s.values[i] or 0)}" for s in series)
        tooltip = f"{category.title}: {fmt(totals[i])} {unit} ({parts})"
        segments, base = [], 0.0
        for s in series:
            value = s.values[i] or 0
            if value > 0:
                top = scale.y(base + value)
                segments.append(
                    f'<rect class="chart-series-{escape(s.key)}" data-series="{escape(s.key)}"'
                    f' data-value="{_value(value)}" x="{_number(bar_left)}" y="{_number(top)}"'
                    f' width="{_number(bar_width)}"'
                    f' height="{_number(scale.y(base) - top)}"/>'
                )
            base += value
        body.append(
            f'<g class="chart-bar" data-category="{escape(category.key)}"'
            f' data-total="{_value(totals[i])}"><title>{escape(tooltip)}</title>'
            f'<rect class="chart-hit" x="{_number(left)}" y="{TOP}" width="{_number(width)}"'
            f' height="{PLOT_HEIGHT}"/>{"".join(segments)}</g>'
        )
    body += _x_labels(categories)
    return _figure(chart_id, title, description, body, series)


def _line(scale: Scale, s: Series, count: int) -> str:
    """The series' polyline, broken where it has no value."""
    runs: list[list[str]] = [[]]
    for i, value in enumerate(s.values):
        if value is None:
            runs.append([])
            continue
        left, width = _band(i, count)
        runs[-1].append(f"{_number(left + width / 2)},{_number(scale.y(value))}")
    path = " ".join("M" + " L".join(run) for run in runs if len(run) > 1)
    if not path:
        return ""
    return f'<path class="chart-line chart-series-{escape(s.key)}" d="{path}"/>'


def lines(
    chart_id: str,
    title: str,
    description: str,
    categories: Sequence[Category],
    series: Sequence[Series],
    *,
    x_title: str,
    y_title: str,
    fmt: Format,
    top: float | None = None,
) -> Markup:
    """A line per series with a point per value; a category without a value leaves a
    gap. ``top`` fixes the axis' end (1 for rates), else it fits the values."""
    values = [v for s in series for v in s.values if v is not None]
    scale = nice_scale(top if top is not None else max(values, default=0))
    body = _axes(scale, fmt, x_title, y_title)
    count = len(categories)
    for i, category in enumerate(categories):
        left, width = _band(i, count)
        known = [f"{s.name} {fmt(v)}" for s in series if (v := s.values[i]) is not None]
        tooltip = f"{category.title}: {'; '.join(known) if known else 'no executions'}"
        body.append(
            f'<g class="chart-column" data-category="{escape(category.key)}">'
            f"<title>{escape(tooltip)}</title>"
            f'<rect class="chart-hit" x="{_number(left)}" y="{TOP}" width="{_number(width)}"'
            f' height="{PLOT_HEIGHT}"/></g>'
        )
    for s in series:
        body.append(_line(scale, s, count))
        for i, value in enumerate(s.values):
            if value is None:
                continue
            left, width = _band(i, count)
            category = categories[i]
            body.append(
                f'<circle class="chart-point chart-series-{escape(s.key)}"'
                f' data-series="{escape(s.key)}" data-category="{escape(category.key)}"'
                f' data-value="{_value(value)}" cx="{_number(left + width / 2)}"'
                f' cy="{_number(scale.y(value))}" r="3.5">'
                f"<title>{escape(f'{category.title}: {s.name} {fmt(value)}')}</title></circle>"
            )
    body += _x_labels(categories)
    return _figure(chart_id, title, description, body, series)


def row_bar(label: str, parts: Sequence[tuple[str, str, float]], maximum: float) -> Markup:
    """A small horizontal bar for a table row: ``parts`` are (key, name, value) side by
    side, the whole as long as its share of ``maximum``; its title tells the numbers."""
    total = sum(value for _, _, value in parts)
    told = ", ".join(f"{integer(value)} {name}" for _, name, value in parts)
    text = f"{label}: {integer(total)} ({told})" if parts else label
    body, left = [], 0.0
    for key, _, value in parts:
        width = ROW_BAR_WIDTH * value / maximum if maximum > 0 else 0.0
        if width > 0:
            body.append(
                f'<rect class="chart-series-{escape(key)}" data-series="{escape(key)}"'
                f' x="{_number(left)}" y="0" width="{_number(width)}" height="{ROW_BAR_HEIGHT}"/>'
            )
        left += width
    return Markup(
        f'<svg class="row-bar" xmlns="http://www.w3.org/2000/svg" role="img"'
        f' viewBox="0 0 {ROW_BAR_WIDTH} {ROW_BAR_HEIGHT}" width="{ROW_BAR_WIDTH}"'
        f' height="{ROW_BAR_HEIGHT}"><title>{escape(text)}</title>{"".join(body)}</svg>'
    )
