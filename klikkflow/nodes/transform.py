"""Value-transforming nodes: Date & Time (n8n v2) and Crypto (n8n v1).

Dates are aware datetimes in IANA zones (zoneinfo); outputs are Luxon-style ISO strings
(`2024-03-01T09:30:00.000+01:00`, `Z` for UTC) as n8n writes them. Formats use Luxon
tokens; the supported subset is listed on `LUXON_TOKENS` (unknown letters print as is).
"""

from __future__ import annotations

import base64
import binascii
import calendar
import hashlib
import hmac
import math
import re
import secrets
import uuid
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta, tzinfo
from email.utils import parsedate_to_datetime
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, field_validator

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
from klikkflow.nodes.conditions import parse_number, to_js_string

# ---------------------------------------------------------------- zones and parsing


def zone(name: str) -> tzinfo:
    if name.upper() in ("UTC", "GMT", "Z"):
        return UTC
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise NodeError(f"The timezone {name} is not valid. Please check the timezone.") from exc


_LOOSE_FORMATS = (
    "%B %d, %Y",
    "%b %d, %Y",
    "%B %d %Y",
    "%b %d %Y",
    "%d %B %Y",
    "%d %b %Y",
    "%m/%d/%Y",
    "%m/%d/%Y %H:%M",
    "%m/%d/%Y %H:%M:%S",
    "%Y/%m/%d",
    "%Y/%m/%d %H:%M:%S",
)


def parse_datetime(value: Any, zone_name: str = "UTC") -> datetime | None:
    """A date from ISO 8601, SQL, RFC 2822 / HTTP or a few common English forms (as n8n's
    tryToParseDateTime); naive values are read in `zone_name`. None when unparseable."""
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=zone(zone_name))
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day, tzinfo=zone(zone_name))
    if not isinstance(value, str) or not value.strip():
        return None
    text = value.strip()
    parsed = _parse_iso(text)
    if parsed is None:
        try:
            parsed = parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError):
            parsed = None
    for pattern in _LOOSE_FORMATS if parsed is None else ():
        try:
            parsed = datetime.strptime(text, pattern)
            break
        except ValueError:
            continue
    if parsed is None:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=zone(zone_name))


def _parse_iso(text: str) -> datetime | None:
    candidate = text[:-1] + "+00:00" if text.endswith(("Z", "z")) else text
    try:
        parsed = datetime.fromisoformat(candidate)
    except ValueError:
        return None
    if candidate is not text and parsed.utcoffset() == timedelta(0):
        parsed = parsed.replace(tzinfo=UTC)
    return parsed


def _timestamp(number: float) -> datetime:
    """n8n's rule: integers of fewer than 12 digits are seconds, longer ones milliseconds;
    fractions are seconds."""
    if isinstance(number, int) and len(str(abs(number))) >= 12:
        return datetime.fromtimestamp(number / 1000, UTC)
    return datetime.fromtimestamp(number, UTC)


# ---------------------------------------------------------------- Luxon formatting

_MONTHS = [calendar.month_name[m] for m in range(1, 13)]
_DAYS = [calendar.day_name[d] for d in range(7)]


def _offset(dt: datetime, style: str) -> str:
    delta = dt.utcoffset() or timedelta(0)
    minutes = int(delta.total_seconds() // 60)
    sign = "-" if minutes < 0 else "+"
    hours, rest = divmod(abs(minutes), 60)
    if style == "narrow":
        return f"{sign}{hours}" + (f":{rest:02d}" if rest else "")
    if style == "techie":
        return f"{sign}{hours:02d}{rest:02d}"
    return f"{sign}{hours:02d}:{rest:02d}"


def _zone_name(dt: datetime) -> str:
    tz = dt.tzinfo
    if isinstance(tz, ZoneInfo):
        return tz.key
    return "UTC" if dt.utcoffset() == timedelta(0) else _offset(dt, "short")


def _hour12(dt: datetime) -> int:
    return dt.hour % 12 or 12


_T = Callable[[datetime], str]
LUXON_TOKENS: dict[str, _T] = {
    "S": lambda d: str(d.microsecond // 1000),
    "SSS": lambda d: f"{d.microsecond // 1000:03d}",
    "u": lambda d: f"{d.microsecond // 1000:03d}",
    "s": lambda d: str(d.second),
    "ss": lambda d: f"{d.second:02d}",
    "m": lambda d: str(d.minute),
    "mm": lambda d: f"{d.minute:02d}",
    "h": lambda d: str(_hour12(d)),
    "hh": lambda d: f"{_hour12(d):02d}",
    "H": lambda d: str(d.hour),
    "HH": lambda d: f"{d.hour:02d}",
    "Z": lambda d: _offset(d, "narrow"),
    "ZZ": lambda d: _offset(d, "short"),
    "ZZZ": lambda d: _offset(d, "techie"),
    "ZZZZ": lambda d: d.tzname() or _offset(d, "short"),
    "z": _zone_name,
    "a": lambda d: "AM" if d.hour < 12 else "PM",
    "d": lambda d: str(d.day),
    "dd": lambda d: f"{d.day:02d}",
    "c": lambda d: str(d.isoweekday()),
    "E": lambda d: str(d.isoweekday()),
    "ccc": lambda d: _DAYS[d.weekday()][:3],
    "EEE": lambda d: _DAYS[d.weekday()][:3],
    "cccc": lambda d: _DAYS[d.weekday()],
    "EEEE": lambda d: _DAYS[d.weekday()],
    "ccccc": lambda d: _DAYS[d.weekday()][0],
    "EEEEE": lambda d: _DAYS[d.weekday()][0],
    "L": lambda d: str(d.month),
    "M": lambda d: str(d.month),
    "LL": lambda d: f"{d.month:02d}",
    "MM": lambda d: f"{d.month:02d}",
    "LLL": lambda d: _MONTHS[d.month - 1][:3],
    "MMM": lambda d: _MONTHS[d.month - 1][:3],
    "LLLL": lambda d: _MONTHS[d.month - 1],
    "MMMM": lambda d: _MONTHS[d.month - 1],
    "LLLLL": lambda d: _MONTHS[d.month - 1][0],
    "MMMMM": lambda d: _MONTHS[d.month - 1][0],
    "y": lambda d: str(d.year),
    "yy": lambda d: f"{d.year % 100:02d}",
    "yyyy": lambda d: f"{d.year:04d}",
    "yyyyyy": lambda d: f"{d.year:06d}",
    "G": lambda d: "AD",
    "GG": lambda d: "Anno Domini",
    "kk": lambda d: f"{d.isocalendar()[0] % 100:02d}",
    "kkkk": lambda d: f"{d.isocalendar()[0]:04d}",
    "W": lambda d: str(d.isocalendar()[1]),
    "WW": lambda d: f"{d.isocalendar()[1]:02d}",
    "o": lambda d: str(d.timetuple().tm_yday),
    "ooo": lambda d: f"{d.timetuple().tm_yday:03d}",
    "q": lambda d: str((d.month - 1) // 3 + 1),
    "qq": lambda d: f"{(d.month - 1) // 3 + 1:02d}",
    "X": lambda d: str(int(d.timestamp())),
    "x": lambda d: str(int(d.timestamp() * 1000)),
    # Localised macro tokens, en-US.
    "D": lambda d: format_luxon(d, "M/d/yyyy"),
    "DD": lambda d: format_luxon(d, "MMM d, yyyy"),
    "DDD": lambda d: format_luxon(d, "MMMM d, yyyy"),
    "DDDD": lambda d: format_luxon(d, "EEEE, MMMM d, yyyy"),
    "t": lambda d: format_luxon(d, "h:mm a"),
    "tt": lambda d: format_luxon(d, "h:mm:ss a"),
    "T": lambda d: format_luxon(d, "HH:mm"),
    "TT": lambda d: format_luxon(d, "HH:mm:ss"),
    "f": lambda d: format_luxon(d, "M/d/yyyy, h:mm a"),
    "ff": lambda d: format_luxon(d, "MMM d, yyyy, h:mm a"),
}


def _tokens(fmt: str) -> list[tuple[bool, str]]:
    """(is_token, text) runs: quoted text and non-letters are literal."""
    parts: list[tuple[bool, str]] = []
    i = 0
    while i < len(fmt):
        char = fmt[i]
        if char == "'":
            end = fmt.find("'", i + 1)
            end = len(fmt) if end < 0 else end
            parts.append((False, fmt[i + 1 : end] if end > i + 1 else "'"))
            i = end + 1
        elif char.isalpha():
            j = i
            while j < len(fmt) and fmt[j] == char:
                j += 1
            parts.append((True, fmt[i:j]))
            i = j
        else:
            parts.append((False, char))
            i += 1
    return parts


def format_luxon(dt: datetime, fmt: str) -> str:
    return "".join(
        LUXON_TOKENS[text](dt) if is_token and text in LUXON_TOKENS else text
        for is_token, text in _tokens(fmt)
    )


def to_iso(dt: datetime) -> str:
    """Luxon's toISO(): milliseconds always, `Z` for UTC, else the offset."""
    stamp = format_luxon(dt, "yyyy-MM-dd'T'HH:mm:ss.SSS")
    return stamp + ("Z" if dt.tzinfo is UTC else _offset(dt, "short"))


_PARSE_TOKENS: dict[str, str] = {
    "yyyy": r"(?P<year>\d{4})",
    "yy": r"(?P<year2>\d{2})",
    "y": r"(?P<year>\d{1,6})",
    "MM": r"(?P<month>\d{2})",
    "M": r"(?P<month>\d{1,2})",
    "LL": r"(?P<month>\d{2})",
    "L": r"(?P<month>\d{1,2})",
    "MMM": r"(?P<monthname>[A-Za-z]{3})",
    "MMMM": r"(?P<monthname>[A-Za-z]+)",
    "dd": r"(?P<day>\d{2})",
    "d": r"(?P<day>\d{1,2})",
    "HH": r"(?P<hour>\d{2})",
    "H": r"(?P<hour>\d{1,2})",
    "hh": r"(?P<hour12>\d{2})",
    "h": r"(?P<hour12>\d{1,2})",
    "mm": r"(?P<minute>\d{2})",
    "m": r"(?P<minute>\d{1,2})",
    "ss": r"(?P<second>\d{2})",
    "s": r"(?P<second>\d{1,2})",
    "SSS": r"(?P<ms>\d{3})",
    "S": r"(?P<ms>\d{1,3})",
    "a": r"(?P<ampm>[AaPp][Mm])",
    "EEE": r"[A-Za-z]{3}",
    "EEEE": r"[A-Za-z]+",
    "X": r"(?P<unix>-?\d+)",
    "x": r"(?P<unixms>-?\d+)",
    "Z": r"(?P<offset>[+-]\d{1,2}(?::?\d{2})?|Z)",
    "ZZ": r"(?P<offset>[+-]\d{2}:\d{2}|Z)",
    "ZZZ": r"(?P<offset>[+-]\d{4}|Z)",
}


def parse_luxon(text: str, fmt: str, zone_name: str) -> datetime | None:
    """Read `text` written in the Luxon format `fmt` (DateTime.fromFormat, common tokens)."""
    pattern = "".join(
        _PARSE_TOKENS.get(part, re.escape(part)) if is_token else re.escape(part)
        for is_token, part in _tokens(fmt)
    )
    try:
        match = re.fullmatch(pattern, text.strip())
    except re.error:  # a token used twice
        return None
    if match is None:
        return None
    found = {k: v for k, v in match.groupdict().items() if v is not None}
    if "unix" in found or "unixms" in found:
        seconds = int(found["unix"]) if "unix" in found else int(found["unixms"]) / 1000
        return datetime.fromtimestamp(seconds, UTC)
    return _from_fields(found, zone_name)


def _from_fields(found: dict[str, str], zone_name: str) -> datetime | None:
    year = int(found["year"]) if "year" in found else None
    if year is None and "year2" in found:
        year = 2000 + int(found["year2"])
    month = int(found.get("month", 0)) or None
    if "monthname" in found:
        names = [m.lower() for m in _MONTHS]
        name = found["monthname"].lower()
        month = next((i + 1 for i, m in enumerate(names) if m.startswith(name)), None)
    hour = int(found.get("hour", 0))
    if "hour12" in found:
        hour = int(found["hour12"]) % 12 + (12 if found.get("ampm", "").lower() == "pm" else 0)
    try:
        parsed = datetime(
            year or datetime.now(UTC).year,
            month or 1,
            int(found.get("day", 1)),
            hour,
            int(found.get("minute", 0)),
            int(found.get("second", 0)),
            int(found.get("ms", "0").ljust(3, "0")) * 1000,
        )
    except ValueError:
        return None
    offset = found.get("offset")
    if offset:
        return _parse_iso(parsed.isoformat() + ("+00:00" if offset == "Z" else _colon(offset)))
    return parsed.replace(tzinfo=zone(zone_name))


def _colon(offset: str) -> str:
    digits = offset[1:].replace(":", "")
    digits = digits.zfill(2) if len(digits) <= 2 else digits.zfill(4)
    return f"{offset[0]}{digits[:2]}:{digits[2:4] or '00'}"


# ---------------------------------------------------------------- calendar arithmetic

_FIXED_MS = {"hour": 3_600_000, "minute": 60_000, "second": 1000, "millisecond": 1}
_ORDER = ["year", "quarter", "month", "week", "day", "hour", "minute", "second", "millisecond"]


def _localize(dt: datetime) -> datetime:
    """Resolve a wall time that a calendar step produced (fold/gap) in its own zone."""
    return dt.astimezone(UTC).astimezone(dt.tzinfo)


def add_months(dt: datetime, months: int) -> datetime:
    index = dt.year * 12 + dt.month - 1 + months
    year, month = divmod(index, 12)
    day = min(dt.day, calendar.monthrange(year, month + 1)[1])
    return _localize(dt.replace(year=year, month=month + 1, day=day))


def shift(dt: datetime, unit: str, amount: float) -> datetime:
    """Luxon's plus(): calendar units move the wall clock, time units move the instant."""
    unit = unit.removesuffix("s")
    if unit in ("year", "quarter", "month"):
        months = {"year": 12, "quarter": 3, "month": 1}[unit] * amount
        if not float(months).is_integer():
            raise NodeError(f"Cannot add a fraction of a {unit}")
        return add_months(dt, int(months))
    if unit in ("week", "day"):
        return _localize(dt + timedelta(days=amount * (7 if unit == "week" else 1)))
    moved = dt.astimezone(UTC) + timedelta(milliseconds=amount * _FIXED_MS[unit])
    return moved.astimezone(dt.tzinfo)


def start_of(dt: datetime, unit: str) -> datetime:
    if unit == "week":
        dt = dt - timedelta(days=dt.weekday())
    if unit == "year":
        dt = dt.replace(month=1, day=1)
    elif unit == "quarter":
        dt = dt.replace(month=3 * ((dt.month - 1) // 3) + 1, day=1)
    elif unit == "month":
        dt = dt.replace(day=1)
    if unit in ("second",):
        dt = dt.replace(microsecond=0)
    elif unit == "minute":
        dt = dt.replace(second=0, microsecond=0)
    elif unit == "hour":
        dt = dt.replace(minute=0, second=0, microsecond=0)
    else:
        dt = dt.replace(hour=0, minute=0, second=0, microsecond=0)
    return _localize(dt)


def diff(start: datetime, end: datetime, units: list[str]) -> dict[str, int | float]:
    """Luxon's end.diff(start, units).toObject(): whole calendar units first, the smallest
    requested unit takes the fraction."""
    wanted = sorted(set(units), key=_ORDER.index)
    if not wanted:
        return {}
    sign = 1
    if end < start:
        start, end, sign = end, start, -1
    result: dict[str, int | float] = {}
    cursor = start
    for unit in (u for u in wanted if u not in _FIXED_MS):
        count = _whole_steps(cursor, end, unit)
        result[unit + "s"] = count
        cursor = shift(cursor, unit, count)
    remaining: float = (end - cursor) / timedelta(milliseconds=1)
    smallest = wanted[-1]
    for unit in (u for u in wanted if u in _FIXED_MS):
        whole = remaining // _FIXED_MS[unit]
        result[unit + "s"] = whole
        remaining -= whole * _FIXED_MS[unit]
    if smallest in _FIXED_MS:
        result[smallest + "s"] += remaining / _FIXED_MS[smallest]
    elif remaining:
        step = (shift(cursor, smallest, 1) - cursor) / timedelta(milliseconds=1)
        result[smallest + "s"] += remaining / step
    return {k: _number(sign * v) for k, v in result.items()}


def _whole_steps(cursor: datetime, end: datetime, unit: str) -> int:
    if unit in ("year", "quarter", "month"):
        per = {"year": 12, "quarter": 3, "month": 1}[unit]
        months = (end.year - cursor.year) * 12 + end.month - cursor.month
        count = months // per
    else:
        days = (end.astimezone(cursor.tzinfo).date() - cursor.date()).days
        count = days // 7 if unit == "week" else days
    while count > 0 and shift(cursor, unit, count) > end:
        count -= 1
    return max(count, 0)


def _number(value: float) -> int | float:
    return int(value) if float(value).is_integer() else value


def iso_duration(parts: dict[str, int | float]) -> str:
    """Luxon's Duration.toISO()."""
    get = parts.get
    text = "P"
    for key, letter in (("years", "Y"), ("months", "M"), ("weeks", "W"), ("days", "D")):
        value = get(key, 0) + (3 * get("quarters", 0) if key == "months" else 0)
        if value:
            text += f"{_number(value)}{letter}"
    seconds = get("seconds", 0) + get("milliseconds", 0) / 1000
    if get("hours", 0) or get("minutes", 0) or seconds:
        text += "T"
        for key, letter in (("hours", "H"), ("minutes", "M")):
            if get(key, 0):
                text += f"{_number(get(key, 0))}{letter}"
        if seconds:
            text += f"{_number(round(seconds, 3))}S"
    return text if text != "P" else "PT0S"


# ---------------------------------------------------------------- Date & Time


class DateTimeOptions(Parameters):
    include_input_fields: bool = Field(False, alias="includeInputFields")
    # getCurrentDate: a zone name; formatDate: true to use the workflow's zone.
    timezone: str | bool | None = None
    from_format: str = Field("", alias="fromFormat")
    iso_string: bool = Field(False, alias="isoString")


TimeUnit = Literal[
    "years", "quarters", "months", "weeks", "days", "hours", "minutes", "seconds", "milliseconds"
]
CalendarUnit = Literal["year", "quarter", "month", "week", "day", "hour", "minute", "second"]
DiffUnit = Literal["year", "month", "week", "day", "hour", "minute", "second", "millisecond"]

_DEFAULT_OUTPUT = {
    "getCurrentDate": "currentDate",
    "addToDate": "newDate",
    "subtractFromDate": "newDate",
    "formatDate": "formattedDate",
    "roundDate": "roundedDate",
    "getTimeBetweenDates": "timeDifference",
    "extractDate": "datePart",
}


class DateTimeParams(Parameters):
    operation: Literal[
        "getCurrentDate",
        "addToDate",
        "subtractFromDate",
        "formatDate",
        "roundDate",
        "getTimeBetweenDates",
        "extractDate",
    ] = "getCurrentDate"
    notice: str = ""  # an editor hint n8n may store
    include_time: bool = Field(True, alias="includeTime")
    output_field_name: Any = Field(None, alias="outputFieldName")
    magnitude: Any = ""  # add / subtract: the date to change
    time_unit: TimeUnit = Field("days", alias="timeUnit")
    duration: Any = 0
    date: Any = ""
    format: str = "MM/dd/yyyy"  # a preset Luxon format or "custom"
    custom_format: Any = Field("", alias="customFormat")
    mode: Literal["roundDown", "roundUp"] = "roundDown"
    to_nearest: CalendarUnit = Field("month", alias="toNearest")
    to: CalendarUnit = "month"
    start_date: Any = Field("", alias="startDate")
    end_date: Any = Field("", alias="endDate")
    units: list[DiffUnit] = Field(default_factory=lambda: ["day"])  # type: ignore[arg-type]
    part: Literal["year", "quarter", "month", "week", "day", "hour", "minute", "second"] = "month"
    options: DateTimeOptions = Field(default_factory=DateTimeOptions)  # type: ignore[arg-type]


def node_date(value: Any, zone_name: str | None, index: int, from_format: str = "") -> datetime:
    """n8n's parseDate for the Date & Time node: timestamps, text (optionally in a given
    format) or dates, in `zone_name` (else kept in the value's own offset, UTC if none)."""
    target = zone_name or "UTC"
    parsed: datetime | None = None
    number = parse_number(value) if isinstance(value, str | int | float) and value != "" else None
    if isinstance(value, bool):
        number = None
    if number is not None and not (isinstance(number, float) and math.isinf(number)):
        parsed = _timestamp(number)
    elif isinstance(value, str) and from_format:
        parsed = parse_luxon(value, from_format, target)
    else:
        parsed = parse_datetime(value, target)
    if parsed is None:
        raise NodeError(
            f"Invalid date format: '{to_js_string(value)}' [item {index}]", item_index=index
        )
    return parsed.astimezone(zone(zone_name)) if zone_name else parsed


class DateAndTime(NodeType):
    type = "dateTime"
    pure = True
    version = 2
    display_name = "Date & Time"
    description = "Get, shift, format, round, compare or take apart dates."
    category = "transform"
    Params = DateTimeParams

    async def run(self, ctx: NodeContext, params: Parameters, inputs: Inputs) -> Outputs:
        assert isinstance(params, DateTimeParams)
        items = inputs.get(MAIN, [])
        operation = getattr(self, f"_{params.operation}")
        values: list[Any] = operation(ctx, params, items)
        names = ctx.evaluate(
            params.output_field_name or _DEFAULT_OUTPUT[params.operation],
            items,
            path="outputFieldName",
        )
        out = []
        for index, source in enumerate(items):
            json_out = dict(source["json"]) if params.options.include_input_fields else {}
            value = values[index]
            json_out[to_js_string(names[index])] = (
                to_iso(value) if isinstance(value, datetime) else value
            )
            out.append({"json": json_out, "pairedItem": {"item": index}})
        return {MAIN: out}

    def _getCurrentDate(
        self, ctx: NodeContext, params: DateTimeParams, items: list[Item]
    ) -> list[Any]:
        name = params.options.timezone if isinstance(params.options.timezone, str) else ""
        now = ctx.now().astimezone(zone(name or ctx.timezone))
        if not params.include_time:
            now = start_of(now, "day")
        return [now] * len(items)

    def _dates(
        self, ctx: NodeContext, value: Any, items: list[Item], path: str, zone_name: str | None
    ) -> list[datetime]:
        raw = ctx.evaluate(value, items, path=path)
        return [node_date(v, zone_name, i) for i, v in enumerate(raw[: len(items)])]

    def _shifted(
        self, ctx: NodeContext, params: DateTimeParams, items: list[Item], sign: int
    ) -> list[Any]:
        dates = self._dates(ctx, params.magnitude, items, "magnitude", ctx.timezone)
        amounts = ctx.evaluate(params.duration, items, path="duration")
        shifted = []
        for index, (dt, amount) in enumerate(zip(dates, amounts, strict=False)):
            number = parse_number(amount)
            if number is None:
                raise NodeError(
                    f"'duration' expects a number but we got '{to_js_string(amount)}' "
                    f"[item {index}]",
                    item_index=index,
                )
            shifted.append(shift(dt, params.time_unit, sign * number))
        return shifted

    def _addToDate(self, ctx: NodeContext, params: DateTimeParams, items: list[Item]) -> list[Any]:
        return self._shifted(ctx, params, items, 1)

    def _subtractFromDate(
        self, ctx: NodeContext, params: DateTimeParams, items: list[Item]
    ) -> list[Any]:
        return self._shifted(ctx, params, items, -1)

    def _formatDate(self, ctx: NodeContext, params: DateTimeParams, items: list[Item]) -> list[Any]:
        # n8n formats in the date's own offset unless "Use Workflow Timezone" is on.
        chosen = params.options.timezone
        zone_name = ctx.timezone if chosen is True else None
        if isinstance(chosen, str) and chosen:
            zone_name = chosen
        raw = ctx.evaluate(params.date, items, path="date")
        dates = [node_date(v, zone_name, i, params.options.from_format) for i, v in enumerate(raw)]
        formats = (
            ctx.evaluate(params.custom_format, items, path="customFormat")
            if params.format == "custom"
            else [params.format] * len(items)
        )
        return [format_luxon(dt, to_js_string(f)) for dt, f in zip(dates, formats, strict=False)]

    def _roundDate(self, ctx: NodeContext, params: DateTimeParams, items: list[Item]) -> list[Any]:
        dates = self._dates(ctx, params.date, items, "date", ctx.timezone)
        if params.mode == "roundDown":
            return [start_of(dt, params.to_nearest) for dt in dates]
        return [start_of(shift(dt, params.to, 1), params.to) for dt in dates]

    def _getTimeBetweenDates(
        self, ctx: NodeContext, params: DateTimeParams, items: list[Item]
    ) -> list[Any]:
        starts = self._dates(ctx, params.start_date, items, "startDate", ctx.timezone)
        ends = self._dates(ctx, params.end_date, items, "endDate", ctx.timezone)
        parts = [diff(s, e, list(params.units)) for s, e in zip(starts, ends, strict=True)]
        return [iso_duration(p) for p in parts] if params.options.iso_string else parts

    def _extractDate(
        self, ctx: NodeContext, params: DateTimeParams, items: list[Item]
    ) -> list[Any]:
        dates = self._dates(ctx, params.date, items, "date", ctx.timezone)
        part = params.part
        if part == "week":
            return [dt.isocalendar()[1] for dt in dates]
        if part == "quarter":
            return [(dt.month - 1) // 3 + 1 for dt in dates]
        return [getattr(dt, part) for dt in dates]


# ---------------------------------------------------------------- Crypto

HashType = Literal["MD5", "SHA1", "SHA256", "SHA384", "SHA512", "SHA3-256", "SHA3-384", "SHA3-512"]
_HASHES = {
    "MD5": "md5",
    "SHA1": "sha1",
    "SHA256": "sha256",
    "SHA384": "sha384",
    "SHA512": "sha512",
    "SHA3-256": "sha3_256",
    "SHA3-384": "sha3_384",
    "SHA3-512": "sha3_512",
}


class CryptoParams(Parameters):
    # n8n's "sign" action (private-key signatures) is not supported.
    action: Literal["hash", "hmac", "generate"] = "hash"
    type: HashType = "MD5"
    value: Any = ""
    data_property_name: Any = Field("data", alias="dataPropertyName")
    encoding: Literal["hex", "base64"] = "hex"
    secret: Any = ""
    binary_data: bool = Field(False, alias="binaryData")
    binary_property_name: str = Field("data", alias="binaryPropertyName")
    encoding_type: Literal["ascii", "base64", "hex", "uuid"] = Field("uuid", alias="encodingType")
    string_length: int = Field(32, alias="stringLength", ge=1, le=1_000_000)

    @field_validator("type", mode="before")
    @classmethod
    def _upper(cls, value: Any) -> Any:
        return value.upper().replace("_", "-") if isinstance(value, str) else value


def _bytes(value: Any) -> bytes:
    return (value if isinstance(value, str) else to_js_string(value)).encode()


def random_text(encoding: str, length: int) -> str:
    """Node's randomBytes(length).toString(encoding), cut to length (n8n's generate)."""
    raw = secrets.token_bytes(length)
    if encoding == "hex":
        return raw.hex()[:length]
    if encoding == "base64":
        return re.sub(r"\W", "", base64.b64encode(raw).decode())[:length]
    return "".join(chr(b & 0x7F) for b in raw)[:length]


class Crypto(NodeType):
    type = "crypto"
    pure = True
    version = 1
    display_name = "Crypto"
    description = "Hash or HMAC a value, or generate random strings and UUIDs."
    category = "transform"
    Params = CryptoParams

    async def run(self, ctx: NodeContext, params: Parameters, inputs: Inputs) -> Outputs:
        assert isinstance(params, CryptoParams)
        items = inputs.get(MAIN, [])
        names = ctx.evaluate(params.data_property_name, items, path="dataPropertyName")
        results = self._values(ctx, params, items)
        out = []
        for index, source in enumerate(items):
            made: Item = {
                "json": {**source["json"], to_js_string(names[index]): results[index]},
                "pairedItem": {"item": index},
            }
            if "binary" in source and not (params.binary_data and params.action != "generate"):
                made["binary"] = source["binary"]
            out.append(made)
        return {MAIN: out}

    def _values(self, ctx: NodeContext, params: CryptoParams, items: list[Item]) -> list[str]:
        if params.action == "generate":
            if params.encoding_type == "uuid":
                return [str(uuid.uuid4()) for _ in items]
            return [random_text(params.encoding_type, params.string_length) for _ in items]
        if params.binary_data:
            data = [
                _binary(source, params.binary_property_name, i) for i, source in enumerate(items)
            ]
        else:
            data = [_bytes(v) for v in ctx.evaluate(params.value, items, path="value")]
        algorithm = _HASHES[params.type]
        if params.action == "hmac":
            secrets_ = ctx.evaluate(params.secret, items, path="secret")
            digests = [
                hmac.new(_bytes(key), message, algorithm).digest()
                for key, message in zip(secrets_, data, strict=False)
            ]
        else:
            digests = [hashlib.new(algorithm, message).digest() for message in data]
        if params.encoding == "hex":
            return [d.hex() for d in digests]
        return [base64.b64encode(d).decode() for d in digests]


def _binary(source: Item, name: str, index: int) -> bytes:
    entry = (source.get("binary") or {}).get(name)
    if not isinstance(entry, dict) or not isinstance(entry.get("data"), str):
        raise NodeError(
            f"This operation expects the node's input data to contain a binary file '{name}', "
            f"but none was found [item {index}]",
            item_index=index,
        )
    try:
        return base64.b64decode(entry["data"], validate=True)
    except (binascii.Error, ValueError) as exc:
        raise NodeError(f"Binary property '{name}' is not base64 [item {index}]") from exc


TRANSFORM_NODES: list[type[NodeType]] = [DateAndTime, Crypto]
