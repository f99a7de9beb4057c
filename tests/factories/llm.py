"""A stand-in for LLM providers: one local server speaking the real HTTP protocols.

OpenAI-compatible (`POST /v1/chat/completions`, `POST /v1/embeddings`, `GET /v1/models`)
and Anthropic (`POST /v1/messages`, `GET /v1/models` when asked with Anthropic headers).
Chat answers come from a queue of scripted `Reply`s, the same reply rendered in whichever
protocol was asked, streamed as SSE when the request says `stream: true`. Every request is
recorded (`Sent`) so a test can assert what the client sent: auth headers, model, messages,
tools. When the queue is empty the stand-in answers 500 "no scripted reply left", so a
client that calls more often than the test planned fails loudly.

    async with llm_stand_in() as llm:
        llm.script(Reply.say("Hello"), Reply.calls(ToolCall("search", {"q": "x"})))
        ... point an OpenAI client at llm.openai_url, an Anthropic one at llm.anthropic_url ...
        assert llm.sent[0].headers["authorization"] == "Bearer sk-test"
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import math
import struct
from collections import deque
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from itertools import count
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from tests.factories.servers import serve

CREATED = 1_750_000_000


@dataclass(frozen=True)
class ToolCall:
    """A tool call the scripted model makes; `arguments` is a dict or raw (even broken) JSON."""

    name: str
    arguments: dict[str, Any] | str = field(default_factory=dict)
    id: str = ""

    @property
    def arguments_json(self) -> str:
        if isinstance(self.arguments, str):
            return self.arguments
        return json.dumps(self.arguments)


@dataclass(frozen=True)
class Reply:
    """One scripted answer to one chat request."""

    text: str = ""
    tool_calls: tuple[ToolCall, ...] = ()
    input_tokens: int = 11
    output_tokens: int = 7
    status: int = 200  # anything else answers the provider's error body with `error`
    error: str = "scripted failure"
    raw: str | None = None  # a body sent as is (with `status`), e.g. not JSON at all
    delay: float = 0.0  # seconds to wait before answering: forces a client timeout
    stop: str | None = None  # finish/stop reason; derived from the content when None
    model: str | None = None  # the model name answered; the requested one when None
    pieces: int = 3  # how many deltas streamed text is split into
    location: str | None = None  # answer 307 Temporary Redirect to this URL instead

    @classmethod
    def redirect(cls, location: str) -> Reply:
        return cls(location=location)

    @classmethod
    def say(cls, text: str, **kw: Any) -> Reply:
        return cls(text=text, **kw)

    @classmethod
    def calls(cls, *tool_calls: ToolCall, text: str = "", **kw: Any) -> Reply:
        return cls(text=text, tool_calls=tool_calls, **kw)

    @classmethod
    def failure(cls, status: int, error: str = "scripted failure", **kw: Any) -> Reply:
        return cls(status=status, error=error, **kw)

    @classmethod
    def slow(cls, seconds: float, text: str = "too late", **kw: Any) -> Reply:
        return cls(text=text, delay=seconds, **kw)


@dataclass(frozen=True)
class ToolResult:
    """A tool result as the client sent it back to the model."""

    call_id: str
    text: str
    is_error: bool  # Anthropic's is_error; OpenAI has no such flag


@dataclass
class Sent:
    """One request the stand-in received."""

    method: str
    path: str
    headers: dict[str, str]  # lower-case names
    body: Any

    @property
    def protocol(self) -> str:
        return "anthropic" if self.path.endswith("/messages") else "openai"

    @property
    def model(self) -> str | None:
        return self.body.get("model") if isinstance(self.body, dict) else None

    @property
    def messages(self) -> list[dict[str, Any]]:
        return list(self.body.get("messages") or []) if isinstance(self.body, dict) else []

    @property
    def tools(self) -> list[dict[str, Any]]:
        return list(self.body.get("tools") or []) if isinstance(self.body, dict) else []

    @property
    def tool_names(self) -> list[str]:
        return [t["function"]["name"] if "function" in t else t["name"] for t in self.tools]

    def tool_schema(self, name: str) -> dict[str, Any]:
        """The JSON Schema of a tool's parameters as sent, in either protocol."""
        for t in self.tools:
            if t.get("function", {}).get("name") == name:
                return dict(t["function"].get("parameters") or {})
            if t.get("name") == name:
                return dict(t.get("input_schema") or {})
        raise KeyError(name)

    @property
    def system(self) -> str:
        """The system prompt as sent: Anthropic's `system`, or OpenAI's system messages."""
        if self.protocol == "anthropic":
            system = self.body.get("system") or ""
            return system if isinstance(system, str) else "".join(b["text"] for b in system)
        return "\n".join(
            _text_of(m.get("content"))
            for m in self.messages
            if m.get("role") in ("system", "developer")
        )

    @property
    def tool_results(self) -> list[ToolResult]:
        """The tool results the client handed back, in either protocol, in order."""
        if self.protocol == "openai":
            return [
                ToolResult(str(m.get("tool_call_id")), _text_of(m.get("content")), False)
                for m in self.messages
                if m.get("role") == "tool"
            ]
        return [
            ToolResult(
                str(b.get("tool_use_id")), _text_of(b.get("content")), bool(b.get("is_error"))
            )
            for m in self.messages
            if isinstance(m.get("content"), list)
            for b in m["content"]
            if isinstance(b, dict) and b.get("type") == "tool_result"
        ]

    @property
    def last_user_text(self) -> str:
        users = [m for m in self.messages if m.get("role") == "user"]
        return _text_of(users[-1].get("content")) if users else ""


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(
            str(c.get("text", "")) for c in content if isinstance(c, dict) and "text" in c
        )
    return ""


@dataclass
class LlmStandIn:
    """The scripted provider; `url` is set while it is served (see `llm_stand_in`)."""

    models: tuple[str, ...] = ("stand-in-small", "stand-in-large")
    embedding_dimensions: int = 16
    url: str = ""
    replies: deque[Reply] = field(default_factory=deque)
    sent: list[Sent] = field(default_factory=list)
    _ids: Iterator[int] = field(default_factory=lambda: count(1))

    @property
    def openai_url(self) -> str:
        """Base URL for OpenAI-compatible clients (they append `/chat/completions`)."""
        return f"{self.url}/v1"

    @property
    def anthropic_url(self) -> str:
        """Base URL for Anthropic clients (they append `/v1/messages`)."""
        return self.url

    def script(self, *replies: Reply) -> None:
        self.replies.extend(replies)

    @property
    def chats(self) -> list[Sent]:
        """The chat requests only (both protocols), in order."""
        return [s for s in self.sent if s.path.endswith(("/chat/completions", "/messages"))]

    def app(self) -> Starlette:
        return Starlette(
            routes=[
                Route("/v1/chat/completions", self._openai_chat, methods=["POST"]),
                Route("/v1/messages", self._anthropic_messages, methods=["POST"]),
                Route("/v1/embeddings", self._embeddings, methods=["POST"]),
                Route("/v1/models", self._models, methods=["GET"]),
            ]
        )

    # ---- shared ------------------------------------------------------------------------

    async def _record(self, request: Request) -> Sent:
        raw = await request.body()
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = raw.decode(errors="replace")
        sent = Sent(request.method, request.url.path, dict(request.headers.items()), body)
        self.sent.append(sent)
        return sent

    async def _next(self) -> Reply:
        reply = self.replies.popleft() if self.replies else None
        if reply is None:
            return Reply.failure(500, "stand-in: no scripted reply left")
        if reply.delay:
            await asyncio.sleep(reply.delay)
        return reply

    def _id(self, prefix: str) -> str:
        return f"{prefix}{next(self._ids):04d}"

    # ---- OpenAI chat completions -------------------------------------------------------

    async def _openai_chat(self, request: Request) -> Response:
        sent = await self._record(request)
        reply = await self._next()
        if failed := _failure(reply, _openai_error):
            return failed
        model = reply.model or str(sent.model)
        calls = [(c, c.id or self._id("call_")) for c in reply.tool_calls]
        stop = reply.stop or ("tool_calls" if calls else "stop")
        if sent.body.get("stream"):
            options = sent.body.get("stream_options") or {}
            chunks = self._openai_chunks(reply, model, calls, stop, options.get("include_usage"))
            return StreamingResponse(chunks, media_type="text/event-stream")
        message: dict[str, Any] = {"role": "assistant", "content": reply.text or None}
        if calls:
            message["tool_calls"] = [
                {"id": i, "type": "function", "function": {"name": c.name, "arguments": a}}
                for c, i in calls
                for a in [c.arguments_json]
            ]
        return JSONResponse(
            {
                "id": self._id("chatcmpl-"),
                "object": "chat.completion",
                "created": CREATED,
                "model": model,
                "choices": [
                    {"index": 0, "message": message, "finish_reason": stop, "logprobs": None}
                ],
                "usage": _openai_usage(reply),
            }
        )

    async def _openai_chunks(
        self,
        reply: Reply,
        model: str,
        calls: list[tuple[ToolCall, str]],
        stop: str,
        include_usage: bool,
    ) -> AsyncIterator[str]:
        head = {"id": self._id("chatcmpl-"), "object": "chat.completion.chunk"}
        head |= {"created": CREATED, "model": model}

        def chunk(delta: dict[str, Any], finish: str | None = None) -> str:
            choice = {"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}
            return _sse({**head, "choices": [choice]})

        yield chunk({"role": "assistant", "content": ""})
        for piece in _split(reply.text, reply.pieces):
            yield chunk({"content": piece})
        for index, (call, call_id) in enumerate(calls):
            function = {"name": call.name, "arguments": ""}
            start = {"index": index, "id": call_id, "type": "function", "function": function}
            yield chunk({"tool_calls": [start]})
            for piece in _split(call.arguments_json, 2):
                yield chunk({"tool_calls": [{"index": index, "function": {"arguments": piece}}]})
        yield chunk({}, stop)
        if include_usage:
            yield _sse({**head, "choices": [], "usage": _openai_usage(reply)})
        yield "data: [DONE]\n\n"

    # ---- Anthropic messages ------------------------------------------------------------

    async def _anthropic_messages(self, request: Request) -> Response:
        sent = await self._record(request)
        reply = await self._next()
        if failed := _failure(reply, _anthropic_error):
            return failed
        model = reply.model or str(sent.model)
        blocks: list[dict[str, Any]] = [{"type": "text", "text": reply.text}] if reply.text else []
        for call in reply.tool_calls:
            arguments = call.arguments
            if isinstance(arguments, str):  # Anthropic sends objects: broken JSON becomes {}
                arguments = _object_or_empty(arguments)
            use = {"type": "tool_use", "id": call.id or self._id("toolu_"), "name": call.name}
            blocks.append(use | {"input": arguments})
        stop = reply.stop or ("tool_use" if reply.tool_calls else "end_turn")
        message = {
            "id": self._id("msg_"),
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": blocks,
            "stop_reason": stop,
            "stop_sequence": None,
            "usage": {"input_tokens": reply.input_tokens, "output_tokens": reply.output_tokens},
        }
        if sent.body.get("stream"):
            events = _anthropic_events(message, reply)
            return StreamingResponse(events, media_type="text/event-stream")
        return JSONResponse(message)

    # ---- embeddings and models ---------------------------------------------------------

    async def _embeddings(self, request: Request) -> Response:
        sent = await self._record(request)
        body = sent.body if isinstance(sent.body, dict) else {}
        texts = body.get("input")
        texts = [texts] if isinstance(texts, str) else list(texts or [])
        dimensions = int(body.get("dimensions") or self.embedding_dimensions)
        base64_wanted = body.get("encoding_format") == "base64"
        data = []
        for index, text in enumerate(texts):
            vector = embedding_for(str(text), dimensions)
            packed = base64.b64encode(struct.pack(f"<{dimensions}f", *vector)).decode()
            embedding = packed if base64_wanted else vector
            data.append({"object": "embedding", "index": index, "embedding": embedding})
        tokens = sum(len(str(t).split()) for t in texts)
        return JSONResponse(
            {
                "object": "list",
                "data": data,
                "model": body.get("model"),
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
            }
        )

    async def _models(self, request: Request) -> Response:
        sent = await self._record(request)
        if "anthropic-version" in sent.headers:
            data = [
                {"type": "model", "id": m, "display_name": m, "created_at": "2025-01-01T00:00:00Z"}
                for m in self.models
            ]
            first, last = (self.models[0], self.models[-1]) if self.models else (None, None)
            return JSONResponse(
                {"data": data, "has_more": False, "first_id": first, "last_id": last}
            )
        data = [
            {"id": m, "object": "model", "created": CREATED, "owned_by": "stand-in"}
            for m in self.models
        ]
        return JSONResponse({"object": "list", "data": data})


def embedding_for(text: str, dimensions: int) -> list[float]:
    """A deterministic unit vector from the text's hash: same text, same vector."""
    values: list[float] = []
    block = 0
    while len(values) < dimensions:
        digest = hashlib.sha256(f"{block}:{text}".encode()).digest()
        values.extend(b / 127.5 - 1.0 for b in digest)
        block += 1
    values = values[:dimensions]
    norm = math.sqrt(sum(v * v for v in values)) or 1.0
    return [v / norm for v in values]


def _object_or_empty(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _failure(reply: Reply, error_body: Any) -> Response | None:
    if reply.location is not None:
        return Response(status_code=307, headers={"location": reply.location})
    if reply.raw is not None:
        return Response(reply.raw, status_code=reply.status, media_type="application/json")
    if reply.status >= 400:
        return JSONResponse(error_body(reply), status_code=reply.status)
    return None


def _openai_error(reply: Reply) -> dict[str, Any]:
    kind = "server_error" if reply.status >= 500 else "invalid_request_error"
    return {"error": {"message": reply.error, "type": kind, "param": None, "code": None}}


def _anthropic_error(reply: Reply) -> dict[str, Any]:
    kind = {401: "authentication_error", 429: "rate_limit_error", 529: "overloaded_error"}
    fallback = "api_error" if reply.status >= 500 else "invalid_request_error"
    error = {"type": kind.get(reply.status, fallback), "message": reply.error}
    return {"type": "error", "error": error}


def _openai_usage(reply: Reply) -> dict[str, int]:
    return {
        "prompt_tokens": reply.input_tokens,
        "completion_tokens": reply.output_tokens,
        "total_tokens": reply.input_tokens + reply.output_tokens,
    }


async def _anthropic_events(message: dict[str, Any], reply: Reply) -> AsyncIterator[str]:
    start = {**message, "content": [], "stop_reason": None}
    start["usage"] = {"input_tokens": reply.input_tokens, "output_tokens": 1}
    yield _event("message_start", {"type": "message_start", "message": start})
    yield _event("ping", {"type": "ping"})
    for index, block in enumerate(message["content"]):
        if block["type"] == "text":
            opened = {"type": "text", "text": ""}
            pieces = _split(block["text"], reply.pieces)
            deltas = [{"type": "text_delta", "text": piece} for piece in pieces]
        else:
            opened = {**block, "input": {}}
            deltas = [
                {"type": "input_json_delta", "partial_json": piece}
                for piece in _split(json.dumps(block["input"]), 2)
            ]
        begin = {"type": "content_block_start", "index": index, "content_block": opened}
        yield _event("content_block_start", begin)
        for delta in deltas:
            step = {"type": "content_block_delta", "index": index, "delta": delta}
            yield _event("content_block_delta", step)
        yield _event("content_block_stop", {"type": "content_block_stop", "index": index})
    end = {"stop_reason": message["stop_reason"], "stop_sequence": None}
    usage = {"output_tokens": reply.output_tokens}
    yield _event("message_delta", {"type": "message_delta", "delta": end, "usage": usage})
    yield _event("message_stop", {"type": "message_stop"})


def _split(text: str, pieces: int) -> list[str]:
    """`text` in about `pieces` consecutive parts (none for empty text)."""
    if not text:
        return []
    size = max(1, math.ceil(len(text) / max(1, pieces)))
    return [text[i : i + size] for i in range(0, len(text), size)]


def _sse(data: dict[str, Any]) -> str:
    return f"data: {json.dumps(data)}\n\n"


def _event(name: str, data: dict[str, Any]) -> str:
    return f"event: {name}\ndata: {json.dumps(data)}\n\n"


@asynccontextmanager
async def llm_stand_in(**options: Any) -> AsyncIterator[LlmStandIn]:
    """Serve a fresh `LlmStandIn` on a free loopback port for the block."""
    stand_in = LlmStandIn(**options)
    async with serve(stand_in.app()) as url:
        stand_in.url = url
        yield stand_in
