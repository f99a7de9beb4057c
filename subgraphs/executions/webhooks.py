"""Webhook ingress: `/webhook/<organization id>/<path>` runs the active workflow that
registered the path and method (its published version); `/webhook-test/<organization
id>/<workflow id>/<path>` runs that workflow's latest saved version, active or not.

The request becomes the Webhook node's item (`headers`, `params`, `query`, `body`), as in
n8n. Authentication (basic, header, HMAC) uses the node's credential. The answer depends
on the node's `responseMode`: `onReceived` answers 202 with the execution id at once,
`lastNode` when the execution ends (its last node's output), `responseNode` when a
Respond to Webhook node runs."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import logging
import secrets
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

from async_lru import alru_cache
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from klikkflow.engine.workflow import NodeSpec, Workflow
from klikkflow.kit import metrics
from klikkflow.kit.auth import Viewer
from klikkflow.kit.stores import object_id
from klikkflow.nodes.triggers import WebhookParams
from subgraphs.executions.models import ExecutionDocument
from subgraphs.executions.models import ExecutionStatus as Status
from subgraphs.executions.service import RUN_EXECUTION, resume_token
from subgraphs.executions.service import execution as execution_service
from subgraphs.workflows.credentials import CredentialNotFound
from subgraphs.workflows.credentials import credential as credential_service
from subgraphs.workflows.models import WebhookRegistration
from subgraphs.workflows.service import VersionNotFound, WorkflowNotFound
from subgraphs.workflows.service import workflow as workflow_service

log = logging.getLogger("klikkflow.webhooks")
METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD"]
RESPONSE_TIMEOUT_SECONDS = 300
TARGET_TTL_SECONDS = 2.0


class WebhookRefused(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Target:
    organization_id: str
    workflow_id: str
    version: int
    node: NodeSpec
    params: WebhookParams
    workflow: Workflow


def _refuse(status: int, message: str, **extra: Any) -> JSONResponse:
    return JSONResponse({"message": message, **extra}, status_code=status)


@alru_cache(maxsize=10_000, ttl=TARGET_TTL_SECONDS)
async def _cached_target(
    organization_id: str, workflow_id: str | None, path: str, method: str
) -> Target:
    """`_target`, remembered for TARGET_TTL_SECONDS: a webhook under load costs no
    lookups (requests that arrive while it is looked up wait for that one lookup), and
    activation changes reach the ingress within that time."""
    return await _target(organization_id, workflow_id, path, method)


async def _target(organization_id: str, workflow_id: str | None, path: str, method: str) -> Target:
    """The workflow version and Webhook node a request is for."""
    org = object_id(organization_id)
    if org is None:
        raise WebhookRefused(404, "unknown organization")
    version: int | None = None
    if workflow_id is None:
        found = await WebhookRegistration.find_one(
            {"organization_id": org, "path": path, "method": method}
        )
        if found is None:
            raise WebhookRefused(404, f"no active workflow listens on {method} /{path}")
        workflow_id, version = str(found.workflow_id), found.version
    system = Viewer(user_id="", organization_id=organization_id, role="viewer")
    try:
        workflow = await workflow_service.for_run(system, workflow_id, version)
    except (WorkflowNotFound, VersionNotFound):
        raise WebhookRefused(404, "no such workflow") from None
    for node in workflow.nodes:
        if node.type != "webhook" or node.disabled:
            continue
        params = WebhookParams.model_validate(node.parameters)
        if params.path == path and params.http_method == method:
            head = await workflow_service.get(system, workflow_id)
            number = version or (head.version if head else 1)
            return Target(organization_id, workflow_id, number, node, params, workflow)
    raise WebhookRefused(404, f"the workflow has no Webhook node for {method} /{path}")


async def _read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise WebhookRefused(413, f"the body is larger than {limit:,} bytes")
    chunks, size = [], 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise WebhookRefused(413, f"the body is larger than {limit:,} bytes")
            chunks.append(chunk)
    except ClientDisconnect:
        raise WebhookRefused(400, "the client went away") from None
    return b"".join(chunks)


def _parse_body(raw: bytes, content_type: str) -> Any:
    if not raw:
        return {}
    kind = content_type.split(";")[0].strip().lower()
    if kind == "application/json" or kind.endswith("+json"):
        try:
            return json.loads(raw)
        except (ValueError, UnicodeDecodeError) as exc:
            raise WebhookRefused(400, f"the body is not valid JSON: {exc}") from None
    if kind == "application/x-www-form-urlencoded":
        return dict(parse_qsl(raw.decode("utf-8", errors="replace")))
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return {"data": base64.b64encode(raw).decode(), "encoding": "base64"}


async def _authenticate(target: Target, request: Request, raw: bytes) -> None:
    kind = target.params.authentication
    if kind == "none":
        return
    credential_type = {"basicAuth": "httpBasicAuth", "headerAuth": "httpHeaderAuth"}.get(
        kind, "httpHeaderAuth"
    )
    ref = target.node.credentials.get(credential_type)
    if ref is None:
        raise WebhookRefused(500, f"the Webhook node has no {credential_type} credential")
    try:
        secret = await credential_service.open_for_run(target.organization_id, ref.id)
    except CredentialNotFound:
        raise WebhookRefused(500, "the Webhook node's credential is gone") from None
    if not _authorized(kind, secret, request, raw):
        raise WebhookRefused(401, "authorization failed")


def _authorized(kind: str, secret: dict[str, Any], request: Request, raw: bytes) -> bool:
    headers = request.headers
    if kind == "basicAuth":
        expected = f"{secret.get('user', '')}:{secret.get('password', '')}".encode()
        given = headers.get("authorization", "")
        if not given.lower().startswith("basic "):
            return False
        try:
            decoded = base64.b64decode(given[6:].strip(), validate=True)
        except ValueError:
            return False
        return hmac.compare_digest(decoded, expected)
    name, value = str(secret.get("name", "")), str(secret.get("value", ""))
    given = headers.get(name, "")
    if kind == "headerAuth":
        return bool(value) and hmac.compare_digest(given.encode(), value.encode())
    # hmac: the header carries hex(HMAC-SHA256(value, raw body)), optionally "sha256=..."
    digest = hmac.new(value.encode(), raw, hashlib.sha256).hexdigest()
    return bool(value) and hmac.compare_digest(given.removeprefix("sha256=").lower(), digest)


def _item(request: Request, body: Any) -> dict[str, Any]:
    return {
        "json": {
            "headers": dict(request.headers),
            "params": dict(request.path_params),
            "query": dict(request.query_params),
            "body": body,
        }
    }


def _respond(response: dict[str, Any]) -> Response:
    body, status = response.get("body"), int(response.get("status", 200))
    headers = dict(response.get("headers") or {})
    if body is None:
        return Response(status_code=status, headers=headers)
    if isinstance(body, str) and response.get("kind") == "text":
        return Response(body, status_code=status, headers=headers, media_type="text/plain")
    return JSONResponse(body, status_code=status, headers=headers)


async def _last_node(execution_id: str, params: WebhookParams) -> Response:
    done = await ExecutionDocument.get(object_id(execution_id))
    if done is None or done.status != Status.SUCCEEDED:
        error = (done.error or {}).get("message") if done else None
        return _refuse(500, "the workflow failed", executionId=execution_id, error=error)
    items = await execution_service.last_output(done)
    if params.response_data == "noData":
        return Response(status_code=params.response_code)
    if params.response_data == "allEntries":
        return JSONResponse([i["json"] for i in items], status_code=params.response_code)
    return JSONResponse(items[0]["json"] if items else {}, status_code=params.response_code)


async def _handle(request: Request, test: bool) -> Response:
    settings = request.app.state.settings
    organization_id = request.path_params["organization_id"]
    path = request.path_params["path"].strip("/")
    try:
        target = await _cached_target(
            organization_id, request.path_params.get("workflow_id"), path, request.method
        )
        raw = await _read_body(request, settings.webhook_max_body_bytes)
        await _authenticate(target, request, raw)
        body = _parse_body(raw, request.headers.get("content-type", ""))
    except WebhookRefused as exc:
        metrics.webhook_request(str(exc.status))
        return _refuse(exc.status, str(exc))
    state = request.app.state
    execution, cursor = await execution_service.submit_trigger(
        state.redis,
        state.queue,
        object_id(target.organization_id),  # type: ignore[arg-type]
        object_id(target.workflow_id),  # type: ignore[arg-type]
        target.version,
        target.node.name,
        [_item(request, body)],
        "webhook-test" if test else "webhook",
    )
    metrics.webhook_request("started")
    execution_id = str(execution.id)
    mode = target.params.response_mode
    if mode == "onReceived":
        return JSONResponse({"executionId": execution_id}, status_code=202)
    respond = {n.name for n in target.workflow.nodes if n.type == "respondToWebhook"}
    try:
        async with asyncio.timeout(RESPONSE_TIMEOUT_SECONDS):
            respond_nodes = respond if mode == "responseNode" else set()
            response = await execution_service.answer(
                state.redis, execution_id, cursor, respond_nodes
            )
    except TimeoutError:
        return _refuse(504, "the workflow is still running", executionId=execution_id)
    if mode == "responseNode":
        if response:
            return _respond(response)
        return _refuse(
            500, "the execution ended without a Respond to Webhook node", executionId=execution_id
        )
    return await _last_node(execution_id, target.params)


async def resume(request: Request) -> Response:
    """A waiting execution's resume URL: the request (like a Webhook node's item) becomes
    the Wait node's output and the execution goes on."""
    execution_id, token = request.path_params["execution_id"], request.path_params["token"]
    settings = request.app.state.settings
    if not hmac.compare_digest(token, resume_token(settings.secret_key, execution_id)):
        return _refuse(404, "no such waiting execution")
    execution = await ExecutionDocument.get(object_id(execution_id))
    if execution is None or execution.status != Status.WAITING:
        return _refuse(409, "the execution is not waiting")
    try:
        raw = await _read_body(request, settings.webhook_max_body_bytes)
        body = _parse_body(raw, request.headers.get("content-type", ""))
    except WebhookRefused as exc:
        return _refuse(exc.status, str(exc))
    payload = _item(request, body)["json"]
    claimed = await ExecutionDocument.get_pymongo_collection().update_one(
        {"_id": execution.id, "status": Status.WAITING.value, "resume_payload": None},
        {"$set": {"resume_payload": payload}},
    )
    if claimed.modified_count != 1:
        return _refuse(409, "the execution was resumed already")
    job_id = f"{execution_id}:resume:{secrets.token_hex(4)}"
    await request.app.state.queue.enqueue_job(RUN_EXECUTION, execution_id, _job_id=job_id)
    return JSONResponse({"executionId": execution_id}, status_code=202)


async def production(request: Request) -> Response:
    return await _handle(request, test=False)


async def test(request: Request) -> Response:
    return await _handle(request, test=True)


ROUTES = [
    Route("/webhook-waiting/{execution_id}/{token}", resume, methods=METHODS),
    Route("/webhook/{organization_id}/{path:path}", production, methods=METHODS),
    Route("/webhook-test/{organization_id}/{workflow_id}/{path:path}", test, methods=METHODS),
]
