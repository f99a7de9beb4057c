"""The HTTP Request node (n8n `httpRequest` v4.1/4.2): one request per input item.

Every connection goes through :class:`PinnedTransport`: it resolves the host, refuses
private, loopback, link-local, multicast and reserved addresses unless the execution's
:class:`SsrfPolicy` allows them, and connects to the very address it checked (the URL is
rewritten to the IP; Host header and TLS SNI keep the name), so a second DNS answer cannot
slip in between the check and the connection. Redirect hops pass through it as well.
"""

from __future__ import annotations

import asyncio
import base64
import ipaddress
import json
import mimetypes
import re
import socket
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from email.message import Message
from typing import Any, Literal

import httpx
from pydantic import Field, ValidationError

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

DEFAULT_TIMEOUT_MS = 300_000
MAX_RESPONSE_BYTES = 64 * 1024 * 1024
MAX_PAGES = 10_000  # pagination that never completes stops here
ERROR_EXCERPT = 300

# ---- SSRF policy ---------------------------------------------------------------------


@dataclass(frozen=True)
class SsrfPolicy:
    """Which non-public destinations an execution may reach; the runner sets
    `ctx.ssrf_policy`. Hosts are names or IP literals, compared case-insensitively."""

    allow_private: bool = False
    allowed_hosts: frozenset[str] = frozenset()

    def allows_host(self, host: str) -> bool:
        return self.allow_private or host.lower().rstrip(".") in self.allowed_hosts


DENY_PRIVATE = SsrfPolicy()


class SsrfRefused(Exception):
    def __init__(self, host: str, address: str, reason: str) -> None:
        super().__init__(f"refused to connect to {host} ({address}): {reason} address")
        self.host, self.address, self.reason = host, address, reason


def refusal_reason(address: str) -> str | None:
    """Why a connection to this address is refused by default, or None if it is public."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    checks = (
        ("unspecified", ip.is_unspecified),
        ("loopback", ip.is_loopback),
        ("link-local", ip.is_link_local),
        ("multicast", ip.is_multicast),
        ("reserved", ip.is_reserved),
        ("private", ip.is_private),
        ("non-public", not ip.is_global),
    )
    return next((name for name, hit in checks if hit), None)


async def resolve_checked(host: str, port: int, policy: SsrfPolicy) -> str:
    """The address to connect to: every address the name has must pass the policy."""
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise httpx.ConnectError(f"cannot resolve {host}: {exc.strerror}") from None
    addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
    if not policy.allows_host(host):
        for address in addresses:
            reason = refusal_reason(address)
            if reason is not None:
                raise SsrfRefused(host, address, reason)
    return addresses[0]


class PinnedTransport(httpx.AsyncBaseTransport):
    """Checks each request's destination, then sends it to the checked IP."""

    def __init__(self, policy: SsrfPolicy, *, verify: bool = True) -> None:
        self.policy = policy
        self.verify = verify
        self._inner: dict[tuple[str, str], httpx.AsyncHTTPTransport] = {}

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        url = request.url
        if url.scheme not in ("http", "https"):
            raise httpx.UnsupportedProtocol(f"unsupported URL scheme {url.scheme!r}")
        host = url.host
        port = url.port or (443 if url.scheme == "https" else 80)
        address = await resolve_checked(host, port, self.policy)
        # One pool per (name, address): a TLS connection made for one name is never reused
        # for another name that happens to share the address.
        inner = self._inner.get((host, address))
        if inner is None:
            inner = self._inner[(host, address)] = httpx.AsyncHTTPTransport(verify=self.verify)
        pinned_url, extensions = pin(url, address, request.extensions)
        pinned = httpx.Request(
            request.method,
            pinned_url,
            headers=request.headers,
            stream=request.stream,
            extensions=extensions,
        )
        return await inner.handle_async_request(pinned)

    async def aclose(self) -> None:
        for inner in self._inner.values():
            await inner.aclose()
        self._inner.clear()


def pin(url: Any, address: str, extensions: Mapping[str, Any]) -> tuple[Any, dict[str, Any]]:
    """The URL and request extensions that send a request for `url` (an httpx or httpx2
    URL) to the checked `address`, its Host header and TLS name (SNI) still the name."""
    pinned = dict(extensions)
    if url.scheme == "https" and not _is_ip(url.host):
        pinned["sni_hostname"] = url.host
    return url.copy_with(host=address), pinned


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


# ---- parameters (n8n v4 names) --------------------------------------------------------


class NameValue(Parameters):
    name: str = ""
    value: Any = ""


class NameValues(Parameters):
    parameters: list[NameValue] = Field(default_factory=list)


class BodyParameter(Parameters):
    name: str = ""
    value: Any = ""
    parameter_type: Literal["formData", "formBinaryData"] = Field("formData", alias="parameterType")
    input_data_field_name: str = Field("data", alias="inputDataFieldName")


class BodyParameters(Parameters):
    parameters: list[BodyParameter] = Field(default_factory=list)


class ResponseSettings(Parameters):
    response_format: Literal["autodetect", "json", "text", "file"] = Field(
        "autodetect", alias="responseFormat"
    )
    full_response: bool = Field(False, alias="fullResponse")
    never_error: bool = Field(False, alias="neverError")
    output_property_name: str = Field("data", alias="outputPropertyName")


class ResponseOption(Parameters):
    response: ResponseSettings = Field(default_factory=ResponseSettings)  # type: ignore[arg-type]


class PaginationParameter(Parameters):
    type: Literal["qs", "body", "headers"] = "qs"
    name: str = ""
    value: Any = ""


class PaginationParameters(Parameters):
    parameters: list[PaginationParameter] = Field(default_factory=list)


class PaginationSettings(Parameters):
    pagination_mode: Literal["off", "updateAParameterInEachRequest", "responseContainsNextURL"] = (
        Field("updateAParameterInEachRequest", alias="paginationMode")
    )
    next_url: str = Field("", alias="nextURL")
    parameters: PaginationParameters = Field(default_factory=PaginationParameters)
    pagination_complete_when: Literal["responseIsEmpty", "receiveSpecificStatusCodes", "other"] = (
        Field("responseIsEmpty", alias="paginationCompleteWhen")
    )
    status_codes_when_complete: str = Field("", alias="statusCodesWhenComplete")
    complete_expression: str = Field("", alias="completeExpression")
    limit_pages_fetched: bool = Field(False, alias="limitPagesFetched")
    max_requests: int = Field(100, alias="maxRequests", ge=1)
    request_interval: int = Field(0, alias="requestInterval", ge=0)


class PaginationOption(Parameters):
    pagination: PaginationSettings = Field(default_factory=PaginationSettings)  # type: ignore[arg-type]


class RedirectSettings(Parameters):
    follow_redirects: bool = Field(True, alias="followRedirects")
    max_redirects: int = Field(21, alias="maxRedirects", ge=0)


class RedirectOption(Parameters):
    redirect: RedirectSettings = Field(default_factory=RedirectSettings)  # type: ignore[arg-type]


class BatchSettings(Parameters):
    batch_size: int = Field(50, alias="batchSize")
    batch_interval: int = Field(1000, alias="batchInterval", ge=0)


class BatchingOption(Parameters):
    batch: BatchSettings = Field(default_factory=BatchSettings)  # type: ignore[arg-type]


class HttpOptions(Parameters):
    timeout: int | None = Field(None, ge=1, description="Milliseconds for the whole request.")
    response: ResponseOption = Field(default_factory=ResponseOption)
    pagination: PaginationOption | None = None
    redirect: RedirectOption = Field(default_factory=RedirectOption)
    batching: BatchingOption | None = None
    allow_unauthorized_certs: bool = Field(False, alias="allowUnauthorizedCerts")
    lowercase_headers: bool = Field(True, alias="lowercaseHeaders")


Method = Literal["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]
ContentType = Literal["json", "form-urlencoded", "multipart-form-data", "raw", "binaryData"]
AuthType = Literal[
    "httpBasicAuth",
    "httpDigestAuth",
    "httpHeaderAuth",
    "httpQueryAuth",
    "httpBearerAuth",
    "oAuth2Api",
]


class HttpRequestParameters(Parameters):
    method: Method = "GET"
    url: str = ""
    authentication: Literal["none", "genericCredentialType", "predefinedCredentialType"] = "none"
    generic_auth_type: AuthType | None = Field(None, alias="genericAuthType")
    node_credential_type: str = Field("", alias="nodeCredentialType")
    provide_ssl_certificates: bool = Field(False, alias="provideSslCertificates")
    send_query: bool = Field(False, alias="sendQuery")
    specify_query: Literal["keypair", "json"] = Field("keypair", alias="specifyQuery")
    query_parameters: NameValues = Field(default_factory=NameValues, alias="queryParameters")
    json_query: Any = Field("", alias="jsonQuery")
    send_headers: bool = Field(False, alias="sendHeaders")
    specify_headers: Literal["keypair", "json"] = Field("keypair", alias="specifyHeaders")
    header_parameters: NameValues = Field(default_factory=NameValues, alias="headerParameters")
    json_headers: Any = Field("", alias="jsonHeaders")
    send_body: bool = Field(False, alias="sendBody")
    content_type: ContentType = Field("json", alias="contentType")
    specify_body: Literal["keypair", "json", "string"] = Field("keypair", alias="specifyBody")
    body_parameters: BodyParameters = Field(default_factory=BodyParameters, alias="bodyParameters")
    json_body: Any = Field("", alias="jsonBody")
    body: Any = ""
    raw_content_type: str = Field("", alias="rawContentType")
    input_data_field_name: str = Field("data", alias="inputDataFieldName")
    options: HttpOptions = Field(default_factory=HttpOptions)  # type: ignore[arg-type]


QueryValue = str | int | float | bool | None

# ---- one outgoing request -------------------------------------------------------------


@dataclass
class Outgoing:
    """A request under construction; pagination edits it between pages."""

    method: str
    url: str
    query: list[tuple[str, QueryValue]] = field(default_factory=list)
    headers: dict[str, str] = field(default_factory=dict)
    json_body: Any = None
    form: dict[str, Any] | None = None
    files: list[tuple[str, tuple[str, bytes, str]]] | None = None
    content: bytes | None = None

    def copy(self) -> Outgoing:
        form = dict(self.form) if self.form is not None else None
        return replace(self, query=list(self.query), headers=dict(self.headers), form=form)

    def describe(self) -> dict[str, Any]:
        """What pagination expressions see as `$request`."""
        body = self.json_body if self.json_body is not None else self.form
        return {
            "method": self.method,
            "url": self.url,
            "qs": dict(self.query),
            "headers": dict(self.headers),
            "body": body,
        }

    def full_url(self) -> httpx.URL:
        """The URL's own query followed by the query parameters (httpx would replace it)."""
        url = httpx.URL(self.url)
        if not self.query:
            return url
        return url.copy_with(params=[*url.params.multi_items(), *self.query])

    def build(self, client: httpx.AsyncClient) -> httpx.Request:
        url = self.full_url()
        if self.files is not None:
            return client.build_request(
                self.method,
                url,
                headers=self.headers,
                data=self.form,
                files=self.files,
            )
        return client.build_request(
            self.method,
            url,
            headers=self.headers,
            json=self.json_body,
            data=self.form,
            content=self.content,
        )


def _text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    return json.dumps(value) if isinstance(value, dict | list) else str(value)


def _json_param(value: Any, what: str, item_index: int) -> Any:
    if not isinstance(value, str):
        return value
    if not value.strip():
        return {}
    try:
        return json.loads(value)
    except ValueError as exc:
        raise NodeError(f"{what} is not valid JSON: {exc}", item_index=item_index) from None


def _pairs(params: NameValues) -> list[tuple[str, QueryValue]]:
    return [(p.name, _text(p.value)) for p in params.parameters if p.name]


def _query(p: HttpRequestParameters, index: int) -> list[tuple[str, QueryValue]]:
    if not p.send_query:
        return []
    if p.specify_query == "json":
        parsed = _json_param(p.json_query, "JSON query", index)
        return [(str(k), _text(v)) for k, v in dict(parsed).items()]
    return _pairs(p.query_parameters)


def _headers(p: HttpRequestParameters, index: int) -> dict[str, str]:
    if not p.send_headers:
        return {}
    if p.specify_headers == "json":
        parsed = _json_param(p.json_headers, "JSON headers", index)
        return {str(k): _text(v) for k, v in dict(parsed).items()}
    return {h.name: _text(h.value) for h in p.header_parameters.parameters if h.name}


def _binary_of(item: Item, field_name: str, index: int) -> tuple[str, bytes, str]:
    binary = (item.get("binary") or {}).get(field_name)
    if not isinstance(binary, dict) or "data" not in binary:
        raise NodeError(f"the item has no binary field {field_name!r}", item_index=index)
    content = base64.b64decode(binary["data"])
    mime = binary.get("mimeType") or "application/octet-stream"
    return binary.get("fileName") or field_name, content, mime


def _apply_body(out: Outgoing, p: HttpRequestParameters, item: Item, index: int) -> None:
    if not p.send_body:
        return
    if p.content_type == "json":
        if p.specify_body == "json":
            out.json_body = _json_param(p.json_body, "JSON body", index)
        else:
            out.json_body = {b.name: b.value for b in p.body_parameters.parameters if b.name}
    elif p.content_type == "form-urlencoded":
        if p.specify_body == "string":
            out.content = _text(p.body).encode()
            out.headers.setdefault("content-type", "application/x-www-form-urlencoded")
        else:
            out.form = {b.name: _text(b.value) for b in p.body_parameters.parameters if b.name}
    elif p.content_type == "multipart-form-data":
        out.form, out.files = {}, []
        for b in p.body_parameters.parameters:
            if b.parameter_type == "formBinaryData":
                out.files.append((b.name, _binary_of(item, b.input_data_field_name, index)))
            elif b.name:
                out.form[b.name] = _text(b.value)
    elif p.content_type == "raw":
        out.content = _text(p.body).encode()
        out.headers.setdefault("content-type", p.raw_content_type or "text/plain")
    else:  # binaryData
        _, out.content, mime = _binary_of(item, p.input_data_field_name, index)
        out.headers.setdefault("content-type", mime)


def outgoing(p: HttpRequestParameters, item: Item, index: int) -> Outgoing:
    url = p.url.strip()
    if not re.match(r"^https?://", url, re.IGNORECASE):
        raise NodeError(
            f"invalid URL {url!r}: it must start with http:// or https://", item_index=index
        )
    out = Outgoing(method=p.method, url=url, query=_query(p, index), headers=_headers(p, index))
    _apply_body(out, p, item, index)
    return out


# ---- credentials ----------------------------------------------------------------------


@dataclass
class _Token:
    value: str
    expires_at: float


# (execution id, token URL, client id, scope) -> token; lives only for one execution.
_tokens: dict[tuple[str, str, str, str], _Token] = {}
_TOKEN_CACHE_LIMIT = 1024


def _token_key(ctx: NodeContext, credential: Mapping[str, Any]) -> tuple[str, str, str, str]:
    return (
        ctx.execution_id,
        str(credential.get("accessTokenUrl", "")),
        str(credential.get("clientId", "")),
        str(credential.get("scope", "")),
    )


async def _fetch_token(client: httpx.AsyncClient, credential: Mapping[str, Any]) -> _Token:
    grant = credential.get("grantType", "clientCredentials")
    if grant != "clientCredentials":
        raise NodeError(f"OAuth2 grant type {grant!r} is not supported (only clientCredentials)")
    form = {"grant_type": "client_credentials"}
    if credential.get("scope"):
        form["scope"] = str(credential["scope"])
    client_id, secret = str(credential.get("clientId", "")), str(credential.get("clientSecret", ""))
    headers = {"accept": "application/json"}
    if credential.get("authentication", "header") == "body":
        form |= {"client_id": client_id, "client_secret": secret}
    else:
        pair = base64.b64encode(f"{client_id}:{secret}".encode()).decode()
        headers["authorization"] = f"Basic {pair}"
    url = str(credential.get("accessTokenUrl", ""))
    response = await client.post(url, data=form, headers=headers)
    if not response.is_success:
        excerpt = response.text[:ERROR_EXCERPT]
        raise NodeError(
            f"OAuth2 token request failed with status {response.status_code}: {excerpt}"
        )
    try:
        payload = response.json()
        token = str(payload["access_token"])
    except (ValueError, KeyError, TypeError):
        raise NodeError("OAuth2 token response has no access_token") from None
    lifetime = float(payload.get("expires_in") or 3600)
    return _Token(token, time.monotonic() + max(lifetime - 30, 0))


async def oauth2_token(
    ctx: NodeContext, client: httpx.AsyncClient, credential: Mapping[str, Any], *, renew: bool
) -> str:
    key = _token_key(ctx, credential)
    cached = _tokens.get(key)
    if cached is None or renew or cached.expires_at <= time.monotonic():
        if len(_tokens) >= _TOKEN_CACHE_LIMIT:
            _tokens.clear()
        cached = _tokens[key] = await _fetch_token(client, credential)
    return cached.value


@dataclass
class Authenticator:
    """Adds one credential to each outgoing request."""

    kind: str | None
    credential: dict[str, Any]

    async def apply(
        self, ctx: NodeContext, client: httpx.AsyncClient, out: Outgoing, *, renew: bool = False
    ) -> httpx.Auth | None:
        c = self.credential
        if self.kind == "httpBasicAuth":
            return httpx.BasicAuth(str(c.get("user", "")), str(c.get("password", "")))
        if self.kind == "httpDigestAuth":
            return httpx.DigestAuth(str(c.get("user", "")), str(c.get("password", "")))
        if self.kind == "httpHeaderAuth":
            out.headers[str(c.get("name", ""))] = str(c.get("value", ""))
        elif self.kind == "httpQueryAuth":
            out.query.append((str(c.get("name", "")), str(c.get("value", ""))))
        elif self.kind == "httpBearerAuth":
            out.headers["authorization"] = f"Bearer {c.get('token', '')}"
        elif self.kind == "oAuth2Api":
            token = await oauth2_token(ctx, client, c, renew=renew)
            out.headers["authorization"] = f"Bearer {token}"
        return None


async def authenticator(ctx: NodeContext, p: HttpRequestParameters) -> Authenticator:
    if p.authentication == "none":
        return Authenticator(None, {})
    if p.authentication == "predefinedCredentialType" or p.generic_auth_type is None:
        raise NodeError(
            "this authentication is not supported; use a generic credential type",
            description=f"nodeCredentialType={p.node_credential_type!r}",
        )
    return Authenticator(p.generic_auth_type, await ctx.credential(p.generic_auth_type))


@dataclass(frozen=True)
class CredentialProbe:
    """The outcome of trying a credential: for people, never holding a secret."""

    ok: bool
    message: str
    status: int | None = None


@dataclass(frozen=True)
class _ProbeContext:
    execution_id: str = "credential-test"


async def probe_credential(
    kind: str, values: Mapping[str, Any], url: str, policy: SsrfPolicy, timeout: float = 10
) -> CredentialProbe:
    """Try an HTTP credential the way HTTP Request nodes use it: GET `url` with it (an
    OAuth2 credential with no URL just fetches a token). Goes through the SSRF guard."""
    if not url and kind != "oAuth2Api":
        return CredentialProbe(False, "give a URL to send the test request to")
    async with httpx.AsyncClient(
        transport=PinnedTransport(policy), trust_env=False, timeout=timeout
    ) as client:
        try:
            if not url:
                await _fetch_token(client, values)
                return CredentialProbe(True, "the token endpoint issued a token")
            out = Outgoing("GET", url)
            ctx: Any = _ProbeContext()
            auth = await Authenticator(kind, dict(values)).apply(ctx, client, out, renew=True)
            response = await client.send(out.build(client), auth=auth)
        except SsrfRefused as exc:
            return CredentialProbe(False, str(exc))
        except NodeError as exc:
            return CredentialProbe(False, str(exc))
        except httpx.HTTPError as exc:
            return CredentialProbe(False, f"the request failed: {type(exc).__name__}")
    status = response.status_code
    if response.is_success:
        return CredentialProbe(True, f"{url} accepted the credential ({status})", status)
    return CredentialProbe(False, f"{url} answered {status} {response.reason_phrase}", status)


# ---- responses --------------------------------------------------------------------------


@dataclass
class Received:
    status: int
    reason: str
    headers: dict[str, str]
    content: bytes
    url: str

    @property
    def mime_type(self) -> str:
        return self.headers.get("content-type", "").split(";", 1)[0].strip().lower()

    def text(self) -> str:
        message = Message()
        message["content-type"] = self.headers.get("content-type", "")
        charset = message.get_content_charset() or "utf-8"
        try:
            return self.content.decode(charset, errors="replace")
        except LookupError:
            return self.content.decode("utf-8", errors="replace")


async def _receive(
    client: httpx.AsyncClient, request: httpx.Request, auth: httpx.Auth | None
) -> Received:
    response = await client.send(request, auth=auth, stream=True)
    try:
        chunks: list[bytes] = []
        size = 0
        async for chunk in response.aiter_bytes():  # decompressed: a zip bomb hits the cap
            size += len(chunk)
            if size > MAX_RESPONSE_BYTES:
                raise NodeError(f"the response is larger than {MAX_RESPONSE_BYTES >> 20} MB")
            chunks.append(chunk)
    finally:
        await response.aclose()
    return Received(
        status=response.status_code,
        reason=response.reason_phrase,
        headers={k.lower(): v for k, v in response.headers.items()},
        content=b"".join(chunks),
        url=str(response.url),
    )


def _is_json_type(mime: str) -> bool:
    return mime == "application/json" or mime.endswith("+json")


def _is_text_type(mime: str) -> bool:
    textual = ("application/xml", "application/javascript", "application/x-www-form-urlencoded")
    return mime.startswith("text/") or mime.endswith("+xml") or mime in textual


def _file_name(received: Received) -> str:
    disposition = received.headers.get("content-disposition", "")
    if disposition:
        message = Message()
        message["content-disposition"] = disposition
        name = message.get_filename()
        if name:
            return name
    path = httpx.URL(received.url).path.rstrip("/")
    name = path.rsplit("/", 1)[-1]
    if name:
        return name
    return "file" + (mimetypes.guess_extension(received.mime_type) or "")


def binary_entry(received: Received) -> dict[str, Any]:
    name = _file_name(received)
    entry: dict[str, Any] = {
        "data": base64.b64encode(received.content).decode("ascii"),
        "mimeType": received.mime_type or "application/octet-stream",
        "fileName": name,
        "fileSize": len(received.content),
    }
    if "." in name:
        entry["fileExtension"] = name.rsplit(".", 1)[-1]
    return entry


def decode_body(received: Received, response_format: str, index: int) -> tuple[str, Any]:
    """("json" | "text" | "file", value) for the response content."""
    if response_format == "file":
        return "file", None
    if response_format == "text":
        return "text", received.text()
    if response_format == "json" or _is_json_type(received.mime_type):
        if not received.content.strip():
            return "json", {}
        try:
            return "json", json.loads(received.text())
        except ValueError:
            if response_format == "json":
                raise NodeError("the response is not valid JSON", item_index=index) from None
            return "text", received.text()
    if _is_text_type(received.mime_type) or not received.content:
        return "text", received.text()
    return "file", None


def response_items(received: Received, settings: ResponseSettings, index: int) -> list[Item]:
    kind, body = decode_body(received, settings.response_format, index)
    paired = {"item": index}
    meta = {
        "headers": received.headers,
        "statusCode": received.status,
        "statusMessage": received.reason,
    }
    if kind == "file":
        json_part = meta if settings.full_response else {}
        return [
            {"json": json_part, "binary": {"data": binary_entry(received)}, "pairedItem": paired}
        ]
    if kind == "text":
        body = {settings.output_property_name: body}
    if settings.full_response:
        return [{"json": {"body": body, **meta}, "pairedItem": paired}]
    values = body if isinstance(body, list) else [body]
    return [
        {"json": value if isinstance(value, dict) else {"data": value}, "pairedItem": paired}
        for value in values
    ]


def _is_empty(received: Received) -> bool:
    if not received.content.strip():
        return True
    try:
        parsed = json.loads(received.text())
    except ValueError:
        return False
    return parsed in (None, "", [], {})


# ---- pagination ---------------------------------------------------------------------------

_PAGINATION_NAMES = re.compile(r"(?<![\w$])\$(response|pageCount|request)\b")


def _with_pagination_names(value: Any) -> Any:
    """`$response` etc. become fields of a stand-in item: the expression engine has no
    pagination variables of its own, and `$json` keeps the input item's fields."""
    if isinstance(value, str) and "{{" in value:
        return _PAGINATION_NAMES.sub(lambda m: f'$json["${m.group(1)}"]', value)
    if isinstance(value, dict):
        return {k: _with_pagination_names(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_with_pagination_names(v) for v in value]
    return value


@dataclass
class PageState:
    item: Item
    out: Outgoing
    received: Received
    page_count: int

    def response_view(self) -> dict[str, Any]:
        kind, body = decode_body(self.received, "autodetect", 0)
        return {
            "body": body if kind != "file" else None,
            "headers": self.received.headers,
            "statusCode": self.received.status,
            "statusMessage": self.received.reason,
        }


def evaluate_paging(ctx: NodeContext, value: Any, state: PageState, path: str) -> Any:
    stand_in = {
        **state.item,
        "json": {
            **state.item.get("json", {}),
            "$response": state.response_view(),
            "$pageCount": state.page_count,
            "$request": state.out.describe(),
        },
    }
    return ctx.evaluate(_with_pagination_names(value), [stand_in], path=path)[0]


def pagination_done(ctx: NodeContext, settings: PaginationSettings, state: PageState) -> bool:
    if settings.limit_pages_fetched and state.page_count >= settings.max_requests:
        return True
    when = settings.pagination_complete_when
    if when == "responseIsEmpty":
        return _is_empty(state.received)
    if when == "receiveSpecificStatusCodes":
        return _completes_with_status(settings, state.received.status)
    path = "options.pagination.pagination.completeExpression"
    return bool(evaluate_paging(ctx, settings.complete_expression, state, path))


def _completes_with_status(settings: PaginationSettings, status: int) -> bool:
    codes = {c.strip() for c in settings.status_codes_when_complete.split(",") if c.strip()}
    return str(status) in codes


def next_page(ctx: NodeContext, settings: PaginationSettings, state: PageState) -> Outgoing | None:
    prefix = "options.pagination.pagination"
    out = state.out
    if settings.pagination_mode == "responseContainsNextURL":
        url = evaluate_paging(ctx, settings.next_url, state, f"{prefix}.nextURL")
        if not url:
            return None
        joined = str(httpx.URL(state.received.url).join(str(url)))
        return replace(out.copy(), url=joined, query=[])
    updated = out.copy()
    for i, param in enumerate(settings.parameters.parameters):
        value = evaluate_paging(ctx, param.value, state, f"{prefix}.parameters.parameters[{i}]")
        _set_paging_value(updated, param, value)
    return updated


def _set_paging_value(out: Outgoing, param: PaginationParameter, value: Any) -> None:
    if param.type == "qs":
        out.query = [(k, v) for k, v in out.query if k != param.name] + [(param.name, _text(value))]
    elif param.type == "headers":
        out.headers[param.name] = _text(value)
    elif isinstance(out.json_body, dict):
        out.json_body = {**out.json_body, param.name: value}
    elif out.form is not None:
        out.form[param.name] = _text(value)
    else:
        out.json_body = {param.name: value}


# ---- the node -----------------------------------------------------------------------------


@dataclass
class Call:
    """One input item's request(s), with what they share."""

    ctx: NodeContext
    client: httpx.AsyncClient
    params: HttpRequestParameters
    auth: Authenticator
    index: int
    item: Item

    @property
    def response_settings(self) -> ResponseSettings:
        return self.params.options.response.response

    async def send(self, out: Outgoing) -> Received:
        timeout_ms = self.params.options.timeout or DEFAULT_TIMEOUT_MS
        renew = False
        while True:
            sent = out.copy()
            try:
                async with asyncio.timeout(timeout_ms / 1000):
                    basic = await self.auth.apply(self.ctx, self.client, sent, renew=renew)
                    request = sent.build(self.client)
                    received = await self._send(request, basic)
            except TimeoutError:
                raise NodeError(
                    f"the request to {out.url} timed out after {timeout_ms} ms",
                    item_index=self.index,
                ) from None
            if received.status == 401 and self.auth.kind == "oAuth2Api" and not renew:
                renew = True  # the cached token may have been revoked: fetch a new one once
                continue
            return received

    async def _send(self, request: httpx.Request, auth: httpx.Auth | None) -> Received:
        try:
            return await _receive(self.client, request, auth)
        except SsrfRefused as exc:
            raise NodeError(str(exc), item_index=self.index) from None
        except httpx.TooManyRedirects as exc:
            raise NodeError(str(exc), item_index=self.index) from None
        except httpx.HTTPError as exc:
            message = f"the request to {request.url} failed: {exc or type(exc).__name__}"
            raise NodeError(message, item_index=self.index) from None

    def check(self, received: Received) -> None:
        if 200 <= received.status < 300 or self.response_settings.never_error:
            return
        excerpt = received.text()[:ERROR_EXCERPT]
        raise NodeError(
            f"the request failed with status {received.status} {received.reason}: {excerpt}",
            item_index=self.index,
            description=excerpt,
        )

    async def items(self) -> list[Item]:
        out = outgoing(self.params, self.item, self.index)
        settings = self.params.options.pagination
        if settings is None or settings.pagination.pagination_mode == "off":
            received = await self.send(out)
            self.check(received)
            return response_items(received, self.response_settings, self.index)
        return await self._paginate(out, settings.pagination)

    async def _paginate(self, out: Outgoing, settings: PaginationSettings) -> list[Item]:
        results: list[Item] = []
        page_count = 0
        current: Outgoing | None = out
        while current is not None:
            received = await self.send(current)
            page_count += 1
            state = PageState(self.item, current, received, page_count)
            by_status = settings.pagination_complete_when == "receiveSpecificStatusCodes"
            if by_status and _completes_with_status(settings, received.status):
                break
            self.check(received)
            empty = settings.pagination_complete_when == "responseIsEmpty" and _is_empty(received)
            if not empty:
                results.extend(response_items(received, self.response_settings, self.index))
            if pagination_done(self.ctx, settings, state) or page_count >= MAX_PAGES:
                break
            current = next_page(self.ctx, settings, state)
            if settings.request_interval:
                await asyncio.sleep(settings.request_interval / 1000)
        return results


def per_item_parameters(
    ctx: NodeContext, params: HttpRequestParameters, items: list[Item]
) -> list[HttpRequestParameters]:
    """The parameters resolved for each item (pagination keeps its own expressions)."""
    raw = params.model_dump(by_alias=True, exclude={"options": {"pagination"}})
    resolved = []
    for index, values in enumerate(ctx.evaluate(raw, items, path="")):
        values["options"]["pagination"] = (
            params.options.pagination.model_dump(by_alias=True)
            if params.options.pagination
            else None
        )
        try:
            resolved.append(HttpRequestParameters.model_validate(values))
        except ValidationError as exc:
            raise NodeError(f"invalid parameters: {exc}", item_index=index) from None
    return resolved


class HttpRequest(NodeType):
    type = "httpRequest"
    version = 4.2
    accepted_versions = (4.1, 4.2)
    display_name = "HTTP Request"
    description = "Make an HTTP request and return the response data."
    category = "core"
    Params = HttpRequestParameters
    credential_types = (
        "httpBasicAuth",
        "httpDigestAuth",
        "httpHeaderAuth",
        "httpQueryAuth",
        "httpBearerAuth",
        "oAuth2Api",
    )

    async def run(self, ctx: NodeContext, params: Parameters, inputs: Inputs) -> Outputs:
        assert isinstance(params, HttpRequestParameters)
        items = inputs.get(MAIN) or [{"json": {}}]
        resolved = per_item_parameters(ctx, params, items)
        policy: SsrfPolicy = getattr(ctx, "ssrf_policy", DENY_PRIVATE)
        verify = not params.options.allow_unauthorized_certs
        redirect = params.options.redirect.redirect
        batch = params.options.batching.batch if params.options.batching else None
        results: list[Item] = []
        async with httpx.AsyncClient(
            transport=PinnedTransport(policy, verify=verify),
            follow_redirects=redirect.follow_redirects,
            max_redirects=redirect.max_redirects,
            trust_env=False,
            timeout=None,
        ) as client:
            for index, (item, p) in enumerate(zip(items, resolved, strict=True)):
                if batch and index and batch.batch_size > 0 and index % batch.batch_size == 0:
                    await asyncio.sleep(batch.batch_interval / 1000)
                auth = await authenticator(ctx, p)
                call = Call(ctx, client, p, auth, index, item)
                results.extend(await call.items())
        return {MAIN: results}


HTTP_NODES: list[type[NodeType]] = [HttpRequest]
