"""Which token the dashboard forwards to the router."""

from __future__ import annotations

import pytest
from starlette.requests import Request

from web.auth import viewer_token


def request_with(headers: dict[str, str]) -> Request:
    raw = [(k.lower().encode(), v.encode()) for k, v in headers.items()]
    return Request({"type": "http", "method": "GET", "path": "/", "headers": raw})


@pytest.mark.parametrize(
    ("headers", "token"),
    [
        ({"Authorization": "Bearer abc"}, "abc"),
        ({"Authorization": "bearer abc", "Cookie": "kf_token=xyz"}, "abc"),
        ({"Cookie": "kf_token=xyz"}, "xyz"),
        ({"Authorization": "Basic dXNlcjpwdw==", "Cookie": "kf_token=xyz"}, "xyz"),
        ({"Authorization": "Basic dXNlcjpwdw=="}, None),
        ({}, None),
    ],
)
def test_viewer_token(headers: dict[str, str], token: str | None) -> None:
    assert viewer_token(request_with(headers)) == token
