"""Date & Time (v2) and Crypto (v1) with n8n's parameter JSON."""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import uuid
from typing import Any

import pytest
from pydantic import ValidationError

from klikkflow.nodes.base import NodeError
from klikkflow.nodes.transform import Crypto, DateAndTime, format_luxon, parse_datetime
from tests.klikkflow.nodes.helpers import items, jsons, run_node

EVENTS = items(
    {"id": 1, "at": "2024-01-31T09:15:00Z"},
    {"id": 2, "at": "2024-03-30T23:30:00+01:00"},
)


async def date_node(
    parameters: dict[str, Any], data: list[Any] = EVENTS, **options: Any
) -> list[Any]:
    out = await run_node(DateAndTime, parameters, data, **options)
    return jsons(out["main"])


async def test_current_date_in_the_workflow_zone() -> None:
    found = await date_node(
        {"operation": "getCurrentDate", "options": {}}, EVENTS[:1], timezone="Europe/Oslo"
    )
    assert found == [{"currentDate": "2024-03-15T15:30:45.123+01:00"}]
    day = await date_node(
        {
            "includeTime": False,
            "outputFieldName": "today",
            "options": {"timezone": "America/New_York", "includeInputFields": True},
        },
        EVENTS[:1],
    )
    assert day == [
        {"id": 1, "at": "2024-01-31T09:15:00Z", "today": "2024-03-15T00:00:00.000-04:00"}
    ]


async def test_current_date_refuses_an_unknown_zone() -> None:
    with pytest.raises(NodeError, match="The timezone Mars/Base is not valid"):
        await date_node({"operation": "getCurrentDate", "options": {"timezone": "Mars/Base"}})


async def test_add_months_clamps_to_month_end() -> None:
    params = {
        "operation": "addToDate",
        "magnitude": "={{ $json.at }}",
        "timeUnit": "months",
        "duration": 1,
        "options": {},
    }
    found = await date_node(params, EVENTS[:1])
    assert found == [{"newDate": "2024-02-29T09:15:00.000Z"}]


async def test_add_days_keeps_wall_time_across_dst_and_hours_do_not() -> None:
    base = {"operation": "addToDate", "magnitude": "={{ $json.at }}", "duration": 1, "options": {}}
    days = await date_node({**base, "timeUnit": "days"}, EVENTS[1:], timezone="Europe/Oslo")
    assert days == [{"newDate": "2024-03-31T23:30:00.000+02:00"}]
    hours = await date_node(
        {**base, "timeUnit": "hours", "duration": 24}, EVENTS[1:], timezone="Europe/Oslo"
    )
    assert hours == [{"newDate": "2024-04-01T00:30:00.000+02:00"}]


async def test_subtract_from_date_with_an_expression_duration() -> None:
    params = {
        "operation": "subtractFromDate",
        "magnitude": "={{ $json.at }}",
        "timeUnit": "minutes",
        "duration": "={{ $json.id * 15 }}",
        "outputFieldName": "reminder",
        "options": {"includeInputFields": True},
    }
    found = await date_node(params, EVENTS[:1])
    assert found == [
        {"id": 1, "at": "2024-01-31T09:15:00Z", "reminder": "2024-01-31T09:00:00.000Z"}
    ]


@pytest.mark.parametrize(
    ("fmt", "custom", "expected"),
    [
        ("yyyy-MM-dd", "", "2024-03-30"),
        ("MMMM dd yyyy", "", "March 30 2024"),
        ("X", "", "1711837800"),
        (
            "custom",
            "EEE d MMM yyyy, hh:mm a 'week' W ZZ",
            "Sat 30 Mar 2024, 11:30 PM week 13 +01:00",
        ),
    ],
)
async def test_format_date_keeps_the_dates_own_offset(fmt: str, custom: str, expected: str) -> None:
    params = {
        "operation": "formatDate",
        "date": "={{ $json.at }}",
        "format": fmt,
        "customFormat": custom,
        "options": {},
    }
    found = await date_node(params, EVENTS[1:])
    assert found == [{"formattedDate": expected}]


async def test_format_date_in_the_workflow_zone_and_from_a_given_format() -> None:
    params = {
        "operation": "formatDate",
        "date": "={{ $json.raw }}",
        "format": "custom",
        "customFormat": "yyyy-MM-dd HH:mm:ss",
        "options": {"fromFormat": "dd.MM.yyyy HH:mm", "timezone": True},
    }
    found = await date_node(params, items({"raw": "05.07.2024 08:05"}), timezone="Asia/Tokyo")
    assert found == [{"formattedDate": "2024-07-05 08:05:00"}]


async def test_format_date_reads_unix_timestamps() -> None:
    params = {
        "operation": "formatDate",
        "date": "={{ $json.ts }}",
        "format": "yyyy/MM/dd",
        "options": {},
    }
    found = await date_node(params, items({"ts": 1700000000}, {"ts": 1700000000000}))
    assert found == [{"formattedDate": "2023/11/14"}, {"formattedDate": "2023/11/14"}]


async def test_invalid_date_names_the_item() -> None:
    params = {"operation": "formatDate", "date": "={{ $json.at }}", "format": "yyyy", "options": {}}
    with pytest.raises(NodeError, match=r"Invalid date format: 'soon' \[item 1\]") as caught:
        await date_node(params, items({"at": "2024-01-01"}, {"at": "soon"}))
    assert caught.value.item_index == 1


@pytest.mark.parametrize(
    ("mode", "unit", "expected"),
    [
        ("roundDown", {"toNearest": "month"}, "2024-01-01T00:00:00.000Z"),
        ("roundDown", {"toNearest": "week"}, "2024-01-29T00:00:00.000Z"),
        ("roundDown", {"toNearest": "hour"}, "2024-01-31T09:00:00.000Z"),
        ("roundUp", {"to": "month"}, "2024-02-01T00:00:00.000Z"),
        ("roundUp", {"to": "day"}, "2024-02-01T00:00:00.000Z"),
    ],
)
async def test_round_date(mode: str, unit: dict[str, str], expected: str) -> None:
    params = {
        "operation": "roundDate",
        "date": "={{ $json.at }}",
        "mode": mode,
        **unit,
        "options": {},
    }
    assert await date_node(params, EVENTS[:1]) == [{"roundedDate": expected}]


async def test_time_between_dates() -> None:
    data = items({"start": "2024-01-31T09:15:00Z", "end": "2024-03-02T21:45:00Z"})
    params = {
        "operation": "getTimeBetweenDates",
        "startDate": "={{ $json.start }}",
        "endDate": "={{ $json.end }}",
        "units": ["month", "day", "hour"],
        "options": {},
    }
    assert await date_node(params, data) == [
        {"timeDifference": {"months": 1, "days": 2, "hours": 12.5}}
    ]
    params["units"] = ["day"]
    params["options"] = {"isoString": True}
    assert await date_node(params, data) == [{"timeDifference": "P31.520833333333332D"}]


async def test_time_between_dates_is_negative_when_reversed() -> None:
    data = items({"start": "2024-01-02T00:00:00Z", "end": "2024-01-01T00:00:00Z"})
    params = {
        "operation": "getTimeBetweenDates",
        "startDate": "={{ $json.start }}",
        "endDate": "={{ $json.end }}",
    }
    assert await date_node(params, data) == [{"timeDifference": {"days": -1}}]


@pytest.mark.parametrize(
    ("part", "expected"), [("year", 2024), ("month", 3), ("week", 13), ("day", 30), ("hour", 23)]
)
async def test_extract_date_in_the_workflow_zone(part: str, expected: int) -> None:
    params = {"operation": "extractDate", "date": "={{ $json.at }}", "part": part, "options": {}}
    assert await date_node(params, EVENTS[1:], timezone="Europe/Oslo") == [{"datePart": expected}]
    # The same instant is already the 31st, 07:30, in Tokyo.
    tokyo = await date_node(params, EVENTS[1:], timezone="Asia/Tokyo")
    assert tokyo[0]["datePart"] == {"day": 31, "hour": 7}.get(part, expected)


def test_luxon_iso_token_format_and_parsing_helpers() -> None:
    moment = parse_datetime("2024-02-29 13:05:09.250", "Europe/Oslo")
    assert moment is not None
    assert (
        format_luxon(moment, "yyyy-MM-dd'T'HH:mm:ss.SSSZZ z")
        == "2024-02-29T13:05:09.250+01:00 Europe/Oslo"
    )
    assert parse_datetime("Thu, 29 Feb 2024 12:00:00 GMT") is not None
    assert parse_datetime("next tuesday") is None


# ---------------------------------------------------------------- Crypto

USERS = items({"email": "ada@example.com"}, {"email": "bo@example.com"})


async def test_hash_each_item_value() -> None:
    params = {"type": "SHA256", "value": "={{ $json.email }}", "dataPropertyName": "emailHash"}
    out = await run_node(Crypto, params, USERS)
    assert jsons(out["main"])[0] == {
        "email": "ada@example.com",
        "emailHash": hashlib.sha256(b"ada@example.com").hexdigest(),
    }
    assert out["main"][1]["pairedItem"] == {"item": 1}


async def test_hmac_base64_matches_a_webhook_signature() -> None:
    params = {
        "action": "hmac",
        "type": "SHA512",
        "value": "={{ $json.email }}",
        "secret": "s3cret",
        "encoding": "base64",
    }
    out = await run_node(Crypto, params, USERS[:1])
    expected = base64.b64encode(hmac.new(b"s3cret", b"ada@example.com", "sha512").digest()).decode()
    assert jsons(out["main"])[0]["data"] == expected


async def test_hash_binary_file() -> None:
    data = [{"json": {}, "binary": {"file": {"data": base64.b64encode(b"hello").decode()}}}]
    params = {"action": "hash", "type": "MD5", "binaryData": True, "binaryPropertyName": "file"}
    out = await run_node(Crypto, params, data)
    assert out["main"][0]["json"] == {"data": hashlib.md5(b"hello").hexdigest()}
    with pytest.raises(NodeError, match="binary file 'missing'"):
        await run_node(Crypto, {**params, "binaryPropertyName": "missing"}, data)


@pytest.mark.parametrize(
    ("encoding", "pattern"),
    [("hex", r"[0-9a-f]{20}"), ("base64", r"[A-Za-z0-9]{20}"), ("ascii", r"[\x00-\x7f]{20}")],
)
async def test_generate_random_strings(encoding: str, pattern: str) -> None:
    params = {
        "action": "generate",
        "encodingType": encoding,
        "stringLength": 20,
        "dataPropertyName": "token",
    }
    out = await run_node(Crypto, params, USERS)
    tokens = [j["token"] for j in jsons(out["main"])]
    assert all(re.fullmatch(pattern, t) for t in tokens)
    assert tokens[0] != tokens[1]


async def test_generate_uuid() -> None:
    out = await run_node(Crypto, {"action": "generate"}, USERS[:1])
    assert uuid.UUID(jsons(out["main"])[0]["data"]).version == 4


def test_sign_action_is_refused() -> None:
    with pytest.raises(ValidationError):
        Crypto.Params.model_validate(
            {"action": "sign", "algorithm": "RSA-SHA256", "privateKey": "x"}
        )
