"""LLM providers behind one interface, on pydantic-ai's direct model requests.

Two kinds of provider: ``openai`` speaks the OpenAI chat-completions protocol (OpenAI itself,
and through ``base_url`` Ollama, vLLM, llama.cpp and other compatible servers); ``anthropic``
speaks Anthropic's messages protocol. Everything here works the same for both:

- ``chat``: prompt in, text out, with token usage and the model that answered;
- ``stream``: the same as ``TextDelta``s as they arrive, then the ``ChatResult``;
- ``structured``: a JSON value checked against a JSON Schema, with a bounded repair round;
- ``chat_with_tools``: the tool loop. Only granted tools run; every model call and tool call
  is returned as a ``Step`` so callers can record what happened.

Every connection goes through ``PinnedTransport`` under the config's ``ssrf_policy``: each
request's host is resolved and checked, the connection goes to the checked address,
redirects are not followed and no proxy is read from the environment, so a base URL on a
public host cannot lead (by a redirect or a second DNS answer) to a private address.

Failures are ``LlmError`` subclasses whose messages never hold the API key. The tool loop
is our own rather than pydantic-ai's ``Agent``: it has to refuse, and record, a call to a
tool that was not granted (the prompt-injection case) without running anything.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import urlsplit

import anthropic
import httpx
import httpx2
import openai
from anthropic import AnthropicError, AsyncAnthropic
from openai import AsyncOpenAI, OpenAIError
from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator
from pydantic_ai import exceptions as ai_errors
from pydantic_ai.direct import model_request, model_request_stream
from pydantic_ai.messages import (
    ModelMessage,
    ModelRequest,
    ModelRequestPart,
    ModelResponse,
    PartDeltaEvent,
    PartStartEvent,
    SystemPromptPart,
    TextPart,
    TextPartDelta,
    ToolCallPart,
    ToolReturnPart,
    UserPromptPart,
)
from pydantic_ai.models import Model, ModelRequestParameters
from pydantic_ai.models.anthropic import AnthropicModel
from pydantic_ai.models.openai import OpenAIChatModel
from pydantic_ai.output import OutputObjectDefinition
from pydantic_ai.providers.anthropic import AnthropicProvider
from pydantic_ai.providers.openai import OpenAIProvider
from pydantic_ai.settings import ModelSettings
from pydantic_ai.tools import ToolDefinition

from klikkflow.ai import json_schema
from klikkflow.nodes.http import DENY_PRIVATE, SsrfPolicy, SsrfRefused, pin, resolve_checked

ProviderKind = Literal["openai", "anthropic"]
DEFAULT_BASE_URLS: dict[ProviderKind, str] = {
    "openai": "https://api.openai.com/v1",
    "anthropic": "https://api.anthropic.com",
}
# Credential type (klikkflow.nodes.credentials) -> provider kind.
CREDENTIAL_KINDS: dict[str, ProviderKind] = {"openAiApi": "openai", "anthropicApi": "anthropic"}
# Local OpenAI-compatible servers want no key, but the SDK wants one to send.
NO_KEY = "no-key"
PROVIDER_MESSAGE_LIMIT = 300


class LlmConfig(BaseModel):
    """Which model to ask, where, and how patiently. ``api_key`` is a ``SecretStr``: it
    prints as ``**********`` and no error message built here contains it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: ProviderKind
    model: str = Field(min_length=1, description="Model name as the provider knows it")
    api_key: SecretStr = SecretStr("")
    base_url: str | None = Field(
        None,
        pattern=r"^https?://\S+$",
        description="OpenAI-compatible: up to the version path (http://localhost:11434/v1);"
        " Anthropic: the host (https://api.anthropic.com). Unset: the provider's own.",
    )
    timeout: float = Field(60.0, gt=0, description="Seconds to wait for an answer")
    max_tokens: int | None = Field(None, gt=0, description="Longest answer, in tokens")
    temperature: float | None = Field(None, ge=0, le=2)
    max_retries: int = Field(2, ge=0, le=10, description="SDK retries on 429 / 5xx / network")
    ssrf_policy: SsrfPolicy = Field(
        DENY_PRIVATE,
        description="Which non-public addresses the model may be reached at (checked at"
        " every connection); by default none",
    )

    @model_validator(mode="after")
    def _anthropic_needs_a_key(self) -> LlmConfig:
        if self.kind == "anthropic" and not self.api_key.get_secret_value():
            raise ValueError("an Anthropic provider needs an API key")
        return self

    @property
    def url(self) -> str:
        return (self.base_url or DEFAULT_BASE_URLS[self.kind]).rstrip("/")

    @classmethod
    def from_credential(
        cls, credential_type: str, values: Mapping[str, Any], *, model: str, **options: Any
    ) -> LlmConfig:
        """A config from a decrypted ``openAiApi`` / ``anthropicApi`` credential."""
        if credential_type not in CREDENTIAL_KINDS:
            raise ValueError(f"credential type {credential_type!r} is not an LLM provider")
        return cls(
            kind=CREDENTIAL_KINDS[credential_type],
            model=model,
            api_key=SecretStr(str(values.get("apiKey") or "")),
            base_url=values.get("baseUrl") or None,
            **options,
        )


# ---- values in and out --------------------------------------------------------------------


@dataclass(frozen=True)
class Message:
    """One turn of a conversation handed to the model."""

    role: Literal["system", "user", "assistant"]
    content: str


Prompt = str | Sequence[Message]


@dataclass(frozen=True)
class Usage:
    input_tokens: int = 0
    output_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            self.input_tokens + other.input_tokens, self.output_tokens + other.output_tokens
        )


@dataclass(frozen=True)
class ChatResult:
    text: str
    usage: Usage
    model: str  # as the provider named it in its answer
    finish_reason: str | None = None


@dataclass(frozen=True)
class TextDelta:
    text: str


@dataclass(frozen=True)
class StructuredResult:
    data: Any
    usage: Usage  # over every attempt
    model: str
    attempts: int  # 1 when the first answer fitted


ToolFunction = Callable[[dict[str, Any]], Awaitable[Any]]


@dataclass(frozen=True)
class Tool:
    """A tool granted to the model: ``parameters`` is the JSON Schema of its arguments
    (an object), ``run`` gets the checked arguments and returns something JSON-able."""

    name: str
    description: str
    parameters: dict[str, Any]
    run: ToolFunction


@dataclass(frozen=True)
class ToolCallRequest:
    id: str
    name: str
    arguments: dict[str, Any] | str  # str: what the model sent was not a JSON object


@dataclass(frozen=True)
class ModelStep:
    """One model call: its text and the tools it asked for."""

    text: str
    tool_calls: tuple[ToolCallRequest, ...]
    usage: Usage
    model: str
    kind: Literal["model"] = "model"


ToolOutcome = Literal["ok", "failed", "invalid", "refused"]


@dataclass(frozen=True)
class ToolStep:
    """One tool call and what came of it: ``ok`` (ran, ``result``), ``failed`` (ran and
    raised, ``error``), ``invalid`` (arguments broke the tool's schema: not run) or
    ``refused`` (the tool was not granted: nothing ran)."""

    call_id: str
    name: str
    arguments: dict[str, Any] | str
    outcome: ToolOutcome
    result: Any = None
    error: str | None = None
    kind: Literal["tool"] = "tool"


Step = ModelStep | ToolStep


@dataclass(frozen=True)
class AgentResult:
    text: str
    steps: list[Step]
    usage: Usage
    model: str


# ---- errors -------------------------------------------------------------------------------


class LlmError(Exception):
    """A model could not give a usable answer. The message is safe to show and log: it
    never holds the API key. ``steps`` and ``usage`` say what happened before (tool loop)."""

    def __init__(self, message: str, *, provider: str = "", model: str = "") -> None:
        super().__init__(message)
        self.provider = provider
        self.model = model
        self.steps: list[Step] = []
        self.usage = Usage()


class LlmTimeout(LlmError):
    def __init__(self, seconds: float, *, provider: str = "", model: str = "") -> None:
        super().__init__(f"no answer within {seconds:g} s", provider=provider, model=model)
        self.seconds = seconds


class LlmProviderError(LlmError):
    """The provider refused or failed the request (``status`` set) or could not be reached."""

    def __init__(
        self, message: str, *, status: int | None = None, provider: str = "", model: str = ""
    ) -> None:
        super().__init__(message, provider=provider, model=model)
        self.status = status


class LlmDestinationRefused(LlmProviderError):
    """The model's address is one the SSRF policy refuses: no request was sent to it.
    ``refusal`` says which (``refused to connect to host (address): loopback address``)."""

    def __init__(
        self, message: str, *, refusal: str, reason: str, provider: str = "", model: str = ""
    ) -> None:
        super().__init__(message, provider=provider, model=model)
        self.refusal, self.reason = refusal, reason


class LlmMalformedAnswer(LlmError):
    """The answer was not what was asked for (not JSON, or not fitting the schema)."""

    def __init__(
        self, message: str, *, problems: Sequence[str] = (), provider: str = "", model: str = ""
    ) -> None:
        super().__init__(message, provider=provider, model=model)
        self.problems = list(problems)


class LlmIterationLimit(LlmError):
    def __init__(self, limit: int, *, provider: str = "", model: str = "") -> None:
        message = f"the model still wanted tools after {limit} model calls"
        super().__init__(message, provider=provider, model=model)
        self.limit = limit


# ---- the interface ------------------------------------------------------------------------


async def chat(config: LlmConfig, prompt: Prompt, *, system: str | None = None) -> ChatResult:
    """Ask once; the text answer with its token usage."""
    async with _model(config) as model:
        response = await _request(config, model, _messages(prompt, system))
    return ChatResult(
        text=_text(response),
        usage=_usage(response),
        model=response.model_name or config.model,
        finish_reason=response.finish_reason,
    )


async def stream(
    config: LlmConfig, prompt: Prompt, *, system: str | None = None
) -> AsyncIterator[TextDelta | ChatResult]:
    """Ask once, streaming: ``TextDelta``s as the answer arrives, then one ``ChatResult``
    with the whole text and the usage."""
    settings = _settings(config) | {"first_event_timeout": config.timeout}
    async with _model(config) as model:
        try:
            async with model_request_stream(
                model, _messages(prompt, system), model_settings=settings
            ) as answer:
                async for event in answer:
                    if piece := _delta_text(event):
                        yield TextDelta(piece)
                response = answer.get()
        except Exception as exc:
            raise _translated(exc, config) from None
    yield ChatResult(
        text=_text(response),
        usage=_usage(response),
        model=response.model_name or config.model,
        finish_reason=response.finish_reason,
    )


async def structured(
    config: LlmConfig,
    prompt: Prompt,
    schema: dict[str, Any],
    *,
    system: str | None = None,
    name: str = "answer",
    repairs: int = 1,
) -> StructuredResult:
    """A JSON value fitting ``schema`` (an object schema). An answer that is not JSON or
    does not fit is sent back with the problems, at most ``repairs`` times; then
    ``LlmMalformedAnswer`` lists what was wrong with the last one."""
    if repairs < 0:
        raise ValueError("repairs cannot be negative")
    messages = _messages(prompt, system)
    usage = Usage()
    problems: list[str] = []
    async with _model(config) as model:
        parameters = _output_parameters(model, schema, name)
        for attempt in range(1, repairs + 2):
            response = await _request(config, model, messages, parameters)
            usage += _usage(response)
            data, problems = _parsed(_text(response), schema)
            if not problems:
                return StructuredResult(data, usage, response.model_name or config.model, attempt)
            messages += [response, ModelRequest(parts=[UserPromptPart(_repair_note(problems))])]
    error = LlmMalformedAnswer(
        f"the answer did not fit the schema after {repairs + 1} attempts: "
        + "; ".join(problems[:5]),
        problems=problems,
        provider=config.kind,
        model=config.model,
    )
    error.usage = usage
    raise error


async def chat_with_tools(
    config: LlmConfig,
    prompt: Prompt,
    tools: Sequence[Tool],
    *,
    system: str | None = None,
    max_iterations: int = 5,
) -> AgentResult:
    """The tool loop: ask, run the granted tools the model calls, hand back their results,
    until the model answers without calling a tool, or ``max_iterations`` model calls were
    made (``LlmIterationLimit``; the last call's tools are not run). A call naming a tool
    not in ``tools`` runs nothing and is recorded as ``refused``; arguments that break a
    tool's schema are ``invalid``. Either way the model is told, and may go on. Errors
    carry the steps made so far."""
    if max_iterations < 1:
        raise ValueError("max_iterations must be at least 1")
    granted = {tool.name: tool for tool in tools}
    if len(granted) != len(tools):
        raise ValueError("two tools have the same name")
    parameters = ModelRequestParameters(function_tools=[_definition(t) for t in tools])
    messages = _messages(prompt, system)
    steps: list[Step] = []
    usage = Usage()
    try:
        async with _model(config) as model:
            for iteration in range(1, max_iterations + 1):
                response = await _request(config, model, messages, parameters)
                usage += _usage(response)
                step = _model_step(response, config)
                steps.append(step)
                if not step.tool_calls:
                    return AgentResult(step.text, steps, usage, step.model)
                if iteration == max_iterations:
                    break  # no model call is left to read what the tools would return
                returns = [await _run_call(call, granted, steps) for call in step.tool_calls]
                messages += [response, ModelRequest(parts=returns)]
        raise LlmIterationLimit(max_iterations, provider=config.kind, model=config.model)
    except LlmError as error:
        error.steps, error.usage = steps, usage
        raise


async def list_models(config: LlmConfig) -> list[str]:
    """The model names the provider offers with this key (also a cheap credential check)."""
    async with _client(config) as client:
        try:
            page = await client.models.list()
            return [m.id for m in page.data]
        except Exception as exc:
            raise _translated(exc, config) from None


# ---- requests -----------------------------------------------------------------------------


class _Refused(SsrfRefused, OpenAIError, AnthropicError):
    """A refusal both SDKs pass on as it is: they retry connection errors, not their own."""


class PinnedTransport(httpx2.AsyncBaseTransport):
    """``klikkflow.nodes.http.PinnedTransport`` for the ``httpx2`` the model SDKs are built
    on: resolves each request's host, refuses addresses the policy does not allow, and
    connects to the very address it checked (Host header and TLS SNI keep the name)."""

    def __init__(self, policy: SsrfPolicy) -> None:
        self.policy = policy
        self._inner: dict[tuple[str, str], httpx2.AsyncHTTPTransport] = {}

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        url = request.url
        if url.scheme not in ("http", "https"):
            raise httpx2.UnsupportedProtocol(f"unsupported URL scheme {url.scheme!r}")
        host, port = url.host, url.port or (443 if url.scheme == "https" else 80)
        try:
            address = await resolve_checked(host, port, self.policy)
        except httpx.ConnectError as exc:  # the name does not resolve
            raise httpx2.ConnectError(str(exc), request=request) from None
        except SsrfRefused as exc:
            raise _Refused(exc.host, exc.address, exc.reason) from None
        # One pool per (name, address): a TLS connection is never reused for another name.
        inner = self._inner.get((host, address))
        if inner is None:
            inner = self._inner[(host, address)] = httpx2.AsyncHTTPTransport()
        pinned_url, extensions = pin(url, address, request.extensions)
        pinned = httpx2.Request(
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


@asynccontextmanager
async def _client(config: LlmConfig) -> AsyncIterator[AsyncOpenAI | AsyncAnthropic]:
    key = config.api_key.get_secret_value()
    http_client = httpx2.AsyncClient(
        transport=PinnedTransport(config.ssrf_policy),
        follow_redirects=False,
        trust_env=False,
        timeout=config.timeout,
    )
    options: dict[str, Any] = {
        "timeout": config.timeout,
        "max_retries": config.max_retries,
        "http_client": http_client,
    }
    client: AsyncOpenAI | AsyncAnthropic
    try:
        if config.kind == "openai":
            client = AsyncOpenAI(api_key=key or NO_KEY, base_url=config.url, **options)
        else:
            client = AsyncAnthropic(api_key=key, base_url=config.url, **options)
    except BaseException:
        await http_client.aclose()
        raise
    try:
        yield client
    finally:
        await client.close()  # closes http_client too


@asynccontextmanager
async def _model(config: LlmConfig) -> AsyncIterator[Model]:
    async with _client(config) as client:
        if isinstance(client, AsyncOpenAI):
            yield OpenAIChatModel(config.model, provider=OpenAIProvider(openai_client=client))
        else:
            yield AnthropicModel(config.model, provider=AnthropicProvider(anthropic_client=client))


def _settings(config: LlmConfig) -> ModelSettings:
    settings = ModelSettings(timeout=config.timeout, max_retries=config.max_retries)
    if config.max_tokens is not None:
        settings["max_tokens"] = config.max_tokens
    if config.temperature is not None:
        settings["temperature"] = config.temperature
    return settings


async def _request(
    config: LlmConfig,
    model: Model,
    messages: list[ModelMessage],
    parameters: ModelRequestParameters | None = None,
) -> ModelResponse:
    # The overall deadline covers every SDK retry; `timeout` limits each attempt.
    deadline = config.timeout * (config.max_retries + 1)
    settings = _settings(config) | {"request_timeout": deadline}
    try:
        return await model_request(
            model, messages, model_settings=settings, model_request_parameters=parameters
        )
    except Exception as exc:
        raise _translated(exc, config) from None


def _messages(prompt: Prompt, system: str | None) -> list[ModelMessage]:
    turns = [Message("user", prompt)] if isinstance(prompt, str) else list(prompt)
    if system:
        turns.insert(0, Message("system", system))
    messages: list[ModelMessage] = []
    pending: list[ModelRequestPart] = []
    for turn in turns:
        if turn.role == "assistant":
            if pending:
                messages.append(ModelRequest(parts=pending))
                pending = []
            messages.append(ModelResponse(parts=[TextPart(turn.content)]))
        elif turn.role == "system":
            pending.append(SystemPromptPart(turn.content))
        else:
            pending.append(UserPromptPart(turn.content))
    if pending:
        messages.append(ModelRequest(parts=pending))
    if not messages or not isinstance(messages[-1], ModelRequest):
        raise ValueError("the conversation must end with a user or system message")
    return messages


def _text(response: ModelResponse) -> str:
    return "".join(part.content for part in response.parts if isinstance(part, TextPart))


def _usage(response: ModelResponse) -> Usage:
    return Usage(response.usage.input_tokens or 0, response.usage.output_tokens or 0)


def _delta_text(event: object) -> str:
    if isinstance(event, PartStartEvent) and isinstance(event.part, TextPart):
        return event.part.content
    if isinstance(event, PartDeltaEvent) and isinstance(event.delta, TextPartDelta):
        return event.delta.content_delta
    return ""


# ---- structured output --------------------------------------------------------------------


def _output_parameters(model: Model, schema: dict[str, Any], name: str) -> ModelRequestParameters:
    """The provider's own JSON-Schema output where the model has it (OpenAI-compatible
    ``response_format``), else the schema in the instructions."""
    if schema.get("type") != "object":
        raise ValueError("a structured answer's schema must be an object schema")
    mode: Literal["native", "prompted"] = (
        "native" if model.profile.get("supports_json_schema_output") else "prompted"
    )
    return ModelRequestParameters(
        output_mode=mode,
        output_object=OutputObjectDefinition(json_schema=schema, name=name),
        allow_text_output=False,
    )


_FENCE = re.compile(r"^\s*```(?:json)?\s*\n?(.*?)\n?```\s*$", re.DOTALL)


def _parsed(text: str, schema: dict[str, Any]) -> tuple[Any, list[str]]:
    fenced = _FENCE.match(text)
    try:
        data = json.loads(fenced.group(1) if fenced else text)
    except json.JSONDecodeError as exc:
        return None, [f"the answer is not JSON ({exc.msg} at character {exc.pos})"]
    return data, json_schema.problems(data, schema)


def _repair_note(problems: Sequence[str]) -> str:
    listed = "\n".join(f"- {p}" for p in problems[:20])
    return (
        "Your previous answer could not be used:\n"
        f"{listed}\n"
        "Answer again with only the JSON value that fits the schema, no other text."
    )


# ---- tools --------------------------------------------------------------------------------


def _definition(tool: Tool) -> ToolDefinition:
    return ToolDefinition(
        name=tool.name, description=tool.description, parameters_json_schema=tool.parameters
    )


def _model_step(response: ModelResponse, config: LlmConfig) -> ModelStep:
    calls = tuple(
        ToolCallRequest(part.tool_call_id, part.tool_name, _arguments(part))
        for part in response.parts
        if isinstance(part, ToolCallPart)
    )
    model = response.model_name or config.model
    return ModelStep(_text(response), calls, _usage(response), model)


def _arguments(part: ToolCallPart) -> dict[str, Any] | str:
    try:
        return part.args_as_dict(raise_if_invalid=True)
    except (ValueError, AssertionError):
        return part.args if isinstance(part.args, str) else repr(part.args)


async def _run_call(
    call: ToolCallRequest, granted: Mapping[str, Tool], steps: list[Step]
) -> ToolReturnPart:
    """Run one call if it may run; record it; the answer for the model."""
    step = await _outcome(call, granted)
    steps.append(step)
    if step.outcome == "ok":
        return ToolReturnPart(call.name, step.result, call.id)
    outcome: Literal["denied", "failed"] = "denied" if step.outcome == "refused" else "failed"
    return ToolReturnPart(call.name, step.error, call.id, outcome=outcome)


async def _outcome(call: ToolCallRequest, granted: Mapping[str, Tool]) -> ToolStep:
    tool = granted.get(call.name)
    if tool is None:
        offered = ", ".join(sorted(granted)) or "none"
        error = f"tool {call.name!r} is not available; the tools you may call: {offered}"
        return ToolStep(call.id, call.name, call.arguments, "refused", error=error)
    if isinstance(call.arguments, str):
        error = "the arguments are not a JSON object"
        return ToolStep(call.id, call.name, call.arguments, "invalid", error=error)
    if problems := json_schema.problems(call.arguments, tool.parameters):
        error = "the arguments do not fit the tool's schema: " + "; ".join(problems[:10])
        return ToolStep(call.id, call.name, call.arguments, "invalid", error=error)
    try:
        result = await tool.run(call.arguments)
    except Exception as exc:
        error = f"the tool failed: {type(exc).__name__}: {exc}"
        return ToolStep(call.id, call.name, call.arguments, "failed", error=error)
    return ToolStep(call.id, call.name, call.arguments, "ok", result=result)


# ---- errors from the SDKs -----------------------------------------------------------------


def _translated(exc: Exception, config: LlmConfig) -> LlmError:
    """Our error for a pydantic-ai / SDK one, its message scrubbed of the key."""
    provider, model = config.kind, config.model
    said = f"{provider} model {model!r} at {_public_url(config.url)}"
    if isinstance(exc, LlmError):
        return exc
    if (refused := _refusal(exc)) is not None:
        return LlmDestinationRefused(
            f"{said} is refused: {refused}",
            refusal=str(refused),
            reason=refused.reason,
            provider=provider,
            model=model,
        )
    if isinstance(exc, ai_errors.ModelTimeoutError | ai_errors.ModelRequestTimeout):
        return LlmTimeout(config.timeout, provider=provider, model=model)
    if isinstance(exc, ai_errors.ModelHTTPError):
        detail = _provider_message(exc.body, config)
        message = f"{said} answered HTTP {exc.status_code}" + (f": {detail}" if detail else "")
        return LlmProviderError(message, status=exc.status_code, provider=provider, model=model)
    if (status := _sdk_status(exc)) is not None and 300 <= status < 400:
        message = f"{said} answered HTTP {status}, a redirect, which is not followed"
        return LlmProviderError(message, status=status, provider=provider, model=model)
    if isinstance(exc, ai_errors.ModelConnectionError):
        return LlmProviderError(f"{said} could not be reached", provider=provider, model=model)
    if isinstance(exc, ai_errors.ModelAPIError | ai_errors.UnexpectedModelBehavior):
        message = f"{said} gave an answer that could not be read: {_scrubbed(str(exc), config)}"
        return LlmMalformedAnswer(message, provider=provider, model=model)
    message = f"{said} failed: {type(exc).__name__}"
    return LlmProviderError(message, provider=provider, model=model)


def _causes(exc: BaseException) -> Iterator[BaseException]:
    """The error and those it was raised from (pydantic-ai wraps the SDKs' errors)."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        yield current
        seen.add(id(current))
        current = current.__cause__ or current.__context__


def _refusal(exc: BaseException) -> SsrfRefused | None:
    """The transport's SSRF refusal behind an SDK / pydantic-ai error, if that is what it is."""
    return next((e for e in _causes(exc) if isinstance(e, SsrfRefused)), None)


def _sdk_status(exc: BaseException) -> int | None:
    """The HTTP status of the SDK error behind a pydantic-ai one (it wraps only 4xx / 5xx
    as ``ModelHTTPError``; a redirect is a bare ``ModelAPIError``)."""
    statuses = (openai.APIStatusError, anthropic.APIStatusError)
    return next((e.status_code for e in _causes(exc) if isinstance(e, statuses)), None)


def _provider_message(body: object, config: LlmConfig) -> str:
    """The provider's own error message, if its body has one (OpenAI and Anthropic nest it)."""
    for candidate in (body, (body or {}).get("error") if isinstance(body, dict) else None):
        if isinstance(candidate, dict) and isinstance(candidate.get("message"), str):
            return _scrubbed(candidate["message"], config)
    return ""


def _scrubbed(text: str, config: LlmConfig) -> str:
    key = config.api_key.get_secret_value()
    if key:
        text = text.replace(key, "[redacted]")
    return text[:PROVIDER_MESSAGE_LIMIT]


def _public_url(url: str) -> str:
    """The URL without user info, query or fragment (they may hold credentials)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}{parts.path}"


__all__ = [
    "CREDENTIAL_KINDS",
    "AgentResult",
    "ChatResult",
    "LlmConfig",
    "LlmDestinationRefused",
    "LlmError",
    "LlmIterationLimit",
    "LlmMalformedAnswer",
    "LlmProviderError",
    "LlmTimeout",
    "Message",
    "ModelStep",
    "PinnedTransport",
    "StructuredResult",
    "TextDelta",
    "Tool",
    "ToolCallRequest",
    "ToolStep",
    "Usage",
    "chat",
    "chat_with_tools",
    "list_models",
    "stream",
    "structured",
]
