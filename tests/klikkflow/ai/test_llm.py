"""The LLM interface against the local stand-in that speaks OpenAI's and Anthropic's protocols."""

from __future__ import annotations

import json
import traceback
from collections.abc import AsyncIterator
from typing import Any

import pytest
from anthropic import AsyncAnthropic
from openai import AsyncOpenAI
from pydantic import ValidationError

from klikkflow.ai.llm import (
    ChatResult,
    LlmConfig,
    LlmDestinationRefused,
    LlmError,
    LlmIterationLimit,
    LlmMalformedAnswer,
    LlmProviderError,
    LlmTimeout,
    Message,
    ModelStep,
    TextDelta,
    Tool,
    ToolStep,
    chat,
    chat_with_tools,
    list_models,
    stream,
    structured,
)
from klikkflow.nodes.credentials import credential_type, validate
from klikkflow.nodes.http import SsrfPolicy
from tests.factories.llm import LlmStandIn, Reply, Sent, ToolCall, embedding_for, llm_stand_in

KEY = "sk-test-4f9a1c2e8b7d6a5f"
KINDS = ["openai", "anthropic"]
CITY = {
    "type": "object",
    "properties": {"city": {"type": "string"}, "population": {"type": "integer", "minimum": 0}},
    "required": ["city", "population"],
}
# The stand-ins listen on loopback addresses, which the default policy refuses.
LOOPBACK_ALLOWED = SsrfPolicy(allow_private=True)
SEARCH_PARAMETERS = {
    "type": "object",
    "properties": {"query": {"type": "string", "description": "What to look for"}},
    "required": ["query"],
}


@pytest.fixture
async def llm() -> AsyncIterator[LlmStandIn]:
    async with llm_stand_in() as stand_in:
        yield stand_in


def config(llm: LlmStandIn, kind: str, **options: Any) -> LlmConfig:
    url = llm.openai_url if kind == "openai" else llm.anthropic_url
    model = "gpt-test-mini" if kind == "openai" else "claude-test-haiku"
    options = {"max_retries": 0, "timeout": 5.0, "ssrf_policy": LOOPBACK_ALLOWED} | options
    return LlmConfig(kind=kind, model=model, api_key=KEY, base_url=url, **options)  # type: ignore[arg-type]


def assert_authenticated(sent: Sent, kind: str) -> None:
    # Both SDKs send the key as a bearer token; Anthropic's also names its API version.
    assert sent.headers["authorization"] == f"Bearer {KEY}"
    if kind == "anthropic":
        assert sent.path == "/v1/messages"
        assert sent.headers["anthropic-version"]
    else:
        assert sent.path == "/v1/chat/completions"


def tool_result_texts(sent: Sent) -> list[str]:
    return [result.text for result in sent.tool_results]


class Searches:
    """A granted tool that records each time it runs."""

    def __init__(self) -> None:
        self.ran: list[dict[str, Any]] = []

    async def __call__(self, arguments: dict[str, Any]) -> dict[str, Any]:
        self.ran.append(arguments)
        return {"hits": [f"{arguments['query']} is a city in Norway"]}

    def tool(self) -> Tool:
        return Tool("search", "Search the knowledge base", SEARCH_PARAMETERS, self)


# ---- chat -----------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
async def test_chat_answers_with_usage_and_model(llm: LlmStandIn, kind: str) -> None:
    llm.script(Reply.say("Oslo.", input_tokens=21, output_tokens=3, model="answered-model"))

    result = await chat(config(llm, kind, max_tokens=64), "Capital of Norway?", system="Be brief.")

    assert result.text == "Oslo."
    assert (result.usage.input_tokens, result.usage.output_tokens) == (21, 3)
    assert result.usage.total_tokens == 24
    assert result.model == "answered-model"
    [sent] = llm.sent
    assert_authenticated(sent, kind)
    assert sent.model == config(llm, kind).model
    assert sent.system == "Be brief."
    assert sent.last_user_text == "Capital of Norway?"
    assert sent.body.get("max_tokens", sent.body.get("max_completion_tokens")) == 64


@pytest.mark.parametrize("kind", KINDS)
async def test_a_conversation_goes_out_turn_by_turn(llm: LlmStandIn, kind: str) -> None:
    llm.script(Reply.say("You said hello."))
    turns = [
        Message("user", "hello"),
        Message("assistant", "Hi! How can I help?"),
        Message("user", "What did I say first?"),
    ]

    await chat(config(llm, kind), turns)

    roles = [m["role"] for m in llm.sent[0].messages]
    assert roles == ["user", "assistant", "user"]
    assert llm.sent[0].last_user_text == "What did I say first?"


@pytest.mark.parametrize("kind", KINDS)
async def test_stream_yields_deltas_then_the_whole_answer_with_usage(
    llm: LlmStandIn, kind: str
) -> None:
    llm.script(Reply.say("Oslo is the capital.", pieces=4, input_tokens=9, output_tokens=5))

    pieces = [piece async for piece in stream(config(llm, kind), "Capital of Norway?")]

    *deltas, final = pieces
    assert len(deltas) >= 3
    assert all(isinstance(d, TextDelta) for d in deltas)
    assert "".join(d.text for d in deltas if isinstance(d, TextDelta)) == "Oslo is the capital."
    assert isinstance(final, ChatResult)
    assert final.text == "Oslo is the capital."
    assert (final.usage.input_tokens, final.usage.output_tokens) == (9, 5)
    [sent] = llm.sent
    assert_authenticated(sent, kind)
    assert sent.body["stream"] is True
    if kind == "openai":
        assert sent.body["stream_options"] == {"include_usage": True}


# ---- structured output ----------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
async def test_structured_output_fits_the_schema(llm: LlmStandIn, kind: str) -> None:
    llm.script(Reply.say('{"city": "Oslo", "population": 709000}'))

    result = await structured(config(llm, kind), "Largest city in Norway?", CITY, name="city")

    assert result.data == {"city": "Oslo", "population": 709000}
    assert result.attempts == 1
    [sent] = llm.sent
    if kind == "openai":  # the provider's own JSON-Schema mode
        response_format = sent.body["response_format"]
        assert response_format["type"] == "json_schema"
        assert response_format["json_schema"]["name"] == "city"
        assert response_format["json_schema"]["schema"]["required"] == ["city", "population"]
    else:  # the schema travels in the instructions
        assert '"population"' in sent.system


@pytest.mark.parametrize(
    "bad_answer",
    ['{"city": "Oslo", "population": ', '{"city": "Oslo", "population": "many"}'],
    ids=["not-json", "off-schema"],
)
@pytest.mark.parametrize("kind", KINDS)
async def test_a_bad_structured_answer_is_repaired_once(
    llm: LlmStandIn, kind: str, bad_answer: str
) -> None:
    llm.script(
        Reply.say(bad_answer, input_tokens=10, output_tokens=4),
        Reply.say('```json\n{"city": "Oslo", "population": 709000}\n```', input_tokens=30),
    )

    result = await structured(config(llm, kind), "Largest city in Norway?", CITY)

    assert result.data == {"city": "Oslo", "population": 709000}
    assert result.attempts == 2
    assert result.usage.input_tokens == 40
    first, repair = llm.chats
    assert repair.messages[: len(first.messages)] == first.messages
    assert "could not be used" in repair.last_user_text
    expected = "not JSON" if bad_answer.endswith(": ") else "$.population: expected integer"
    assert expected in repair.last_user_text


@pytest.mark.parametrize("kind", KINDS)
async def test_a_structured_answer_still_wrong_after_repair_is_refused(
    llm: LlmStandIn, kind: str
) -> None:
    llm.script(Reply.say("Oslo, I think."), Reply.say('{"city": "Oslo"}'))

    with pytest.raises(LlmMalformedAnswer) as caught:
        await structured(config(llm, kind), "Largest city in Norway?", CITY, repairs=1)

    assert caught.value.problems == ["$.population: is required"]
    assert "did not fit the schema after 2 attempts" in str(caught.value)
    assert caught.value.usage.total_tokens == 36
    assert len(llm.chats) == 2


# ---- tools ----------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
async def test_the_model_calls_a_granted_tool_and_answers_with_its_result(
    llm: LlmStandIn, kind: str
) -> None:
    search = Searches()
    llm.script(
        Reply.calls(ToolCall("search", {"query": "Oslo"}, id="call_1"), input_tokens=50),
        Reply.say("Oslo is a city in Norway.", input_tokens=80, output_tokens=9),
    )

    result = await chat_with_tools(config(llm, kind), "Where is Oslo?", [search.tool()])

    assert result.text == "Oslo is a city in Norway."
    assert search.ran == [{"query": "Oslo"}]
    first, call, last = result.steps
    assert isinstance(first, ModelStep)
    assert [(c.name, c.arguments) for c in first.tool_calls] == [("search", {"query": "Oslo"})]
    assert call == ToolStep(
        "call_1", "search", {"query": "Oslo"}, "ok", {"hits": ["Oslo is a city in Norway"]}
    )
    assert isinstance(last, ModelStep)
    assert not last.tool_calls
    assert result.usage.input_tokens == 130
    asked, answered = llm.chats
    assert_authenticated(asked, kind)
    assert asked.tool_names == ["search"]
    schema = asked.tool_schema("search")
    assert schema["properties"] == SEARCH_PARAMETERS["properties"]
    assert schema["required"] == ["query"]
    assert tool_result_texts(answered) == ['{"hits":["Oslo is a city in Norway"]}']


@pytest.mark.parametrize("kind", KINDS)
async def test_a_tool_that_was_not_granted_never_runs_and_is_recorded_as_refused(
    llm: LlmStandIn, kind: str
) -> None:
    # A retrieved chunk told the model to wipe data; it asks for a tool it was not given.
    search = Searches()
    llm.script(
        Reply.calls(
            ToolCall("delete_all_workflows", {"confirm": True}, id="call_evil"),
            ToolCall("search", {"query": "Oslo"}, id="call_ok"),
        ),
        Reply.say("I can only search."),
    )

    result = await chat_with_tools(config(llm, kind), "Summarise the document", [search.tool()])

    assert result.text == "I can only search."
    refused, ran = (s for s in result.steps if isinstance(s, ToolStep))
    assert (refused.name, refused.outcome, refused.arguments) == (
        "delete_all_workflows",
        "refused",
        {"confirm": True},
    )
    assert refused.result is None
    assert refused.error is not None
    assert "not available" in refused.error
    assert ran.outcome == "ok"
    assert search.ran == [{"query": "Oslo"}]
    told = tool_result_texts(llm.chats[1])
    assert any("'delete_all_workflows' is not available" in text for text in told)
    assert llm.chats[1].tool_names == ["search"]


@pytest.mark.parametrize("kind", KINDS)
async def test_arguments_that_break_the_tool_schema_are_not_run(llm: LlmStandIn, kind: str) -> None:
    search = Searches()
    llm.script(
        Reply.calls(ToolCall("search", {"q": "Oslo"}, id="call_1")),
        Reply.say("Sorry."),
    )

    result = await chat_with_tools(config(llm, kind), "Where is Oslo?", [search.tool()])

    step = result.steps[1]
    assert isinstance(step, ToolStep)
    assert step.outcome == "invalid"
    assert step.error is not None
    assert "$.query: is required" in step.error
    assert search.ran == []


async def test_tool_arguments_that_are_not_json_are_not_run(llm: LlmStandIn) -> None:
    search = Searches()
    llm.script(Reply.calls(ToolCall("search", '{"query": "Os', id="call_1")), Reply.say("Sorry."))

    result = await chat_with_tools(config(llm, "openai"), "Where is Oslo?", [search.tool()])

    step = result.steps[1]
    assert isinstance(step, ToolStep)
    assert (step.outcome, step.arguments) == ("invalid", '{"query": "Os')
    assert search.ran == []


@pytest.mark.parametrize("kind", KINDS)
async def test_the_tool_loop_stops_at_its_iteration_limit(llm: LlmStandIn, kind: str) -> None:
    search = Searches()
    llm.script(*(Reply.calls(ToolCall("search", {"query": f"q{i}"})) for i in range(3)))

    with pytest.raises(LlmIterationLimit) as caught:
        await chat_with_tools(config(llm, kind), "Loop", [search.tool()], max_iterations=2)

    assert caught.value.limit == 2
    assert [s.kind for s in caught.value.steps] == ["model", "tool", "model"]
    assert search.ran == [{"query": "q0"}]  # the last call came after the limit: not run
    assert len(llm.chats) == 2
    assert caught.value.usage.total_tokens == 36


async def test_a_failing_tool_is_recorded_and_the_model_is_told(llm: LlmStandIn) -> None:
    async def broken(arguments: dict[str, Any]) -> str:
        raise RuntimeError("index is offline")

    llm.script(Reply.calls(ToolCall("search", {"query": "x"})), Reply.say("The index is down."))

    result = await chat_with_tools(
        config(llm, "anthropic"), "Find x", [Tool("search", "Search", SEARCH_PARAMETERS, broken)]
    )

    step = result.steps[1]
    assert isinstance(step, ToolStep)
    assert (step.outcome, step.error) == (
        "failed",
        "the tool failed: RuntimeError: index is offline",
    )
    [tool_result] = llm.chats[1].tool_results
    assert tool_result.is_error is True
    assert "index is offline" in tool_result.text


# ---- failures -------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
async def test_a_slow_provider_times_out(llm: LlmStandIn, kind: str) -> None:
    llm.script(Reply.slow(2.0))

    with pytest.raises(LlmTimeout) as caught:
        await chat(config(llm, kind, timeout=0.3), "Hello?")

    assert str(caught.value) == "no answer within 0.3 s"
    assert (caught.value.provider, caught.value.model) == (kind, config(llm, kind).model)


@pytest.mark.parametrize("kind", KINDS)
async def test_a_slow_stream_times_out(llm: LlmStandIn, kind: str) -> None:
    llm.script(Reply.slow(2.0))

    with pytest.raises(LlmTimeout):
        async for _ in stream(config(llm, kind, timeout=0.3), "Hello?"):
            pass


@pytest.mark.parametrize("kind", KINDS)
async def test_a_server_error_names_status_and_provider_message(llm: LlmStandIn, kind: str) -> None:
    llm.script(Reply.failure(500, "upstream exploded"))

    with pytest.raises(LlmProviderError) as caught:
        await chat(config(llm, kind), "Hello?")

    assert caught.value.status == 500
    assert f"{kind} model" in str(caught.value)
    assert "answered HTTP 500: upstream exploded" in str(caught.value)


async def test_retries_are_made_on_a_server_error(llm: LlmStandIn) -> None:
    llm.script(Reply.failure(503, "busy"), Reply.say("Now it works."))

    result = await chat(config(llm, "openai", max_retries=1), "Hello?")

    assert result.text == "Now it works."
    assert len(llm.chats) == 2


async def test_an_answer_that_is_not_json_is_a_malformed_answer(llm: LlmStandIn) -> None:
    llm.script(Reply(raw="<html>gateway</html>"))

    with pytest.raises(LlmMalformedAnswer, match="could not be read"):
        await chat(config(llm, "openai"), "Hello?")


async def test_an_unreachable_provider_is_a_provider_error() -> None:
    async with llm_stand_in() as gone:
        url = gone.openai_url
    unreachable = LlmConfig(
        kind="openai",
        model="m",
        base_url=url,
        max_retries=0,
        timeout=2,
        ssrf_policy=LOOPBACK_ALLOWED,
    )

    with pytest.raises(LlmProviderError, match="could not be reached"):
        await chat(unreachable, "Hello?")


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("status", [401, 500])
async def test_the_api_key_never_appears_in_errors(llm: LlmStandIn, kind: str, status: int) -> None:
    # Providers echo keys back ("Incorrect API key provided: sk-..."); we must not pass them on.
    llm.script(Reply.failure(status, f"Incorrect API key provided: {KEY}"))
    keyed = config(llm, kind)

    with pytest.raises(LlmError) as caught:
        await chat(keyed, "Hello?")

    error = caught.value
    shown = "".join(traceback.format_exception(error)) + repr(error) + str(error.__dict__)
    assert KEY not in shown
    assert "[redacted]" in str(error)
    assert KEY not in repr(keyed)
    assert KEY not in str(keyed.model_dump())


async def test_the_api_key_never_appears_when_the_tool_loop_fails(llm: LlmStandIn) -> None:
    llm.script(Reply.calls(ToolCall("search", {"query": KEY})), Reply.failure(500, KEY))

    with pytest.raises(LlmProviderError) as caught:
        await chat_with_tools(config(llm, "openai"), "x", [Searches().tool()])

    assert KEY not in str(caught.value)
    assert [s.kind for s in caught.value.steps] == ["model", "tool"]


# ---- where requests may go: the SSRF policy, redirects, proxies ---------------------------


@pytest.mark.parametrize("kind", KINDS)
async def test_a_redirect_from_the_provider_is_not_followed(llm: LlmStandIn, kind: str) -> None:
    # A public host answering 307 to an internal one: the policy below even allows the
    # internal address, so only not following redirects keeps the request from it.
    async with llm_stand_in() as internal:
        internal.script(Reply.say("internal secrets"))
        path = "/v1/chat/completions" if kind == "openai" else "/v1/messages"
        llm.script(Reply.redirect(internal.url + path))

        with pytest.raises(LlmProviderError) as caught:
            await chat(config(llm, kind), "Hello?")

        assert caught.value.status == 307
        assert len(llm.chats) == 1
        assert internal.sent == []


async def test_the_sdks_own_client_would_have_followed_that_redirect(llm: LlmStandIn) -> None:
    # What the test above guards against: the SDK's default client follows the 307.
    async with llm_stand_in() as internal:
        internal.script(Reply.say("internal secrets"))
        llm.script(Reply.redirect(internal.url + "/v1/chat/completions"))
        client = AsyncOpenAI(api_key=KEY, base_url=llm.openai_url, max_retries=0)
        try:
            answer = await client.chat.completions.create(
                model="m", messages=[{"role": "user", "content": "Hello?"}]
            )
        finally:
            await client.close()
        assert answer.choices[0].message.content == "internal secrets"
        assert len(internal.chats) == 1


@pytest.mark.parametrize("kind", KINDS)
async def test_a_private_address_is_refused_at_connect_time_by_default(
    llm: LlmStandIn, kind: str
) -> None:
    url = llm.openai_url if kind == "openai" else llm.anthropic_url
    refused = LlmConfig(
        kind=kind,  # type: ignore[arg-type]
        model="m",
        api_key=KEY,
        base_url=url.replace("127.0.0.1", "localhost"),  # a name: resolved, then checked
        max_retries=2,
    )
    llm.script(Reply.say("should not be asked"))

    with pytest.raises(LlmDestinationRefused) as caught:
        await chat(refused, "Hello?")
    with pytest.raises(LlmDestinationRefused):
        await list_models(refused)

    assert caught.value.reason == "loopback"
    assert "refused to connect to localhost (127.0.0.1): loopback address" in str(caught.value)
    assert llm.sent == []


async def test_a_host_the_policy_names_may_be_private(llm: LlmStandIn) -> None:
    named = SsrfPolicy(allowed_hosts=frozenset({"127.0.0.1"}))
    llm.script(Reply.say("Hello from a named host."))

    result = await chat(config(llm, "openai", ssrf_policy=named), "Hello?")

    assert result.text == "Hello from a named host."


async def test_proxy_settings_in_the_environment_are_ignored(
    llm: LlmStandIn, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with llm_stand_in() as proxy:
        for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "all_proxy"):
            monkeypatch.setenv(name, proxy.url)
        for name in ("NO_PROXY", "no_proxy"):
            monkeypatch.delenv(name, raising=False)
        llm.script(Reply.say("Direct."))
        proxy.script(Reply.say("Through the proxy."))

        result = await chat(config(llm, "openai"), "Hello?")

        assert result.text == "Direct."
        assert proxy.sent == []


# ---- configuration and credentials ----------------------------------------------------------


def test_configs_come_from_the_ai_credential_types() -> None:
    values = validate("openAiApi", {"apiKey": KEY, "baseUrl": "http://localhost:11434/v1"})
    local = LlmConfig.from_credential("openAiApi", values, model="llama3.2")
    assert (local.kind, local.url, local.api_key.get_secret_value()) == (
        "openai",
        "http://localhost:11434/v1",
        KEY,
    )
    claude = LlmConfig.from_credential("anthropicApi", {"apiKey": KEY}, model="claude-x")
    assert (claude.kind, claude.url) == ("anthropic", "https://api.anthropic.com")
    assert credential_type("anthropicApi").secret_fields == {"apiKey"}
    with pytest.raises(ValueError, match="not an LLM provider"):
        LlmConfig.from_credential("httpBasicAuth", {}, model="m")


def test_an_anthropic_config_needs_a_key() -> None:
    with pytest.raises(ValidationError, match="needs an API key"):
        LlmConfig(kind="anthropic", model="claude-x")


@pytest.mark.parametrize("kind", KINDS)
async def test_list_models_checks_the_key(llm: LlmStandIn, kind: str) -> None:
    assert await list_models(config(llm, kind)) == ["stand-in-small", "stand-in-large"]
    assert llm.sent[0].headers["authorization"] == f"Bearer {KEY}"


# ---- the stand-in's embeddings speak OpenAI's protocol --------------------------------------


async def test_the_stand_in_embeds_deterministically(llm: LlmStandIn) -> None:
    client = AsyncOpenAI(api_key=KEY, base_url=llm.openai_url, max_retries=0)
    try:
        answer = await client.embeddings.create(
            model="embed-test", input=["north", "south", "north"], dimensions=8
        )
    finally:
        await client.close()

    vectors = [item.embedding for item in answer.data]
    assert [len(v) for v in vectors] == [8, 8, 8]
    assert vectors[0] == vectors[2] != vectors[1]
    assert vectors[0] == pytest.approx(embedding_for("north", 8))
    assert llm.sent[0].body["model"] == "embed-test"


async def test_the_stand_in_streams_tool_calls_the_sdks_can_assemble(llm: LlmStandIn) -> None:
    call = ToolCall("search", {"query": "Oslo"}, id="call_9")
    llm.script(Reply.calls(call, text="Looking."), Reply.calls(call, text="Looking."))
    openai = AsyncOpenAI(api_key=KEY, base_url=llm.openai_url, max_retries=0)
    anthropic = AsyncAnthropic(api_key=KEY, base_url=llm.anthropic_url, max_retries=0)
    try:
        chunks = await openai.chat.completions.create(
            model="m", messages=[{"role": "user", "content": "x"}], stream=True
        )
        arguments, finish = "", None
        async for chunk in chunks:
            for choice in chunk.choices:
                for delta in choice.delta.tool_calls or []:
                    arguments += (delta.function and delta.function.arguments) or ""
                finish = choice.finish_reason or finish
        async with anthropic.messages.stream(
            model="m", max_tokens=10, messages=[{"role": "user", "content": "x"}]
        ) as events:
            message = await events.get_final_message()
    finally:
        await openai.close()
        await anthropic.close()

    assert (json.loads(arguments), finish) == ({"query": "Oslo"}, "tool_calls")
    text, use = message.content
    assert (text.type, use.type, message.stop_reason) == ("text", "tool_use", "tool_use")
    assert (use.id, use.name, use.input) == ("call_9", "search", {"query": "Oslo"})
