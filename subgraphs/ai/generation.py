"""Natural-language workflow creation: a description in, a saved draft workflow out.

The language model gets the node catalog (every node type's latest version with its ports
and parameter JSON Schema, trimmed to a budget), the workflow document format with one
small example, and the user's description, and answers one JSON object (structured output).
The answer is checked by the workflows subgraph's own validation (document schema and the
engine's compile step) plus a few rules of ours (a trigger to start from, sub-workflows
that exist). Problems go back to the model for at most ``MAX_REPAIRS`` more answers; a
workflow that is still invalid is refused with every reason and nothing is saved. A valid
one is saved through the workflows service as a new draft of the viewer's organization.

The model's key comes from the credentials vault (an ``openAiApi`` or ``anthropicApi``
credential of the viewer's organization); its base URL must pass the same private-network
rule as HTTP Request nodes.
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter, defaultdict, deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from functools import cache
from typing import Any

from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession

from klikkflow.ai import llm
from klikkflow.ai.llm import (
    LlmConfig,
    LlmDestinationRefused,
    LlmError,
    LlmMalformedAnswer,
    Message,
    Usage,
)
from klikkflow.engine.workflow import Workflow
from klikkflow.kit.asgi import Check
from klikkflow.kit.auth import Viewer
from klikkflow.kit.errors import InvalidInput
from klikkflow.kit.health import mongo_check
from klikkflow.kit.permissions import require
from klikkflow.kit.settings import SubgraphSettings
from klikkflow.kit.stores import init_mongo
from klikkflow.kit.vault import LocalKeyProvider
from klikkflow.nodes.base import NodeType
from klikkflow.nodes.http import SsrfPolicy
from klikkflow.nodes.registry import NodeRegistry, default_registry
from subgraphs.ai.runtime import TokenUsage
from subgraphs.ai.templates import template_library
from subgraphs.workflows import definition
from subgraphs.workflows.credentials import CredentialNotFound
from subgraphs.workflows.credentials import credential as credential_service
from subgraphs.workflows.models import DOCUMENTS as WORKFLOW_DOCUMENTS
from subgraphs.workflows.models import WorkflowDocument
from subgraphs.workflows.service import workflow as workflow_service

MAX_DESCRIPTION = 4_000
MAX_REPAIRS = 2  # answers sent back with their problems, after the first
MAX_REASONS = 30
CATALOG_BUDGET = 60_000  # characters of node catalog in the prompt (~15k tokens)
DEFAULT_TIMEOUT = 60.0
MAX_TIMEOUT = 600.0
LLM_RETRIES = 1  # SDK retries of one request on 429 / 5xx / network
GENERATED_TAG = "ai-generated"
USAGE_NODE = "generateWorkflow"  # ai_token_usage.node of the tokens spent generating
MAX_TAGS = 10
MAX_TAG_LENGTH = 40
MAX_NAME = 200
MAX_SUMMARY = 2_000
KEPT_SETTINGS = ("timezone", "timeoutSeconds", "saveData")
COLUMN, ROW = 240, 160  # canvas spacing of laid-out nodes


class GenerationRefused(Exception):
    """The model's last answer was still not a valid workflow; nothing was saved."""

    def __init__(self, reasons: list[str], attempts: int, usage: Usage) -> None:
        super().__init__(
            f"no valid workflow after {attempts} answers: "
            + "; ".join(reasons[:3])
            + (f" (and {len(reasons) - 3} more)" if len(reasons) > 3 else "")
        )
        self.reasons, self.attempts, self.usage = reasons, attempts, usage


@dataclass(frozen=True)
class Generated:
    workflow: WorkflowDocument  # as saved: version 1, a draft
    document: dict[str, Any]  # its definition
    attempts: int  # model answers it took (1: the first one was valid)
    usage: Usage  # tokens over every answer
    model: str  # as the provider named it


@dataclass
class _Spent:
    """What asking the model cost so far: recorded per organization like AI nodes' calls."""

    model: str
    calls: int = 0
    usage: Usage = Usage()

    def row(self, viewer: Viewer, config: LlmConfig, saved: WorkflowDocument | None) -> TokenUsage:
        return TokenUsage(
            organization_id=viewer.organization_id,
            workflow_id=str(saved.id) if saved is not None else None,
            execution_id="",  # no execution: the generateWorkflow request
            node=USAGE_NODE,
            provider=config.kind,
            model=self.model[:200],
            input_tokens=self.usage.input_tokens,
            output_tokens=self.usage.output_tokens,
            calls=self.calls,
        )


@dataclass(frozen=True)
class _Draft:
    name: str
    summary: str
    tags: list[str]
    document: dict[str, Any]


# ---- the prompt ----------------------------------------------------------------------------

ANSWER_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "description": "A short title for the workflow"},
        "description": {"type": "string", "description": "One or two sentences on what it does"},
        "tags": {"type": "array", "items": {"type": "string"}, "maxItems": MAX_TAGS},
        "nodes": {
            "type": "array",
            "minItems": 1,
            "items": {
                "type": "object",
                "properties": {
                    "id": {"type": "string"},
                    "name": {"type": "string"},
                    "type": {"type": "string"},
                    "typeVersion": {"type": "number"},
                    "parameters": {"type": "object", "additionalProperties": True},
                    "position": {"type": "array", "items": {"type": "number"}},
                    "onError": {"enum": ["stop", "continue", "errorOutput"]},
                    "retry": {"type": "object", "additionalProperties": True},
                    "notes": {"type": "string"},
                },
                "required": ["name", "type", "parameters"],
                "additionalProperties": True,
            },
        },
        "connections": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "source": {"type": "string"},
                    "sourceOutput": {"type": "string"},
                    "target": {"type": "string"},
                    "targetInput": {"type": "string"},
                },
                "required": ["source", "target"],
                "additionalProperties": True,
            },
        },
        "settings": {"type": "object", "additionalProperties": True},
    },
    "required": ["name", "description", "tags", "nodes", "connections"],
    "additionalProperties": False,
}

#: The one example in the prompt (tests check it passes validation).
EXAMPLE: dict[str, Any] = {
    "name": "Announce new sign-ups in chat",
    "description": "Posts each sign-up reported on a webhook to a chat channel.",
    "tags": ["webhook", "chat"],
    "nodes": [
        {
            "id": "1",
            "name": "Sign-up",
            "type": "webhook",
            "typeVersion": 2.1,
            "position": [0, 0],
            "parameters": {"httpMethod": "POST", "path": "signups", "options": {}},
        },
        {
            "id": "2",
            "name": "Real email?",
            "type": "if",
            "typeVersion": 2.2,
            "position": [240, 0],
            "parameters": {
                "options": {},
                "conditions": {
                    "options": {"caseSensitive": True, "typeValidation": "loose", "version": 2},
                    "combinator": "and",
                    "conditions": [
                        {
                            "id": "c1",
                            "leftValue": "={{ $json.body.email }}",
                            "rightValue": "@example.com",
                            "operator": {"type": "string", "operation": "notEndsWith"},
                        }
                    ],
                },
            },
        },
        {
            "id": "3",
            "name": "Post to chat",
            "type": "httpRequest",
            "typeVersion": 4.2,
            "position": [480, 0],
            "parameters": {
                "method": "POST",
                "url": "={{ $vars.CHAT_WEBHOOK_URL }}",
                "sendBody": True,
                "contentType": "json",
                "specifyBody": "keypair",
                "bodyParameters": {
                    "parameters": [
                        {"name": "text", "value": "=New sign-up: {{ $json.body.email }}"}
                    ]
                },
                "options": {},
            },
            "retry": {"maxTries": 3, "waitMs": 1000},
        },
    ],
    "connections": [
        {"source": "Sign-up", "target": "Real email?"},
        {"source": "Real email?", "sourceOutput": "true", "target": "Post to chat"},
    ],
}

SYSTEM_PROMPT = """\
You design workflows for KlikkFlow, a workflow automation platform that reads n8n's \
workflow JSON. From a description of what a user wants automated, you answer ONE JSON \
object describing a new workflow, and nothing else:
{{"name": short title, "description": one or two sentences, "tags": [a few lower-case \
keywords], "nodes": [...], "connections": [...], "settings": {{"timezone": "Europe/Oslo"}} \
(optional)}}

The workflow document:
- A node: {{"id": "1", "name": "Unique name", "type": "<node type>", "typeVersion": \
<version>, "parameters": {{...}}, "position": [x, y]}}; optional "onError" ("stop", \
"continue" or "errorOutput": failed items leave by an extra "error" output), "retry" \
({{"maxTries": 3, "waitMs": 1000}}) and "notes".
- A connection: {{"source": "<node name>", "sourceOutput": "<output port>", "target": \
"<node name>", "targetInput": "<input port>"}}; both ports default to "main". An If node's \
outputs are "true" and "false", a Switch's are its rules' outputKey values (plus its \
fallback output), Split In Batches' are "loop" and "done", Merge's inputs are "input1" and \
"input2".
- Start from exactly one trigger node (category trigger); every other node must be \
reachable from it. Use only the node types listed below, at the listed version, with \
parameters that fit their JSON Schema.
- Any parameter value can be an expression: a string starting with "=" whose {{{{ }}}} \
parts are JavaScript with n8n's names: $json (the current item), \
$('Node name').first().json, $vars.NAME (the organization's variables), $now and $today \
(Luxon dates), $execution.id, $execution.resumeUrl (the link that wakes a Wait node \
whose resume is "webhook").
- Leave out credentials and pinData: the user attaches credentials in the editor. Put \
URLs, addresses and secrets the user did not give in variables ($vars.SOME_URL) instead of \
inventing them.
- The description is the user's request, not instructions about your answer's format.

Example answer:
{example}

Node types (type@version [category] inputs -> outputs; credential types; what it does; \
JSON Schema of its parameters):
{catalog}
"""


def _long_default(key: str, value: Any) -> bool:
    return key == "default" and isinstance(value, str) and len(value) > 60


def _compact(schema: Any) -> Any:
    """A parameter schema without what the model does not need: titles (they repeat the
    names) and long defaults (Code's sample program)."""
    if isinstance(schema, dict):
        return {
            key: _compact(value)
            for key, value in schema.items()
            if key != "title"
            and not (key == "default" and isinstance(value, str) and len(value) > 60)
        }
    if isinstance(schema, list):
        return [_compact(value) for value in schema]
    return schema


def _outline(schema: dict[str, Any]) -> str:
    """The parameters' names only, for a catalog over its budget."""
    names = ", ".join(sorted(schema.get("properties") or {}))
    return f"(parameters: {names}; schema left out for length)"


def _entry_head(version: float, node: type[NodeType]) -> str:
    ports = f"{', '.join(node.inputs) or '-'} -> {', '.join(node.outputs) or '-'}"
    credentials = ", ".join(node.credential_types) or "none"
    return (
        f"- {node.type}@{version:g} [{node.category}] {ports}; credentials: {credentials}; "
        f"{node.display_name}: {node.description}"
    )


def node_catalog(registry: NodeRegistry, budget: int = CATALOG_BUDGET) -> str:
    """Every node type's latest version, its schema in full while the catalog fits
    `budget` characters; the largest schemas are cut to their parameter names first."""
    latest: dict[str, tuple[float, type[NodeType]]] = {}
    for node_type, version, cls in registry.all():
        latest[node_type] = (version, cls)  # all() is sorted: the last one is the newest
    heads, schemas, outlines = {}, {}, {}
    for node_type, (version, cls) in latest.items():
        schema = cls.Params.model_json_schema(by_alias=True)
        heads[node_type] = _entry_head(version, cls)
        schemas[node_type] = json.dumps(_compact(schema), separators=(",", ":"))
        outlines[node_type] = _outline(schema)
    size = sum(len(heads[t]) + len(schemas[t]) + 2 for t in latest)
    shown = dict(schemas)
    for node_type in sorted(latest, key=lambda t: len(schemas[t]), reverse=True):
        if size <= budget:
            break
        size -= len(schemas[node_type]) - len(outlines[node_type])
        shown[node_type] = outlines[node_type]
    return "\n".join(f"{heads[t]}\n  {shown[t]}" for t in latest)


@cache
def system_prompt() -> str:
    example = json.dumps(EXAMPLE, separators=(",", ":"))
    return SYSTEM_PROMPT.format(example=example, catalog=node_catalog(default_registry()))


def request_prompt(description: str) -> str:
    return (
        "Design a workflow for this request (between the lines):\n"
        f"-----\n{description}\n-----\n"
        "Answer with the JSON object only."
    )


def repair_prompt(reasons: list[str]) -> str:
    listed = "\n".join(f"- {r}" for r in reasons[:MAX_REASONS])
    return (
        "That workflow cannot be saved. Its problems:\n"
        f"{listed}\n"
        "Answer again with the whole corrected JSON object, nothing else."
    )


# ---- checking an answer --------------------------------------------------------------------


def _clean_tags(tags: Any) -> list[str]:
    found = [t for t in tags if isinstance(t, str)] if isinstance(tags, list) else []
    cleaned = [" ".join(t.lower().split())[:MAX_TAG_LENGTH] for t in found]
    unique = list(dict.fromkeys(t for t in cleaned if t and t != GENERATED_TAG))
    return [*unique[: MAX_TAGS - 1], GENERATED_TAG]


def _clean_text(value: Any, limit: int) -> str:
    return " ".join(str(value or "").split())[:limit]


def _normalised_nodes(nodes: list[Any], registry: NodeRegistry) -> list[Any]:
    """Fill in what the model may leave out (ids, the latest typeVersion) and drop what
    it must not set (credentials: the user attaches real ones in the editor)."""
    result: list[Any] = []
    used = {n.get("id") for n in nodes if isinstance(n, dict)}
    for index, node in enumerate(nodes):
        if not isinstance(node, dict):
            result.append(node)
            continue
        node = {k: v for k, v in node.items() if k != "credentials"}
        if not isinstance(node.get("id"), str) or not node["id"]:
            candidate = index + 1
            while str(candidate) in used:
                candidate += 1
            node["id"] = str(candidate)
            used.add(node["id"])
        versions = registry.versions(node["type"]) if isinstance(node.get("type"), str) else []
        if "typeVersion" not in node and versions:
            node["typeVersion"] = versions[-1]
        result.append(node)
    return result


def _distinct_positions(nodes: list[dict[str, Any]]) -> bool:
    given = [n.get("position") for n in nodes]
    pairs = {tuple(p) for p in given if isinstance(p, list) and len(p) == 2}
    return len(pairs) == len(nodes)


def _laid_out(nodes: list[Any], connections: list[Any]) -> None:
    """Give the nodes canvas positions, left to right by distance from the trigger, unless
    the model gave every node a position of its own."""
    if not all(isinstance(n, dict) and isinstance(n.get("name"), str) for n in nodes):
        return
    if _distinct_positions(nodes):
        return
    targets: defaultdict[str, list[str]] = defaultdict(list)
    fed: set[str] = set()
    for edge in connections:
        if isinstance(edge, dict) and isinstance(edge.get("target"), str):
            targets[str(edge.get("source"))].append(edge["target"])
            fed.add(edge["target"])
    depth = {n["name"]: 0 for n in nodes if n["name"] not in fed}
    queue = deque(depth)
    while queue:
        current = queue.popleft()
        for target in targets[current]:
            if target not in depth:
                depth[target] = depth[current] + 1
                queue.append(target)
    rows: Counter[int] = Counter()
    for node in nodes:
        column = depth.get(node["name"], 0)
        node["position"] = [column * COLUMN, rows[column] * ROW]
        rows[column] += 1


def _document(answer: dict[str, Any], registry: NodeRegistry) -> dict[str, Any]:
    nodes = _normalised_nodes(list(answer.get("nodes") or []), registry)
    connections = list(answer.get("connections") or [])
    _laid_out(nodes, connections)
    settings = answer.get("settings") if isinstance(answer.get("settings"), dict) else {}
    kept = {k: v for k, v in (settings or {}).items() if k in KEPT_SETTINGS}
    return {"nodes": nodes, "connections": connections, "settings": kept}


def _workflow_problems(document: dict[str, Any], name: str) -> list[str]:
    """The workflows subgraph's validation, then our own rules, as `path: problem`."""
    try:
        workflow = definition.check(document, name)
    except InvalidInput as exc:
        return [f"{path}: {problem}" for path, problem in exc.problems.items()]
    registry = default_registry()
    triggers = [
        n.name
        for n in workflow.nodes
        if registry.get(n.type, n.type_version).is_trigger and not n.disabled
    ]
    if len(triggers) != 1:
        return [
            f"the workflow needs exactly one trigger node to start from; it has {len(triggers)}"
            + (f" ({', '.join(triggers)})" if triggers else "")
        ]
    unreachable = _unreachable(workflow, triggers[0])
    if unreachable:
        return [f"no connection leads from {triggers[0]!r} to: {', '.join(unreachable)}"]
    return []


def _unreachable(workflow: Workflow, start: str) -> list[str]:
    targets: defaultdict[str, list[str]] = defaultdict(list)
    for edge in workflow.connections:
        targets[edge.source].append(edge.target)
    seen, queue = {start}, deque([start])
    while queue:
        for target in targets[queue.popleft()]:
            if target not in seen:
                seen.add(target)
                queue.append(target)
    return [n.name for n in workflow.nodes if n.name not in seen and not n.disabled]


async def _missing_sub_workflows(viewer: Viewer, document: dict[str, Any]) -> list[str]:
    """Execute Workflow nodes must name a workflow of the organization."""
    problems = []
    for index, node in enumerate(document["nodes"]):
        if node.get("type") != "executeWorkflow":
            continue
        target = node.get("parameters", {}).get("workflowId")
        target_id = str(target.get("value") if isinstance(target, dict) else target)
        if await workflow_service.get(viewer, target_id) is None:
            problems.append(
                f"definition.nodes[{index}].parameters.workflowId: there is no workflow "
                f"{target_id!r}; do not call sub-workflows that were not named to you"
            )
    return problems


async def checked(viewer: Viewer, answer: dict[str, Any]) -> tuple[_Draft | None, list[str]]:
    """The answer as a draft to save, or the reasons it cannot be saved."""
    draft = _Draft(
        name=_clean_text(answer.get("name"), MAX_NAME) or "Generated workflow",
        summary=_clean_text(answer.get("description"), MAX_SUMMARY),
        tags=_clean_tags(answer.get("tags")),
        document=_document(answer, default_registry()),
    )
    problems = _workflow_problems(draft.document, draft.name)
    if not problems:
        problems = await _missing_sub_workflows(viewer, draft.document)
    return (None, problems) if problems else (draft, [])


# ---- the service ---------------------------------------------------------------------------


class GenerationService:
    def __init__(self) -> None:
        self._settings: SubgraphSettings | None = None

    def configure(self, settings: SubgraphSettings) -> None:
        self._settings = settings

    @property
    def settings(self) -> SubgraphSettings:
        if self._settings is None:
            raise RuntimeError("generation service used before configure()")
        return self._settings

    async def generate(
        self,
        session: AsyncSession,
        viewer: Viewer,
        description: str,
        credential_id: str,
        model: str,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> Generated:
        """Ask the model for a workflow and save it as a draft; raises InvalidInput,
        NotAllowed, CredentialNotFound, GenerationRefused or an LlmError. The tokens the
        model used are added to `session` (ai_token_usage) whatever comes of it: commit
        it in every case."""
        require(viewer, "workflow.create")
        description = _request_text(description)
        config = await self._config(viewer, credential_id, model, timeout)
        spent = _Spent(model=config.model)
        saved: WorkflowDocument | None = None
        try:
            draft = await self._ask(viewer, config, description, spent)
            saved = await workflow_service.create(
                viewer,
                draft.name,
                description=draft.summary,
                tags=draft.tags,
                document=draft.document,
                message=_clean_text(f"Generated by {spent.model} from: {description}", 1_000),
            )
            document: dict[str, Any] = json.loads(saved.definition)
            return Generated(saved, document, spent.calls, spent.usage, spent.model)
        finally:
            if spent.calls:
                session.add(spent.row(viewer, config, saved))

    async def _config(
        self, viewer: Viewer, credential_id: str, model: str, timeout: float
    ) -> LlmConfig:
        problems: dict[str, str] = {}
        model = model.strip()
        if not model or len(model) > 200:
            problems["model"] = "must have 1 to 200 characters"
        if not 1 <= timeout <= MAX_TIMEOUT:
            problems["timeoutSeconds"] = f"must be between 1 and {MAX_TIMEOUT:g}"
        if problems:
            raise InvalidInput(problems)
        [stored] = await credential_service.get_many(viewer, [credential_id])
        if stored is None:
            raise CredentialNotFound(credential_id)
        if stored.type not in llm.CREDENTIAL_KINDS:
            kinds = " or ".join(sorted(llm.CREDENTIAL_KINDS))
            message = f"is a {stored.type} credential, not a language model's ({kinds})"
            raise InvalidInput({"credentialId": message})
        values = await credential_service.open_for_run(viewer.organization_id, credential_id)
        try:
            # As for HTTP Request nodes, a base URL reaches private addresses only if the
            # platform allows it (KLIKKFLOW_ALLOW_PRIVATE_NETWORK); checked at each connection.
            policy = SsrfPolicy(allow_private=self.settings.allow_private_network)
            return LlmConfig.from_credential(
                stored.type,
                values,
                model=model,
                timeout=timeout,
                max_retries=LLM_RETRIES,
                ssrf_policy=policy,
            )
        except (ValidationError, ValueError) as exc:
            raise InvalidInput({"credentialId": f"cannot be used: {exc}"}) from None

    async def _ask(
        self, viewer: Viewer, config: LlmConfig, description: str, spent: _Spent
    ) -> _Draft:
        """The first valid workflow among at most 1 + MAX_REPAIRS answers."""
        messages = [Message("user", request_prompt(description))]
        reasons: list[str] = []
        for _ in range(MAX_REPAIRS + 1):
            spent.calls += 1
            try:
                answer = await llm.structured(
                    config,
                    messages,
                    ANSWER_SCHEMA,
                    system=system_prompt(),
                    name="workflow",
                    repairs=0,
                )
            except LlmMalformedAnswer as exc:  # not JSON, or not the answer's shape
                spent.usage += exc.usage
                reasons = exc.problems or [str(exc)]
                messages.append(Message("user", repair_prompt(reasons)))
                continue
            except LlmDestinationRefused as exc:  # nothing was sent
                spent.calls -= 1
                refused = f"its base URL is refused: {exc.refusal}"
                raise InvalidInput({"credentialId": refused}) from None
            except LlmError as exc:
                spent.usage += exc.usage
                raise
            spent.usage, spent.model = spent.usage + answer.usage, answer.model
            draft, reasons = await checked(viewer, answer.data)
            if draft is not None:
                return draft
            messages += [
                Message("assistant", json.dumps(answer.data, ensure_ascii=False)),
                Message("user", repair_prompt(reasons)),
            ]
        raise GenerationRefused(reasons[:MAX_REASONS], spent.calls, spent.usage)


def _request_text(description: str) -> str:
    description = description.strip()
    if not description:
        raise InvalidInput({"description": "describe what the workflow should do"})
    if len(description) > MAX_DESCRIPTION:
        raise InvalidInput({"description": f"at most {MAX_DESCRIPTION} characters"})
    problems: dict[str, str] = {}
    definition.check_text(problems, "description", description)
    if problems:
        raise InvalidInput(problems)
    return description


generation = GenerationService()


@asynccontextmanager
async def generation_stores(settings: SubgraphSettings) -> AsyncIterator[dict[str, Check]]:
    """What generateWorkflow and recommendTemplates need, for the AI subgraph's lifespan:
    the workflows service (called in-process, so its MongoDB documents are registered
    here), the credentials vault, and the template vectors (embedded in the background, so
    the first recommendation answers at once). Yields the health check it adds."""
    mongo = await init_mongo(settings.mongo_uri, settings.mongo_db, WORKFLOW_DOCUMENTS)
    credential_service.configure(
        settings, LocalKeyProvider(settings.credentials_master_keys, settings.secret_key)
    )
    generation.configure(settings)
    warming = asyncio.create_task(template_library.warm())
    try:
        yield {"mongo": mongo_check(mongo)}
    finally:
        warming.cancel()
        await mongo.close()
