"""HTTP Request node against a real local server (Starlette on 127.0.0.1) that speaks
each case: echo, auth, an OAuth2 token endpoint, pagination, slow, text/binary, errors."""

from __future__ import annotations

import asyncio
import base64
import socket
from collections.abc import AsyncIterator
from typing import Any

import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from klikkflow.engine.context import RunContext
from klikkflow.engine.expressions import ExpressionEngine
from klikkflow.engine.workflow import NodeSpec
from klikkflow.nodes.base import NodeError
from klikkflow.nodes.http import HTTP_NODES, HttpRequest, SsrfPolicy, refusal_reason

LOCAL = SsrfPolicy(allow_private=True)
TOKEN_ISSUED = "tok-123"


class TokenEndpoint:
    def __init__(self) -> None:
        self.calls = 0

    async def issue(self, request: Request) -> Response:
        self.calls += 1
        form = await request.form()
        expected = "Basic " + base64.b64encode(b"client-1:s3cret").decode()
        if request.headers.get("authorization") != expected:
            return JSONResponse({"error": "invalid_client"}, status_code=401)
        if form.get("grant_type") != "client_credentials" or form.get("scope") != "read":
            return JSONResponse({"error": "unsupported_grant_type"}, status_code=400)
        return JSONResponse({"access_token": TOKEN_ISSUED, "token_type": "Bearer"})


async def echo(request: Request) -> Response:
    body = await request.body()
    return JSONResponse(
        {
            "method": request.method,
            "query": list(request.query_params.multi_items()),
            "headers": dict(request.headers),
            "body": body.decode(),
        }
    )


async def protected(request: Request) -> Response:
    if request.headers.get("authorization") != f"Bearer {TOKEN_ISSUED}":
        return JSONResponse({"error": "unauthorized"}, status_code=401)
    return JSONResponse({"secret": "data"})


async def pages(request: Request) -> Response:
    page = int(request.query_params.get("page", "1"))
    if page > 3:
        return JSONResponse([])
    return JSONResponse([{"page": page, "n": i} for i in range(2)])


async def linked(request: Request) -> Response:
    step = int(request.query_params.get("step", "0"))
    if step >= 2:
        return JSONResponse([])
    return JSONResponse([{"step": step}], headers={"x-next": f"/linked?step={step + 1}"})


async def slow(request: Request) -> Response:
    await asyncio.sleep(2)
    return JSONResponse({"late": True})


async def text(request: Request) -> Response:
    return Response("plain words", media_type="text/plain")


async def download(request: Request) -> Response:
    return Response(
        b"\x89PNG\r\n\x1a\nbytes",
        media_type="image/png",
        headers={"content-disposition": 'attachment; filename="pic.png"'},
    )


async def status(request: Request) -> Response:
    code = int(request.path_params["code"])
    return JSONResponse({"message": "teapot trouble"}, status_code=code)


async def redirect(request: Request) -> Response:
    return RedirectResponse(request.query_params["to"], status_code=302)


def app(tokens: TokenEndpoint) -> Starlette:
    methods = ["GET", "POST", "PUT", "PATCH", "DELETE"]
    return Starlette(
        routes=[
            Route("/echo", echo, methods=methods),
            Route("/token", tokens.issue, methods=["POST"]),
            Route("/protected", protected),
            Route("/pages", pages),
            Route("/linked", linked),
            Route("/slow", slow),
            Route("/text", text),
            Route("/download", download),
            Route("/status/{code}", status),
            Route("/redirect", redirect),
        ]
    )


class Server:
    def __init__(self, base: str, tokens: TokenEndpoint) -> None:
        self.base, self.tokens = base, tokens


@pytest.fixture(scope="module")
async def server() -> AsyncIterator[Server]:
    tokens = TokenEndpoint()
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    config = uvicorn.Config(app(tokens), log_level="warning", lifespan="off")
    running = uvicorn.Server(config)
    task = asyncio.create_task(running.serve(sockets=[sock]))
    while not running.started:
        await asyncio.sleep(0.01)
    yield Server(f"http://127.0.0.1:{sock.getsockname()[1]}", tokens)
    running.should_exit = True
    await task


async def run_node(
    parameters: dict[str, Any],
    items: list[dict[str, Any]] | None = None,
    *,
    policy: SsrfPolicy = LOCAL,
    credentials: dict[str, dict[str, Any]] | None = None,
    execution_id: str = "ex-1",
) -> list[dict[str, Any]]:
    stored = credentials or {}

    async def load(credential_type: str, credential_id: str) -> dict[str, Any]:
        assert credential_id == "c1"
        return stored[credential_type]

    spec = NodeSpec.model_validate(
        {
            "id": "n1",
            "name": "HTTP",
            "type": "httpRequest",
            "typeVersion": 4.2,
            "parameters": parameters,
            "credentials": {kind: {"id": "c1"} for kind in stored},
        }
    )
    ctx = RunContext(
        node=spec,
        expressions=ExpressionEngine(execution_id=execution_id, workflow={"nodes": []}),
        execution_id=execution_id,
        credentials_loader=load,
    )
    ctx.ssrf_policy = policy  # type: ignore[attr-defined]
    params = HttpRequest.Params.model_validate(parameters)
    out = await HttpRequest().run(ctx, params, {"main": items or [{"json": {}}]})
    assert not isinstance(out, type(None))
    return out["main"]  # type: ignore[index]


def test_exports_the_node() -> None:
    assert [HttpRequest] == HTTP_NODES
    assert HttpRequest.versions() == (4.1, 4.2)


# ---- requests -------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["GET", "POST", "PUT", "PATCH", "DELETE"])
async def test_sends_the_method(server: Server, method: str) -> None:
    [got] = await run_node({"method": method, "url": f"{server.base}/echo"})
    assert got["json"]["method"] == method
    assert got["pairedItem"] == {"item": 0}


async def test_query_and_headers_are_resolved_per_item(server: Server) -> None:
    parameters = {
        "url": f"{server.base}/echo?fixed=1",
        "sendQuery": True,
        "queryParameters": {"parameters": [{"name": "q", "value": "={{ $json.term }}"}]},
        "sendHeaders": True,
        "headerParameters": {"parameters": [{"name": "X-Trace", "value": "={{ $json.id }}"}]},
    }
    items = [{"json": {"term": "cats", "id": 1}}, {"json": {"term": "dogs", "id": 2}}]
    first, second = await run_node(parameters, items)
    assert first["json"]["query"] == [["fixed", "1"], ["q", "cats"]]
    assert second["json"]["query"] == [["fixed", "1"], ["q", "dogs"]]
    assert (first["json"]["headers"]["x-trace"], second["json"]["headers"]["x-trace"]) == ("1", "2")
    assert second["pairedItem"] == {"item": 1}


async def test_json_body_from_keypairs_and_from_json(server: Server) -> None:
    keypair = {
        "method": "POST",
        "url": f"{server.base}/echo",
        "sendBody": True,
        "bodyParameters": {"parameters": [{"name": "name", "value": "={{ $json.who }}"}]},
    }
    [got] = await run_node(keypair, [{"json": {"who": "Ada"}}])
    assert got["json"]["body"] == '{"name":"Ada"}'
    assert got["json"]["headers"]["content-type"] == "application/json"
    as_json = {**keypair, "specifyBody": "json", "jsonBody": '={"n": {{ $json.n }}}'}
    [got] = await run_node(as_json, [{"json": {"n": 5}}])
    assert got["json"]["body"] == '{"n":5}'


async def test_form_urlencoded_multipart_and_raw_bodies(server: Server) -> None:
    base = {"method": "POST", "url": f"{server.base}/echo", "sendBody": True}
    fields = {"parameters": [{"name": "a", "value": "1 2"}, {"name": "b", "value": "x"}]}
    [form] = await run_node({**base, "contentType": "form-urlencoded", "bodyParameters": fields})
    assert form["json"]["body"] == "a=1+2&b=x"
    assert form["json"]["headers"]["content-type"] == "application/x-www-form-urlencoded"

    upload = {
        "parameters": [
            {"name": "a", "value": "1"},
            {"parameterType": "formBinaryData", "name": "file", "inputDataFieldName": "data"},
        ]
    }
    item = {
        "json": {},
        "binary": {
            "data": {
                "data": base64.b64encode(b"hello").decode(),
                "mimeType": "text/plain",
                "fileName": "h.txt",
            }
        },
    }
    multipart = {**base, "contentType": "multipart-form-data", "bodyParameters": upload}
    [sent] = await run_node(multipart, [item])
    assert sent["json"]["headers"]["content-type"].startswith("multipart/form-data; boundary=")
    assert 'name="file"; filename="h.txt"' in sent["json"]["body"]
    assert "hello" in sent["json"]["body"]

    raw = {**base, "contentType": "raw", "rawContentType": "text/csv", "body": "a,b\n1,2"}
    [got] = await run_node(raw)
    assert (got["json"]["body"], got["json"]["headers"]["content-type"]) == ("a,b\n1,2", "text/csv")


# ---- authentication -------------------------------------------------------------------

GENERIC = {"url": "", "authentication": "genericCredentialType"}


@pytest.mark.parametrize(
    ("kind", "credential", "header", "expected"),
    [
        (
            "httpBasicAuth",
            {"user": "ada", "password": "pw"},
            "authorization",
            "Basic " + base64.b64encode(b"ada:pw").decode(),
        ),
        ("httpBearerAuth", {"token": "t0k"}, "authorization", "Bearer t0k"),
        ("httpHeaderAuth", {"name": "X-Api-Key", "value": "k3y"}, "x-api-key", "k3y"),
    ],
)
async def test_generic_credentials(
    server: Server, kind: str, credential: dict[str, Any], header: str, expected: str
) -> None:
    parameters = {**GENERIC, "url": f"{server.base}/echo", "genericAuthType": kind}
    [got] = await run_node(parameters, credentials={kind: credential})
    assert got["json"]["headers"][header] == expected


async def test_query_auth_adds_a_parameter(server: Server) -> None:
    parameters = {**GENERIC, "url": f"{server.base}/echo", "genericAuthType": "httpQueryAuth"}
    credential = {"httpQueryAuth": {"name": "api_key", "value": "k"}}
    [got] = await run_node(parameters, credentials=credential)
    assert got["json"]["query"] == [["api_key", "k"]]


def oauth2(server: Server, secret: str = "s3cret") -> dict[str, Any]:
    return {
        "grantType": "clientCredentials",
        "accessTokenUrl": f"{server.base}/token",
        "clientId": "client-1",
        "clientSecret": secret,
        "scope": "read",
        "authentication": "header",
    }


async def test_oauth2_client_credentials_token_is_fetched_once_per_execution(
    server: Server,
) -> None:
    parameters = {**GENERIC, "url": f"{server.base}/protected", "genericAuthType": "oAuth2Api"}
    before = server.tokens.calls
    items: list[dict[str, Any]] = [{"json": {}}, {"json": {}}, {"json": {}}]
    got = await run_node(
        parameters, items, credentials={"oAuth2Api": oauth2(server)}, execution_id="oauth-a"
    )
    assert [g["json"] for g in got] == [{"secret": "data"}] * 3
    assert server.tokens.calls == before + 1
    await run_node(parameters, credentials={"oAuth2Api": oauth2(server)}, execution_id="oauth-b")
    assert server.tokens.calls == before + 2


async def test_oauth2_token_refusal_is_a_node_error(server: Server) -> None:
    parameters = {**GENERIC, "url": f"{server.base}/protected", "genericAuthType": "oAuth2Api"}
    credentials = {"oAuth2Api": oauth2(server, secret="wrong")}
    with pytest.raises(NodeError, match="token request failed with status 401"):
        await run_node(parameters, credentials=credentials, execution_id="oauth-c")


# ---- responses --------------------------------------------------------------------------


async def test_json_list_becomes_one_item_per_element(server: Server) -> None:
    got = await run_node({"url": f"{server.base}/pages?page=2"})
    assert [g["json"] for g in got] == [{"page": 2, "n": 0}, {"page": 2, "n": 1}]


async def test_text_response(server: Server) -> None:
    [got] = await run_node({"url": f"{server.base}/text"})
    assert got["json"] == {"data": "plain words"}


async def test_binary_response_is_stored_base64(server: Server) -> None:
    [got] = await run_node({"url": f"{server.base}/download"})
    binary = got["binary"]["data"]
    assert base64.b64decode(binary["data"]) == b"\x89PNG\r\n\x1a\nbytes"
    assert (binary["mimeType"], binary["fileName"], binary["fileSize"]) == (
        "image/png",
        "pic.png",
        13,
    )


async def test_forced_formats_and_full_response(server: Server) -> None:
    as_text = {"response": {"response": {"responseFormat": "text"}}}
    [got] = await run_node({"url": f"{server.base}/echo", "options": as_text})
    assert got["json"]["data"].startswith('{"method":"GET"')
    as_file = {"response": {"response": {"responseFormat": "file"}}}
    [got] = await run_node({"url": f"{server.base}/text", "options": as_file})
    assert base64.b64decode(got["binary"]["data"]["data"]) == b"plain words"
    full = {"response": {"response": {"fullResponse": True}}}
    [got] = await run_node({"url": f"{server.base}/pages", "options": full})
    assert got["json"]["statusCode"] == 200
    assert got["json"]["headers"]["content-type"] == "application/json"
    assert len(got["json"]["body"]) == 2


async def test_non_2xx_raises_unless_never_error(server: Server) -> None:
    with pytest.raises(NodeError, match="status 418") as caught:
        await run_node({"url": f"{server.base}/status/418"}, [{"json": {}}, {"json": {}}])
    assert "teapot trouble" in str(caught.value)
    assert caught.value.item_index == 0
    never = {"response": {"response": {"neverError": True, "fullResponse": True}}}
    [got] = await run_node({"url": f"{server.base}/status/418", "options": never})
    assert got["json"]["statusCode"] == 418
    assert got["json"]["body"] == {"message": "teapot trouble"}


async def test_timeout(server: Server) -> None:
    with pytest.raises(NodeError, match="timed out after 200 ms"):
        await run_node({"url": f"{server.base}/slow", "options": {"timeout": 200}})


# ---- pagination ---------------------------------------------------------------------------


async def test_paginates_by_updating_a_parameter_until_empty(server: Server) -> None:
    pagination = {
        "pagination": {
            "paginationMode": "updateAParameterInEachRequest",
            "parameters": {
                "parameters": [{"type": "qs", "name": "page", "value": "={{ $pageCount + 1 }}"}]
            },
            "paginationCompleteWhen": "responseIsEmpty",
        }
    }
    got = await run_node({"url": f"{server.base}/pages", "options": {"pagination": pagination}})
    assert [(g["json"]["page"], g["json"]["n"]) for g in got] == [
        (p, n) for p in (1, 2, 3) for n in (0, 1)
    ]


async def test_paginates_by_next_url_until_empty(server: Server) -> None:
    pagination = {
        "pagination": {
            "paginationMode": "responseContainsNextURL",
            "nextURL": '={{ $response.headers["x-next"] }}',
            "paginationCompleteWhen": "responseIsEmpty",
        }
    }
    got = await run_node({"url": f"{server.base}/linked", "options": {"pagination": pagination}})
    assert [g["json"] for g in got] == [{"step": 0}, {"step": 1}]


async def test_pagination_stops_at_the_page_limit_or_expression(server: Server) -> None:
    limited = {
        "pagination": {
            "parameters": {
                "parameters": [{"type": "qs", "name": "page", "value": "={{ $pageCount + 1 }}"}]
            },
            "limitPagesFetched": True,
            "maxRequests": 2,
        }
    }
    got = await run_node({"url": f"{server.base}/pages", "options": {"pagination": limited}})
    assert {g["json"]["page"] for g in got} == {1, 2}
    by_expression = {
        "pagination": {
            **limited["pagination"],
            "limitPagesFetched": False,
            "paginationCompleteWhen": "other",
            "completeExpression": "={{ $response.body[0].page >= 3 }}",
        }
    }
    got = await run_node({"url": f"{server.base}/pages", "options": {"pagination": by_expression}})
    assert {g["json"]["page"] for g in got} == {1, 2, 3}


# ---- SSRF guard ---------------------------------------------------------------------------


async def test_loopback_is_refused_by_default(server: Server) -> None:
    with pytest.raises(NodeError, match=r"refused to connect to 127\.0\.0\.1.*loopback"):
        await run_node({"url": f"{server.base}/echo"}, policy=SsrfPolicy())


async def test_a_name_resolving_to_loopback_is_refused(server: Server) -> None:
    url = server.base.replace("127.0.0.1", "localhost") + "/echo"
    with pytest.raises(NodeError, match="refused to connect to localhost.*loopback"):
        await run_node({"url": url}, policy=SsrfPolicy(allowed_hosts=frozenset({"127.0.0.1"})))


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("http://10.0.0.1/", "private"),
        ("http://169.254.169.254/latest/meta-data/", "link-local"),
        ("http://[::1]:9/", "loopback"),
        ("http://0.0.0.0:9/", "unspecified"),
        ("http://[::ffff:10.1.2.3]/", "private"),
    ],
)
async def test_private_destinations_are_refused_before_connecting(url: str, reason: str) -> None:
    # No server listens on these; the refusal must come from the policy, not from a
    # failed connection (and nothing is sent anywhere but 127.0.0.1).
    with pytest.raises(NodeError, match=f"refused to connect.*{reason} address"):
        await run_node({"url": url, "options": {"timeout": 1000}}, policy=SsrfPolicy())


async def test_an_allowed_host_may_not_redirect_to_a_refused_one(server: Server) -> None:
    allowed = SsrfPolicy(allowed_hosts=frozenset({"127.0.0.1"}))
    [ok] = await run_node({"url": f"{server.base}/echo"}, policy=allowed)
    assert ok["json"]["method"] == "GET"
    bounce = f"{server.base}/redirect?to=http://169.254.169.254/latest/meta-data/"
    with pytest.raises(NodeError, match=r"refused to connect to 169\.254\.169\.254"):
        await run_node({"url": bounce}, policy=allowed)
    to_localhost = server.base.replace("127.0.0.1", "localhost") + "/echo"
    with pytest.raises(NodeError, match="refused to connect to localhost"):
        await run_node({"url": f"{server.base}/redirect?to={to_localhost}"}, policy=allowed)


async def test_redirects_within_allowed_hosts_are_followed(server: Server) -> None:
    [got] = await run_node({"url": f"{server.base}/redirect?to=/echo"})
    assert got["json"]["method"] == "GET"


def test_refusal_reasons() -> None:
    assert refusal_reason("8.8.8.8") is None
    assert refusal_reason("2606:4700::1111") is None
    assert refusal_reason("192.168.1.1") == "private"
    assert refusal_reason("fd00::1") == "private"
    assert refusal_reason("fe80::1") == "link-local"
    assert refusal_reason("224.0.0.1") == "multicast"
    assert refusal_reason("100.64.0.1") == "non-public"
    assert refusal_reason("240.0.0.1") == "reserved"
