"""AI nodes: LLM Chat, AI Agent, Text Classifier, Embed Text, Vector Store Insert / Search.

Type names (n8n wires its LangChain nodes from sub-nodes, which KlikkFlow has not, so
these are nodes of their own; the names follow n8n's camelCase):

- ``llmChat``: one prompt per item to an OpenAI-compatible or Anthropic model; text out
  (``text``), or a JSON value checked against ``jsonSchema`` (``output``); optional
  conversation ``memory`` (session key expression, window of messages, token limit).
- ``aiAgent``: the same with the tools the node grants (``tools.values``: other nodes,
  sub-workflows, knowledge-base search, HTTP requests to a fixed URL pattern) and
  ``maxIterations``; every model call and tool call is in the item's ``steps``. A tool the
  node did not grant never runs, whatever the model (or a retrieved text) asks for.
- ``textClassifier``: each item to the output named by its category, or ``other``.
- ``embedText``: each item's text to a vector with the platform's embedder.
- ``vectorStoreInsert`` / ``vectorStoreSearch``: add items' texts or files to one of the
  organization's knowledge bases; find the passages that best answer a query.

The model is reached with the node's ``openAiApi`` or ``anthropicApi`` credential, under the
execution's SSRF policy: every connection to the model (a base URL the credential sets, and
whatever its host resolves to) is checked by the pinned transport, and redirects are not
followed. Every model call's tokens
are recorded for the execution's organization, and memories are kept by (organization,
session key), through the ``ai`` node extra the workers provide
(``klikkflow.ai.runtime.AiServices``). ``klikkflow.ai.llm`` is imported, in a thread, when
a model node first runs: it takes seconds to import, and most processes that list node
types never call a model.

Items fail one by one: with the node's ``onError`` at ``continue`` or ``errorOutput`` a
failed item goes on with its ``error`` (and the agent's ``steps``) while the others
succeed; with ``stop`` the first failure fails the node with the reason.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import importlib
import json
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Annotated, Any, Literal
from urllib.parse import quote

import httpx
from pydantic import Field, field_validator, model_validator

from klikkflow.ai.runtime import (
    SESSION_KEY_MAX,
    AiServices,
    KnowledgeError,
    MemoryLimit,
    Passage,
    Turn,
    UsageRecord,
)
from klikkflow.engine.workflow import CredentialRef
from klikkflow.nodes.base import (
    MAIN,
    Inputs,
    Item,
    NodeContext,
    NodeError,
    NodeType,
    Outputs,
    Parameters,
    Wait,
    item,
)
from klikkflow.nodes.conditions import to_js_string
from klikkflow.nodes.http import DENY_PRIVATE, PinnedTransport, SsrfPolicy

if TYPE_CHECKING:
    from klikkflow.ai.llm import LlmConfig, LlmError, Message, Step, Tool, Usage

LLM_MODULE = "klikkflow.ai.llm"

LLM_CREDENTIALS = ("openAiApi", "anthropicApi")
# What a tool hands the model, and what the execution data keeps of it.
TOOL_RESULT_MAX_CHARS = 10_000
HTTP_TOOL_MAX_BYTES = 1024 * 1024
ERROR_STEPS_MAX_CHARS = 4_000
# Structured answers: how often an answer that does not fit is sent back to be repaired.
REPAIRS = 1
TOOL_NAME = r"^[A-Za-z0-9_-]{1,64}$"
PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")


# ---- parameters shared by the model nodes -----------------------------------------------


class ModelOptions(Parameters):
    temperature: float | None = Field(None, ge=0, le=2)
    max_tokens: int | None = Field(None, alias="maxTokens", gt=0, description="Longest answer")
    timeout: float = Field(60, gt=0, le=600, description="Seconds to wait for each answer")
    max_retries: int = Field(
        2, alias="maxRetries", ge=0, le=10, description="Retries on 429, 5xx and network errors"
    )


class MemorySettings(Parameters):
    """Conversation memory: the messages of earlier runs with the same session key (an
    expression, e.g. ``={{ $json.sessionId }}``) go to the model before the prompt."""

    session_key: Any = Field(alias="sessionKey", description="Expression naming the conversation")
    window: int | None = Field(10, ge=1, le=1000, description="How many past messages to send")
    token_limit: int | None = Field(
        None, alias="tokenLimit", ge=1, description="At most this many tokens of past messages"
    )

    @property
    def limit(self) -> MemoryLimit:
        return MemoryLimit(window=self.window, token_limit=self.token_limit)


CredentialChoice = Literal["", "openAiApi", "anthropicApi"]


class ModelParams(Parameters):
    credential_type: CredentialChoice = Field(
        "", alias="credentialType", description="Which credential to use; empty: the node's one"
    )
    model: str = Field(min_length=1, description="Model name, e.g. gpt-4o-mini")
    options: ModelOptions = Field(default_factory=ModelOptions)  # type: ignore[arg-type]


def _schema_value(value: Any) -> dict[str, Any] | None:
    """A JSON Schema given as an object or as JSON text; it must describe an object."""
    if value in (None, "", {}):
        return None
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as exc:
            raise ValueError(f"not JSON ({exc.msg} at character {exc.pos})") from None
    if not isinstance(value, dict) or value.get("type") != "object":
        raise ValueError('must be a JSON Schema of an object ({"type": "object", ...})')
    return value


class LlmChatParams(ModelParams):
    system_prompt: Any = Field("", alias="systemPrompt")
    prompt: Any = Field("={{ $json.prompt }}", description="The user message (an expression)")
    json_schema: dict[str, Any] | None = Field(
        None,
        alias="jsonSchema",
        description="Answer with a JSON value fitting this schema instead of text",
    )
    memory: MemorySettings | None = None

    @field_validator("json_schema", mode="before")
    @classmethod
    def _object_schema(cls, value: Any) -> dict[str, Any] | None:
        return _schema_value(value)


# ---- per-item outcomes --------------------------------------------------------------------


class _Results:
    """Each item's outcome. With onError ``continue`` / ``errorOutput`` a failed item goes
    on with its error; with ``stop`` the first failure fails the node."""

    def __init__(self, ctx: NodeContext, ports: Sequence[str] = (MAIN,)) -> None:
        self.on_error = str(ctx.node.on_error)
        self.outputs: Outputs = {port: [] for port in ports}

    def add(self, port: str, json_: dict[str, Any], index: int) -> None:
        self.outputs[port].append(item(json_, index))

    def fail(
        self, error: NodeError, source: Item, index: int, *, port: str | None = None, **extra: Any
    ) -> None:
        if self.on_error == "stop":
            raise error
        failed = {**source.get("json", {}), **extra, "error": str(error)}
        target = "error" if self.on_error == "errorOutput" else port or next(iter(self.outputs))
        self.outputs.setdefault(target, []).append(item(failed, index))


def _text(value: Any) -> str:
    return "" if value is None else to_js_string(value)


# ---- the model: credential, config, usage, memory -----------------------------------------


class _Model:
    """The model a node run talks to, and what it records while doing so."""

    def __init__(self, ctx: NodeContext, config: LlmConfig) -> None:
        self.ctx, self.config = ctx, config
        self.services: AiServices | None = getattr(ctx, "ai", None)
        self.organization_id: str | None = getattr(ctx, "organization_id", None)

    @classmethod
    async def connect(cls, ctx: NodeContext, params: ModelParams) -> _Model:
        # Its first import takes seconds: off the event loop other executions share (a
        # thread also waits for an import another thread has begun).
        llm = await asyncio.to_thread(importlib.import_module, LLM_MODULE)
        config_type: type[LlmConfig] = llm.LlmConfig
        kind = _credential_type(ctx, params.credential_type)
        values = await ctx.credential(kind)
        options = params.options
        try:
            config = config_type.from_credential(
                kind,
                values,
                model=params.model,
                timeout=options.timeout,
                max_tokens=options.max_tokens,
                temperature=options.temperature,
                max_retries=options.max_retries,
                ssrf_policy=getattr(ctx, "ssrf_policy", DENY_PRIVATE),
            )
        except ValueError as exc:
            raise NodeError(f"the {kind} credential cannot be used: {exc}") from None
        return cls(ctx, config)

    async def record(self, usage: Usage, model: str, calls: int = 1) -> None:
        if self.services is None or self.organization_id is None or not usage.total_tokens:
            return
        record = UsageRecord(
            organization_id=self.organization_id,
            workflow_id=self.ctx.workflow_id,
            execution_id=self.ctx.execution_id,
            node=self.ctx.node.name,
            provider=self.config.kind,
            model=model,
            input_tokens=usage.input_tokens,
            output_tokens=usage.output_tokens,
            calls=calls,
        )
        await self.services.record_usage([record])

    async def record_failure(self, error: LlmError) -> None:
        """What a failed answer cost: an answer that never fitted the schema took every
        attempt; other failures stop at the call that failed."""
        from klikkflow.ai.llm import LlmMalformedAnswer

        calls = REPAIRS + 1 if isinstance(error, LlmMalformedAnswer) and error.problems else 1
        await self.record(error.usage, error.model or self.config.model, calls)

    async def record_steps(self, steps: Sequence[Step]) -> None:
        """One usage record per model call of a tool loop."""
        for step in steps:
            if step.kind == "model":
                await self.record(step.usage, step.model)

    def _memory(self) -> tuple[AiServices, str]:
        return _platform(self.ctx, "conversation memories")

    async def recall(self, memory: MemorySettings, key: str) -> list[Turn]:
        services, organization = self._memory()
        return await services.recall(organization, key, memory.limit)

    async def remember(self, key: str, prompt: str, answer: str) -> None:
        services, organization = self._memory()
        await services.remember(
            organization, key, [Turn("user", prompt), Turn("assistant", answer)]
        )


def _credential_type(ctx: NodeContext, chosen: str) -> str:
    present = [kind for kind in LLM_CREDENTIALS if kind in ctx.node.credentials]
    if chosen:
        if chosen not in present:
            raise NodeError(f"the node has no {chosen} credential")
        return chosen
    if len(present) == 1:
        return present[0]
    if not present:
        raise NodeError("choose an OpenAI (openAiApi) or Anthropic (anthropicApi) credential")
    raise NodeError("the node has two model credentials: set credentialType to the one to use")


def _session_key(value: Any, index: int) -> str:
    key = _text(value).strip()
    if not key:
        raise NodeError(f"the memory's session key is empty [item {index}]", item_index=index)
    if len(key) > SESSION_KEY_MAX:
        raise NodeError(
            f"the memory's session key is longer than {SESSION_KEY_MAX} characters [item {index}]",
            item_index=index,
        )
    return key


def _llm_failure(error: LlmError, index: int) -> NodeError:
    from klikkflow.ai.llm import LlmDestinationRefused, LlmMalformedAnswer, LlmTimeout

    if isinstance(error, LlmTimeout):
        message = f"the model {error.model!r} gave no answer within {error.seconds:g} s"
    else:
        message = str(error)
    description = ""
    if isinstance(error, LlmMalformedAnswer) and error.problems:
        description = "; ".join(error.problems[:10])
    if isinstance(error, LlmDestinationRefused):
        description = "requests to private networks are off on this platform"
    return NodeError(f"{message} [item {index}]", item_index=index, description=description)


def _usage_json(usage: Usage) -> dict[str, int]:
    return {
        "inputTokens": usage.input_tokens,
        "outputTokens": usage.output_tokens,
        "totalTokens": usage.total_tokens,
    }


def _conversation(history: Sequence[Turn], prompt: str) -> list[Message]:
    from klikkflow.ai.llm import Message

    return [Message(t.role, t.content) for t in history] + [Message("user", prompt)]


def _prompts(ctx: NodeContext, params: LlmChatParams | AgentParams, items: list[Item]) -> Any:
    prompts = ctx.evaluate(params.prompt, items, path="prompt")
    systems = ctx.evaluate(params.system_prompt, items, path="systemPrompt")
    keys: list[Any] = [None] * len(items)
    if params.memory is not None:
        keys = ctx.evaluate(params.memory.session_key, items, path="memory.sessionKey")
    return zip(items, prompts, systems, keys, strict=True)


def _prompt(value: Any, index: int) -> str:
    prompt = _text(value)
    if not prompt.strip():
        raise NodeError(f"the prompt is empty [item {index}]", item_index=index)
    return prompt


# ---- LLM Chat -----------------------------------------------------------------------------


class LlmChat(NodeType):
    type = "llmChat"
    version = 1
    display_name = "LLM Chat"
    description = "Ask a language model once per item: text, or JSON that fits a schema."
    category = "ai"
    Params = LlmChatParams
    credential_types = LLM_CREDENTIALS

    async def run(self, ctx: NodeContext, params: Parameters, inputs: Inputs) -> Outputs:
        assert isinstance(params, LlmChatParams)
        items = inputs.get(MAIN) or [{"json": {}}]
        model = await _Model.connect(ctx, params)
        results = _Results(ctx)
        for index, (source, prompt, system, key) in enumerate(_prompts(ctx, params, items)):
            try:
                answer = await self._answer(model, params, index, prompt, system, key)
            except NodeError as error:
                results.fail(error, source, index)
                continue
            results.add(MAIN, answer, index)
        return results.outputs

    async def _answer(
        self, model: _Model, params: LlmChatParams, index: int, prompt: Any, system: Any, key: Any
    ) -> dict[str, Any]:
        from klikkflow.ai import llm

        text = _prompt(prompt, index)
        session = _session_key(key, index) if params.memory is not None else None
        history = await model.recall(params.memory, session) if params.memory and session else []
        conversation = _conversation(history, text)
        answer: dict[str, Any]
        try:
            if params.json_schema is not None:
                data = await llm.structured(
                    model.config,
                    conversation,
                    params.json_schema,
                    system=_text(system) or None,
                    repairs=REPAIRS,
                )
                await model.record(data.usage, data.model, calls=data.attempts)
                answer = {"output": data.data}
                said = json.dumps(data.data, ensure_ascii=False)
                usage, name = data.usage, data.model
            else:
                chat = await llm.chat(model.config, conversation, system=_text(system) or None)
                await model.record(chat.usage, chat.model)
                answer = {"text": chat.text}
                said, usage, name = chat.text, chat.usage, chat.model
        except llm.LlmError as error:
            await model.record_failure(error)
            raise _llm_failure(error, index) from None
        if session is not None:
            await model.remember(session, text, said)
            answer["sessionKey"] = session
        return {**answer, "usage": _usage_json(usage), "model": name}


# ---- AI Agent -----------------------------------------------------------------------------


class _ToolBase(Parameters):
    name: str = Field(pattern=TOOL_NAME, description="The name the model calls it by")
    description: str = Field(min_length=1, description="What it does, for the model")


DEFAULT_TOOL_INPUT = {
    "type": "object",
    "properties": {"query": {"type": "string", "description": "What to ask or look up"}},
    "required": ["query"],
}


class WorkflowTool(_ToolBase):
    """Runs a workflow (from its Execute Workflow Trigger) with the arguments as its one
    item; its last node's output is the tool's result."""

    type: Literal["workflow"]
    workflow_id: str = Field(alias="workflowId", min_length=1)
    input_schema: dict[str, Any] | None = Field(
        None, alias="inputSchema", description="JSON Schema of the arguments; default {query}"
    )

    @field_validator("input_schema", mode="before")
    @classmethod
    def _object_schema(cls, value: Any) -> dict[str, Any] | None:
        return _schema_value(value)

    def parameters(self) -> dict[str, Any]:
        return self.input_schema or DEFAULT_TOOL_INPUT


class HttpTool(_ToolBase):
    """One request to a fixed URL pattern: each ``{name}`` in it is a string argument the
    model fills in (URL-encoded), so the model chooses values, never the host."""

    type: Literal["httpRequest"]
    method: Literal["GET", "POST", "PUT", "PATCH", "DELETE"] = "GET"
    url: str = Field(
        pattern=r"^https?://[^/?#{}\s]+([/?#]\S*)?$",
        description="e.g. https://api.example.com/cities/{city}/weather",
    )
    send_body: bool = Field(
        False, alias="sendBody", description="Let the model send a JSON object as the body"
    )
    timeout: float = Field(30, gt=0, le=300, description="Seconds for the request")

    def placeholders(self) -> list[str]:
        return list(dict.fromkeys(PLACEHOLDER.findall(self.url)))

    def parameters(self) -> dict[str, Any]:
        properties: dict[str, Any] = {name: {"type": "string"} for name in self.placeholders()}
        if self.send_body:
            properties["body"] = {"type": "object", "description": "The JSON body to send"}
        return {"type": "object", "properties": properties, "required": self.placeholders()}


class KnowledgeBaseTool(_ToolBase):
    """Searches one of the organization's knowledge bases; the passages are the result."""

    type: Literal["knowledgeBase"]
    knowledge_base_id: str = Field(alias="knowledgeBaseId", min_length=1)
    k: int = Field(4, ge=1, le=50, description="How many passages to hand the model")

    def parameters(self) -> dict[str, Any]:
        query = {"type": "string", "description": "What to look up"}
        return {"type": "object", "properties": {"query": query}, "required": ["query"]}


NodeClass = type[NodeType]
FREE_FORM_INPUT: dict[str, Any] = {"type": "object", "properties": {}, "additionalProperties": True}
# Node types that are no tool, and why (besides triggers and nodes that need the graph).
NOT_TOOLS = {
    "wait": "it pauses the execution",
    "executeWorkflow": "a sub-workflow is a tool of type workflow",
    "aiAgent": "an agent cannot be another agent's tool",
    "respondToWebhook": "it answers the execution's webhook call",
}


def _not_a_tool(cls: NodeClass) -> str | None:
    """Why a node type cannot be a tool, or None if it can."""
    if cls.is_trigger or cls.category == "trigger" or not cls.inputs:
        return "a trigger starts workflows; it is no tool"
    if cls.type in NOT_TOOLS:
        return NOT_TOOLS[cls.type]
    if len(cls.inputs) > 1 or cls.waits_for_all_inputs:
        return "it takes more than one input"
    if cls.may_loop:
        return "it loops through the workflow's nodes"
    if not cls.outputs:
        return "it has no output to hand back"
    return None


class NodeTool(_ToolBase):
    """Runs one node of any type that fits (not triggers, Wait, Execute Workflow or another
    agent) with the model's arguments as its one input item: its parameters' expressions
    see them as ``$json``, and its output items are the result. It runs in the agent's
    context: the execution's credentials (``credentials``; a type not named there is the
    agent node's), SSRF policy and limits."""

    type: Literal["node"]
    node_type: str = Field(alias="nodeType", min_length=1, description="e.g. set, httpRequest")
    type_version: float | None = Field(
        None, alias="typeVersion", description="Empty: the type's latest version"
    )
    node_parameters: dict[str, Any] = Field(
        default_factory=dict, alias="parameters", description="The node's parameters"
    )
    credentials: dict[str, CredentialRef] = Field(
        default_factory=dict, description="Credential type -> stored credential, for the node"
    )
    input_schema: dict[str, Any] | None = Field(
        None, alias="schema", description="JSON Schema of the arguments; default: any object"
    )

    @field_validator("input_schema", mode="before")
    @classmethod
    def _object_schema(cls, value: Any) -> dict[str, Any] | None:
        return _schema_value(value)

    @model_validator(mode="after")
    def _a_node_that_can_be_a_tool(self) -> NodeTool:
        node_class = self.node_class()
        if (reason := _not_a_tool(node_class)) is not None:
            raise ValueError(f"node type {self.node_type!r} cannot be a tool: {reason}")
        node_class.Params.model_validate(self.node_parameters)  # its problems, at save time
        return self

    def version(self) -> float:
        from klikkflow.nodes.registry import default_registry

        latest = max(default_registry().versions(self.node_type), default=1)
        return self.type_version or latest

    def node_class(self) -> NodeClass:
        from klikkflow.nodes.registry import RegistryError, default_registry

        try:
            return default_registry().get(self.node_type, self.version())
        except RegistryError as exc:
            raise ValueError(str(exc)) from None

    def parameters(self) -> dict[str, Any]:
        return self.input_schema or FREE_FORM_INPUT


AgentTool = Annotated[
    NodeTool | WorkflowTool | HttpTool | KnowledgeBaseTool, Field(discriminator="type")
]


class AgentTools(Parameters):
    values: list[AgentTool] = Field(default_factory=list)


class AgentParams(ModelParams):
    system_prompt: Any = Field("", alias="systemPrompt")
    prompt: Any = Field("={{ $json.prompt }}", description="The user message (an expression)")
    tools: AgentTools = Field(default_factory=AgentTools)  # type: ignore[arg-type]
    max_iterations: int = Field(
        5, alias="maxIterations", ge=1, le=50, description="Most model calls per item"
    )
    memory: MemorySettings | None = None

    @model_validator(mode="after")
    def _unique_tool_names(self) -> AgentParams:
        names = [tool.name for tool in self.tools.values]
        if len(set(names)) != len(names):
            raise ValueError("two tools have the same name")
        return self


def _capped(value: Any) -> Any:
    """A tool result small enough for the model and the execution data."""
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)
    if len(text) <= TOOL_RESULT_MAX_CHARS:
        return value
    return text[:TOOL_RESULT_MAX_CHARS] + f" … (cut at {TOOL_RESULT_MAX_CHARS} characters)"


def _workflow_tool(ctx: NodeContext, spec: WorkflowTool) -> Tool:
    from klikkflow.ai.llm import Tool

    async def run(arguments: dict[str, Any]) -> Any:
        out = await ctx.execute_workflow(spec.workflow_id, [{"json": arguments}], wait=True)
        results = [entry.get("json", {}) for entry in out or []]
        return _capped(results[0] if len(results) == 1 else results)

    return Tool(spec.name, spec.description, spec.parameters(), run)


def _node_tool(ctx: NodeContext, spec: NodeTool) -> Tool:
    """The granted node, run in a copy of the agent's context made for it (the runner's
    own ``RunContext``: credentials, extras such as the SSRF policy, expressions)."""
    from klikkflow.ai.llm import Tool
    from klikkflow.engine.context import RunContext
    from klikkflow.engine.workflow import NodeSpec

    if not isinstance(ctx, RunContext):
        raise NodeError("node tools run only in the workflow engine")
    node_class = spec.node_class()
    params = node_class.Params.model_validate(spec.node_parameters)
    node = NodeSpec(
        id=f"{ctx.node.id}:{spec.name}"[:64],
        name=f"{ctx.node.name}/{spec.name}"[:128],
        type=node_class.type,
        type_version=spec.version(),
        parameters=spec.node_parameters,
        credentials={**ctx.node.credentials, **spec.credentials},
    )

    async def run(arguments: dict[str, Any]) -> Any:
        tool_ctx = dataclasses.replace(ctx, node=node, node_state={}, resume_payload=None)
        inputs = {node_class.inputs[0]: [{"json": arguments}]}
        outputs = await node_class().run(tool_ctx, params, inputs)
        if isinstance(outputs, Wait):
            raise RuntimeError("the node wanted to wait, which a tool cannot")
        return _capped(_node_result(outputs))

    return Tool(spec.name, spec.description, spec.parameters(), run)


def _node_result(outputs: Outputs) -> Any:
    """The items' JSON: one item as itself, a list for more; by port if not all main."""
    ports = {port: [i.get("json", {}) for i in items] for port, items in outputs.items() if items}
    if set(ports) <= {MAIN}:
        found = ports.get(MAIN, [])
        return found[0] if len(found) == 1 else found
    return ports


def _knowledge_tool(spec: KnowledgeBaseTool, services: AiServices, organization: str) -> Tool:
    from klikkflow.ai.llm import Tool

    async def run(arguments: dict[str, Any]) -> Any:
        query = str(arguments["query"])
        try:
            passages = await services.search(organization, spec.knowledge_base_id, query, spec.k)
        except KnowledgeError as exc:
            raise RuntimeError(str(exc)) from None
        return _capped([_passage_json(p) for p in passages])

    return Tool(spec.name, spec.description, spec.parameters(), run)


def _passage_json(passage: Passage) -> dict[str, Any]:
    return {
        "text": passage.text,
        "score": passage.score,
        "documentId": passage.document_id,
        "metadata": passage.metadata,
    }


def _http_tool(ctx: NodeContext, spec: HttpTool, client: httpx.AsyncClient) -> Tool:
    from klikkflow.ai.llm import Tool

    async def run(arguments: dict[str, Any]) -> Any:
        url = PLACEHOLDER.sub(lambda m: quote(str(arguments[m.group(1)]), safe=""), spec.url)
        body = arguments.get("body") if spec.send_body else None
        request = client.build_request(spec.method, url, json=body, timeout=spec.timeout)
        response = await client.send(request, stream=True)
        try:
            content = await _read_limited(response)
        finally:
            await response.aclose()
        text = content.decode(response.encoding or "utf-8", errors="replace")
        if response.is_error:
            raise RuntimeError(f"HTTP {response.status_code}: {text[:300]}")
        try:
            answer: Any = json.loads(text)
        except ValueError:
            answer = text
        return _capped({"status": response.status_code, "body": answer})

    return Tool(spec.name, spec.description, spec.parameters(), run)


async def _read_limited(response: httpx.Response) -> bytes:
    chunks, size = [], 0
    async for chunk in response.aiter_bytes():
        size += len(chunk)
        if size > HTTP_TOOL_MAX_BYTES:
            raise RuntimeError(f"the response is over {HTTP_TOOL_MAX_BYTES:,} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _step_json(step: Step) -> dict[str, Any]:
    if step.kind == "model":
        calls = [{"id": c.id, "name": c.name, "arguments": c.arguments} for c in step.tool_calls]
        return {
            "type": "model",
            "text": step.text,
            "toolCalls": calls,
            "usage": _usage_json(step.usage),
            "model": step.model,
        }
    entry: dict[str, Any] = {
        "type": "tool",
        "callId": step.call_id,
        "name": step.name,
        "arguments": step.arguments,
        "outcome": step.outcome,
    }
    if step.outcome == "ok":
        entry["result"] = _capped(step.result)
    else:
        entry["error"] = step.error
    return entry


def _steps_summary(steps: list[dict[str, Any]]) -> str:
    text = json.dumps(steps, ensure_ascii=False, default=str)
    if len(text) > ERROR_STEPS_MAX_CHARS:
        text = text[:ERROR_STEPS_MAX_CHARS] + " …"
    return "steps: " + text


class AiAgent(NodeType):
    type = "aiAgent"
    version = 1
    display_name = "AI Agent"
    description = (
        "A model that calls the tools this node grants (other nodes, sub-workflows, knowledge"
        " bases, HTTP), per item."
    )
    category = "ai"
    Params = AgentParams
    credential_types = LLM_CREDENTIALS

    async def run(self, ctx: NodeContext, params: Parameters, inputs: Inputs) -> Outputs:
        assert isinstance(params, AgentParams)
        items = inputs.get(MAIN) or [{"json": {}}]
        model = await _Model.connect(ctx, params)
        results = _Results(ctx)
        policy: SsrfPolicy = getattr(ctx, "ssrf_policy", DENY_PRIVATE)
        async with httpx.AsyncClient(
            transport=PinnedTransport(policy), trust_env=False, follow_redirects=False
        ) as client:
            tools = [_tool(ctx, spec, client) for spec in params.tools.values]
            for index, (source, prompt, system, key) in enumerate(_prompts(ctx, params, items)):
                try:
                    answer = await self._answer(model, params, tools, index, prompt, system, key)
                except _AgentFailure as failure:
                    results.fail(failure.error, source, index, steps=failure.steps)
                    continue
                except NodeError as error:
                    results.fail(error, source, index)
                    continue
                results.add(MAIN, answer, index)
        return results.outputs

    async def _answer(
        self,
        model: _Model,
        params: AgentParams,
        tools: list[Tool],
        index: int,
        prompt: Any,
        system: Any,
        key: Any,
    ) -> dict[str, Any]:
        from klikkflow.ai import llm

        text = _prompt(prompt, index)
        session = _session_key(key, index) if params.memory is not None else None
        history = await model.recall(params.memory, session) if params.memory and session else []
        try:
            result = await llm.chat_with_tools(
                model.config,
                _conversation(history, text),
                tools,
                system=_text(system) or None,
                max_iterations=params.max_iterations,
            )
        except llm.LlmError as error:
            await model.record_steps(error.steps)  # the calls that answered
            raise _AgentFailure(_llm_failure(error, index), error.steps) from None
        await model.record_steps(result.steps)
        if session is not None:
            await model.remember(session, text, result.text)
        answer: dict[str, Any] = {
            "output": result.text,
            "steps": [_step_json(step) for step in result.steps],
            "usage": _usage_json(result.usage),
            "model": result.model,
        }
        if session is not None:
            answer["sessionKey"] = session
        return answer


def _tool(ctx: NodeContext, spec: AgentTool, client: httpx.AsyncClient) -> Tool:
    if isinstance(spec, NodeTool):
        return _node_tool(ctx, spec)
    if isinstance(spec, WorkflowTool):
        return _workflow_tool(ctx, spec)
    if isinstance(spec, HttpTool):
        return _http_tool(ctx, spec, client)
    services, organization = _platform(ctx, "knowledge-base tools")
    return _knowledge_tool(spec, services, organization)


def _platform(ctx: NodeContext, what: str) -> tuple[AiServices, str]:
    services: AiServices | None = getattr(ctx, "ai", None)
    organization: str | None = getattr(ctx, "organization_id", None)
    if services is None or organization is None:
        raise NodeError(f"{what} need the platform's database (run in a worker)")
    return services, organization


class _AgentFailure(Exception):
    """A failed item of the agent with the steps it made (shown with the error)."""

    def __init__(self, error: NodeError, steps: Sequence[Step]) -> None:
        self.steps = [_step_json(step) for step in steps]
        if self.steps:
            error.description = "; ".join(
                part for part in (error.description, _steps_summary(self.steps)) if part
            )
        super().__init__(str(error))
        self.error = error


# ---- Text Classifier ----------------------------------------------------------------------


class Category(Parameters):
    category: str = Field(min_length=1, max_length=100)
    description: str = Field("", max_length=2000)


class Categories(Parameters):
    categories: list[Category] = Field(min_length=1)

    @model_validator(mode="after")
    def _unique(self) -> Categories:
        names = [c.category for c in self.categories]
        if len(set(names)) != len(names):
            raise ValueError("two categories have the same name")
        return self


OTHER = "other"


class ClassifierOptions(ModelOptions):
    fallback: Literal["other", "discard"] = Field(
        "other", description="Items that fit no category: to the `other` output, or dropped"
    )
    system_prompt: str = Field("", alias="systemPrompt", description="Replaces the default")


DEFAULT_CLASSIFIER_PROMPT = (
    "Classify the text the user gives into exactly one of these categories. Answer with"
    " the category's name as given."
)


class ClassifierParams(ModelParams):
    input_text: Any = Field("={{ $json.text }}", alias="inputText")
    categories: Categories
    options: ClassifierOptions = Field(default_factory=ClassifierOptions)  # type: ignore[assignment]

    @model_validator(mode="after")
    def _other_is_the_fallback(self) -> ClassifierParams:
        names = [c.category for c in self.categories.categories]
        if self.options.fallback == OTHER and OTHER in names:
            raise ValueError(f"a category named {OTHER!r} would share the fallback's output")
        return self


class TextClassifier(NodeType):
    type = "textClassifier"
    version = 1
    display_name = "Text Classifier"
    description = "Route each item to the output of its category, chosen by a language model."
    category = "ai"
    Params = ClassifierParams
    credential_types = LLM_CREDENTIALS
    outputs = (OTHER,)

    def output_ports(self, params: Parameters) -> tuple[str, ...]:
        """One output per category, named by it, then ``other`` unless unfitting items
        are discarded."""
        assert isinstance(params, ClassifierParams)
        names = [c.category for c in params.categories.categories]
        return tuple(names + ([OTHER] if params.options.fallback == OTHER else []))

    async def run(self, ctx: NodeContext, params: Parameters, inputs: Inputs) -> Outputs:
        assert isinstance(params, ClassifierParams)
        items = inputs.get(MAIN, [])
        ports = self.output_ports(params)
        model = await _Model.connect(ctx, params)
        results = _Results(ctx, ports)
        schema, system = _classification(params)
        texts = ctx.evaluate(params.input_text, items, path="inputText")
        for index, (source, value) in enumerate(zip(items, texts, strict=True)):
            try:
                chosen = await self._classify(model, schema, system, index, value)
            except NodeError as error:
                results.fail(error, source, index, port=OTHER if OTHER in ports else None)
                continue
            if chosen in ports:
                passed = dict(source)
                passed["pairedItem"] = {"item": index}
                results.outputs[chosen].append(passed)
        return results.outputs

    async def _classify(
        self, model: _Model, schema: dict[str, Any], system: str, index: int, value: Any
    ) -> str:
        from klikkflow.ai import llm

        text = _text(value)
        if not text.strip():
            raise NodeError(f"the text to classify is empty [item {index}]", item_index=index)
        try:
            answer = await llm.structured(
                model.config, text, schema, system=system, repairs=REPAIRS
            )
        except llm.LlmError as error:
            await model.record_failure(error)
            raise _llm_failure(error, index) from None
        await model.record(answer.usage, answer.model, calls=answer.attempts)
        return str(answer.data["category"])


def _classification(params: ClassifierParams) -> tuple[dict[str, Any], str]:
    names = [c.category for c in params.categories.categories]
    listed = "\n".join(
        f"- {c.category}" + (f": {c.description}" if c.description else "")
        for c in params.categories.categories
    )
    other = f'\nAnswer "{OTHER}" when none of them fits.'
    system = f"{params.options.system_prompt or DEFAULT_CLASSIFIER_PROMPT}\n\n{listed}{other}"
    schema = {
        "type": "object",
        "properties": {"category": {"type": "string", "enum": [*names, OTHER]}},
        "required": ["category"],
        "additionalProperties": False,
    }
    return schema, system


# ---- Embed Text ---------------------------------------------------------------------------


class EmbedTextParams(Parameters):
    text: Any = Field("={{ $json.text }}", description="The text to embed (an expression)")
    output_field: str = Field(
        "embedding", alias="outputField", min_length=1, description="Where the vector goes"
    )


class EmbedText(NodeType):
    type = "embedText"
    version = 1
    display_name = "Embed Text"
    description = "Turn each item's text into a vector with the platform's embedding model."
    category = "ai"
    Params = EmbedTextParams

    async def run(self, ctx: NodeContext, params: Parameters, inputs: Inputs) -> Outputs:
        from klikkflow.ai.embeddings import EmbeddingError

        assert isinstance(params, EmbedTextParams)
        items = inputs.get(MAIN, [])
        services, _ = _platform(ctx, "embeddings")
        texts = [_text(v) for v in ctx.evaluate(params.text, items, path="text")]
        results = _Results(ctx)
        wanted = []
        for index, (source, text) in enumerate(zip(items, texts, strict=True)):
            if text.strip():
                wanted.append(index)
            else:
                empty = NodeError(f"the text to embed is empty [item {index}]", item_index=index)
                results.fail(empty, source, index)
        embedder = services.embedder
        try:
            vectors = await embedder.embed([texts[i] for i in wanted]) if wanted else []
        except EmbeddingError as exc:
            raise NodeError(f"the texts could not be embedded: {exc}") from None
        for index, vector in zip(wanted, vectors, strict=True):
            json_ = {**items[index].get("json", {}), params.output_field: vector}
            results.add(MAIN, {**json_, "embeddingModel": embedder.model}, index)
        results.outputs[MAIN].sort(key=lambda entry: entry["pairedItem"]["item"])
        return results.outputs


# ---- Vector Store Insert / Search ---------------------------------------------------------


class VectorStoreInsertParams(Parameters):
    knowledge_base_id: Any = Field(alias="knowledgeBaseId", description="Id (or expression)")
    source: Literal["text", "binary"] = Field(
        "text", description="The item's text, or a file in its binary data (PDF, HTML, ...)"
    )
    text: Any = Field("={{ $json.text }}", description="source text: the document's text")
    content_type: Literal["text/plain", "text/markdown", "text/html"] = Field(
        "text/plain", alias="contentType", description="source text: how to read the text"
    )
    binary_property_name: str = Field(
        "data", alias="binaryPropertyName", description="source binary: the file's field"
    )
    document_name: Any = Field(
        "", alias="documentName", description="Empty: the file name, or the text's first line"
    )
    metadata: Any = Field(default_factory=dict, description="A JSON object kept with it")


def _document(
    params: VectorStoreInsertParams, source: Item, text: str, index: int
) -> tuple[str, str, bytes]:
    """(name, content type, bytes) of the document an item holds."""
    if params.source == "binary":
        binary = (source.get("binary") or {}).get(params.binary_property_name)
        if not isinstance(binary, dict) or "data" not in binary:
            raise NodeError(
                f"the item has no binary field {params.binary_property_name!r} [item {index}]",
                item_index=index,
            )
        try:
            data = base64.b64decode(binary["data"], validate=True)
        except ValueError:
            raise NodeError(
                f"the binary data is not base64 [item {index}]", item_index=index
            ) from None
        name = str(binary.get("fileName") or params.binary_property_name)
        return name, str(binary.get("mimeType") or ""), data
    first = next((line.strip() for line in text.splitlines() if line.strip()), "")
    return first[:80] or f"item {index}", params.content_type, text.encode()


def _metadata(value: Any, index: int) -> dict[str, Any] | None:
    if value in (None, "", {}):
        return None
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            value = None
    if not isinstance(value, dict):
        raise NodeError(f"the metadata is not a JSON object [item {index}]", item_index=index)
    return value


class VectorStoreInsert(NodeType):
    type = "vectorStoreInsert"
    version = 1
    display_name = "Vector Store Insert"
    description = "Add each item's text or file to a knowledge base (chunked and embedded)."
    category = "ai"
    Params = VectorStoreInsertParams

    async def run(self, ctx: NodeContext, params: Parameters, inputs: Inputs) -> Outputs:
        assert isinstance(params, VectorStoreInsertParams)
        items = inputs.get(MAIN, [])
        services, organization = _platform(ctx, "knowledge bases")
        bases = ctx.evaluate(params.knowledge_base_id, items, path="knowledgeBaseId")
        texts = ctx.evaluate(params.text, items, path="text") if params.source == "text" else None
        names = ctx.evaluate(params.document_name, items, path="documentName")
        metadata = ctx.evaluate(params.metadata, items, path="metadata")
        results = _Results(ctx)
        for index, source in enumerate(items):
            base = _text(bases[index]).strip()
            try:
                text = _text(texts[index]) if texts is not None else ""
                name, kind, data = _document(params, source, text, index)
                stored = await services.ingest(
                    organization,
                    base,
                    _text(names[index]).strip() or name,
                    kind,
                    data,
                    _metadata(metadata[index], index),
                )
            except KnowledgeError as exc:
                error = NodeError(f"{exc} [item {index}]", item_index=index)
                results.fail(error, source, index)
                continue
            except NodeError as error:
                results.fail(error, source, index)
                continue
            added = {"knowledgeBaseId": base, "documentId": stored.id, "name": stored.name}
            results.add(MAIN, {**added, "chunks": stored.chunks}, index)
        return results.outputs


class VectorStoreSearchParams(Parameters):
    knowledge_base_id: Any = Field(alias="knowledgeBaseId", description="Id (or expression)")
    query: Any = Field("={{ $json.query }}", description="What to look up (an expression)")
    k: int = Field(4, ge=1, le=50, description="How many passages per query")
    mode: Literal["each", "together"] = Field(
        "each", description="One item per passage, or one per query with `passages`"
    )


class VectorStoreSearch(NodeType):
    type = "vectorStoreSearch"
    version = 1
    display_name = "Vector Store Search"
    description = "Find the passages of a knowledge base that best answer each item's query."
    category = "ai"
    Params = VectorStoreSearchParams

    async def run(self, ctx: NodeContext, params: Parameters, inputs: Inputs) -> Outputs:
        assert isinstance(params, VectorStoreSearchParams)
        items = inputs.get(MAIN, [])
        services, organization = _platform(ctx, "knowledge bases")
        bases = ctx.evaluate(params.knowledge_base_id, items, path="knowledgeBaseId")
        queries = ctx.evaluate(params.query, items, path="query")
        results = _Results(ctx)
        for index, source in enumerate(items):
            query = _text(queries[index]).strip()
            try:
                if not query:
                    raise KnowledgeError("the query is empty")
                base = _text(bases[index]).strip()
                passages = await services.search(organization, base, query, params.k)
            except KnowledgeError as exc:
                results.fail(NodeError(f"{exc} [item {index}]", item_index=index), source, index)
                continue
            found = [_passage_json(p) for p in passages]
            if params.mode == "together":
                results.add(MAIN, {"query": query, "passages": found}, index)
            else:
                for passage in found:
                    results.add(MAIN, {"query": query, **passage}, index)
        return results.outputs


AI_NODES: list[type[NodeType]] = [
    LlmChat,
    AiAgent,
    TextClassifier,
    EmbedText,
    VectorStoreInsert,
    VectorStoreSearch,
]

__all__ = [
    "AI_NODES",
    "AiAgent",
    "EmbedText",
    "LlmChat",
    "TextClassifier",
    "VectorStoreInsert",
    "VectorStoreSearch",
]
