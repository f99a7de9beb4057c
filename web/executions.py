"""The execution pages: the list (live while runs are unfinished, cancel), one execution
(its header and node-by-node timeline with every node's input and output items, live
over SSE while it runs, cancel, run again, retry a failed one from its failed node,
delete a finished one), and "Run" from a workflow's page.

While an execution runs, ``/executions/{id}/events`` opens the router's
``executionEvents`` subscription with the viewer's token and, after each burst of
events, reads the execution again and streams its header and timeline as htmx SSE
events (``head``, ``timeline``); ``done`` after a final status closes the browser's
EventSource. Each event carries the router's cursor as its SSE id, so a browser that
reconnects resumes after the last event it saw (``Last-Event-ID``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response, StreamingResponse

from web.forms import ERROR_FIELDS, Outcome, error_text, outcome
from web.graphql_client import JSON, RouterUnavailable, execute
from web.session import Api, current_token, read_form, safe_next
from web.subscriptions import SubscriptionError, subscribe
from web.templating import is_htmx, render, templates
from web.viewer import load_viewer, render_page

LIST_SIZE = 50
FINAL_STATUSES = ("SUCCEEDED", "FAILED", "CANCELLED")
# The list polls this often while any execution on it is unfinished.
LIST_REFRESH_SECONDS = 2
# A comment this often keeps proxies from closing a quiet stream and tells us the
# browser left (a write to a closed connection fails).
KEEPALIVE_SECONDS = 10.0
# What a node's item view shows at most: the page stays light when a node moved MBs.
ITEMS_SHOWN = 20
ITEM_CHARS_SHOWN = 20_000

SUMMARY_FIELDS = """\
id status mode workflowVersion createdAt startedAt finishedAt
error { message node type } workflow { id name }
"""

LIST_QUERY = f"""\
query Executions($workflowId: ID, $first: Int!) {{
  executions(first: $first, filter: {{workflowId: $workflowId}}) {{
    edges {{ node {{ {SUMMARY_FIELDS} }} }}
  }}
}}
"""

WORKFLOW_NAME_QUERY = "query WorkflowName($id: ID!) { workflow(id: $id) { id name } }"

DETAIL_QUERY = f"""\
query Execution($id: ID!) {{
  execution(id: $id) {{
    {SUMMARY_FIELDS}
    nodes {{
      node runIndex status tries startedAt finishedAt inputs outputs error {{ message }}
    }}
  }}
}}
"""

EVENTS_SUBSCRIPTION = """\
subscription ExecutionEvents($id: ID!, $after: String) {
  executionEvents(executionId: $id, after: $after) { cursor seq type status node at }
}
"""

RUN = f"""\
mutation RunWorkflow($input: RunWorkflowInput!) {{
  runWorkflow(input: $input) {{
    __typename ... on RunWorkflowSuccess {{ execution {{ id }} }} {ERROR_FIELDS}
  }}
}}
"""

_RESTART_SELECTION = f"""\
    __typename ... on RunWorkflowSuccess {{ execution {{ id }} }} {ERROR_FIELDS}
"""

RERUN = f"""\
mutation RerunExecution($input: ExecutionIdInput!) {{
  rerunExecution(input: $input) {{ {_RESTART_SELECTION} }}
}}
"""

RETRY = f"""\
mutation RetryExecution($input: ExecutionIdInput!) {{
  retryExecution(input: $input) {{ {_RESTART_SELECTION} }}
}}
"""

DELETE = f"""\
mutation DeleteExecution($input: ExecutionIdInput!) {{
  deleteExecution(input: $input) {{
    __typename ... on DeleteExecutionSuccess {{ id }} {ERROR_FIELDS}
  }}
}}
"""

CANCEL = f"""\
mutation CancelExecution($input: ExecutionIdInput!) {{
  cancelExecution(input: $input) {{
    __typename ... on CancelExecutionSuccess {{ execution {{ id status }} }} {ERROR_FIELDS}
  }}
}}
"""


# -- reading the router ---------------------------------------------------------------


async def list_executions(api: Api, workflow_id: str | None) -> tuple[list[JSON], str | None]:
    """The newest executions (of one workflow, or all), and an error to show, if any.

    The one place that asks for the list: a paged, filtered query goes here later.
    """
    variables = {"workflowId": workflow_id, "first": LIST_SIZE}
    response = await api.call(LIST_QUERY, variables)
    found = (response.data or {}).get("executions") or {}
    edges = found.get("edges") if isinstance(found, dict) else None
    executions = [e["node"] for e in edges or [] if isinstance(e, dict) and e.get("node")]
    return executions, (error_text(response) if response.errors else None)


def _found_execution(data: JSON | None, errors: str) -> JSON:
    found = (data or {}).get("execution")
    if not isinstance(found, dict):
        raise HTTPException(404, errors or "No such execution.")
    return found


async def load_execution(api: Api, execution_id: str) -> JSON:
    response = await api.call(DETAIL_QUERY, {"id": execution_id})
    return _found_execution(response.data, error_text(response))


# -- what the templates show ----------------------------------------------------------


def _time(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def duration_text(seconds: float) -> str:
    """A duration as a person reads it: 340 ms, 4.2 s, 3 min 5 s, 2 h 10 min."""
    if seconds < 1:
        return f"{max(seconds, 0) * 1000:.0f} ms"
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {secs} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min"


def _duration(started: Any, finished: Any, running: bool) -> str | None:
    """How long it took, or "so far" while it runs; None before it started."""
    start = _time(started)
    if start is None:
        return None
    end = _time(finished)
    if end is not None:
        return duration_text((end - start).total_seconds())
    if running:
        return duration_text((datetime.now(UTC) - start).total_seconds()) + " so far"
    return None


def is_final(execution: JSON) -> bool:
    return execution.get("status") in FINAL_STATUSES


def summary_view(execution: JSON) -> JSON:
    final = is_final(execution)
    workflow = execution.get("workflow") or {}
    return {
        **execution,
        "final": final,
        "status_name": str(execution.get("status", "")).lower(),
        "workflow_id": workflow.get("id"),
        "workflow_name": workflow.get("name") or workflow.get("id") or "—",
        "duration": _duration(execution.get("startedAt"), execution.get("finishedAt"), not final),
    }


@dataclass(frozen=True)
class PortItems:
    """One port's items, as text to read, shortened when huge."""

    port: str
    count: int
    text: str
    shown: int  # items in ``text``
    cut: bool  # ``text`` stops short of the shown items

    @property
    def note(self) -> str | None:
        if self.shown < self.count:
            return f"Showing the first {self.shown} of {self.count} items."
        if self.cut:
            return f"Cut at {ITEM_CHARS_SHOWN:,} characters."
        return None


def port_items(ports: Any) -> list[PortItems]:
    """Each port's items (``{port: [{json: ...}, ...]}``) as pretty JSON."""
    if not isinstance(ports, dict):
        return []
    views = []
    for port, items in ports.items():
        items = items if isinstance(items, list) else [items]
        shown = items[:ITEMS_SHOWN]
        text = json.dumps(shown, indent=2, ensure_ascii=False, default=str)
        cut = len(text) > ITEM_CHARS_SHOWN
        if cut:
            text = text[:ITEM_CHARS_SHOWN] + "\n…"
        views.append(PortItems(str(port), len(items), text, len(shown), cut))
    return views


def node_view(run: JSON, execution_final: bool) -> JSON:
    status = str(run.get("status", ""))
    running = not execution_final and status in ("running", "retrying", "waiting")
    return {
        **run,
        "duration": _duration(run.get("startedAt"), run.get("finishedAt"), running),
        "input_ports": port_items(run.get("inputs")),
        "output_ports": port_items(run.get("outputs")),
    }


def detail_context(execution: JSON) -> JSON:
    view = summary_view(execution)
    nodes = [node_view(run, view["final"]) for run in execution.get("nodes") or []]
    return {"execution": view, "nodes": nodes, "notice": None, "outcome": None}


# -- the list -------------------------------------------------------------------------


async def _list_context(request: Request, workflow_id: str | None) -> dict[str, Any]:
    executions, load_error = await list_executions(Api(request), workflow_id)
    views = [summary_view(e) for e in executions]
    if workflow_id:
        list_url = request.url_for("workflow_executions", workflow_id=workflow_id).path
    else:
        list_url = request.url_for("executions").path
    return {
        "nav": "executions",
        "executions": views,
        "load_error": load_error,
        "live": any(not e["final"] for e in views),
        "refresh_seconds": LIST_REFRESH_SECONDS,
        "workflow": {"id": workflow_id} if workflow_id else None,
        "list_url": str(list_url),
        "notice": None,
        "outcome": None,
    }


async def _list(request: Request, workflow_id: str | None) -> Response:
    context = await _list_context(request, workflow_id)
    if is_htmx(request) and request.headers.get("HX-Target") == "execution-list":
        return render(request, "partials/execution_list.html", context)
    context["viewer"] = await load_viewer(request, required=True)
    if workflow_id is not None:
        context["workflow"] = await _workflow_name(Api(request), workflow_id, context["executions"])
    return render(request, "pages/executions.html", context)


async def _workflow_name(api: Api, workflow_id: str, executions: list[JSON]) -> JSON:
    for execution in executions:
        workflow = execution.get("workflow") or {}
        if workflow.get("name"):
            return {"id": workflow_id, "name": workflow["name"]}
    response = await api.call(WORKFLOW_NAME_QUERY, {"id": workflow_id})
    workflow = (response.data or {}).get("workflow")
    if not isinstance(workflow, dict):
        raise HTTPException(404, error_text(response) or "No such workflow.")
    return workflow


async def executions_page(request: Request) -> Response:
    return await _list(request, None)


async def workflow_executions_page(request: Request) -> Response:
    return await _list(request, request.path_params["workflow_id"])


# -- one execution ----------------------------------------------------------------------


async def execution_page(request: Request) -> Response:
    viewer = None if is_htmx(request) else await load_viewer(request, required=True)
    execution = await load_execution(Api(request), request.path_params["execution_id"])
    context = {"nav": "executions", "viewer": viewer, **detail_context(execution)}
    return await render_page(
        request, "pages/execution.html", context, fragment="partials/execution_detail.html"
    )


async def cancel_execution(request: Request) -> Response:
    """Cancel; answer with what the form came from: the list, or the execution's header."""
    form = await read_form(request)
    execution_id = request.path_params["execution_id"]
    api = Api(request)
    result = outcome(await api.call(CANCEL, {"input": {"id": execution_id}}), "cancelExecution")
    notice = "Cancelled." if result.ok else None
    if is_htmx(request) and request.headers.get("HX-Target") == "execution-list":
        context = await _list_context(request, form.get("workflow_id") or None)
        context |= {"notice": notice, "outcome": result}
        return render(request, "partials/execution_list.html", context)
    if is_htmx(request):
        context = detail_context(await load_execution(api, execution_id))
        context |= {"notice": notice, "outcome": result}
        return render(request, "partials/execution_head.html", context)
    if not result.ok:
        raise HTTPException(400, result.message or "The execution could not be cancelled.")
    default = str(request.url_for("execution", execution_id=execution_id).path)
    return RedirectResponse(safe_next(form.get("next"), default), status_code=303)


def _go(request: Request, target: str) -> Response:
    """To another page: htmx follows HX-Redirect, a plain form a 303."""
    if is_htmx(request):
        return Response(status_code=204, headers={"HX-Redirect": target})
    return RedirectResponse(target, status_code=303)


def _refused(request: Request, result: Outcome, title: str) -> Response:
    """Why a button on the execution or workflow page did nothing: in place of its
    result (htmx), or as a page."""
    if is_htmx(request):
        return render(request, "partials/execution_run_result.html", {"outcome": result})
    context = {"title": title, "message": result.message, "viewer": None}
    return render(request, "pages/message.html", context, status_code=400)


def _opened(request: Request, result: Outcome) -> Response:
    """After runWorkflow, rerunExecution or retryExecution: the new execution's page."""
    if result.ok:
        execution_id = result.get("execution")["id"]
        return _go(request, str(request.url_for("execution", execution_id=execution_id).path))
    return _refused(request, result, "Not started")


async def run_workflow(request: Request) -> Response:
    """The workflow page's Run button: a manual run of its latest version."""
    await read_form(request)
    fields = {"workflowId": request.path_params["workflow_id"]}
    return _opened(request, outcome(await Api(request).call(RUN, {"input": fields}), "runWorkflow"))


async def _restart(request: Request, mutation: str, root: str) -> Response:
    await read_form(request)
    variables = {"input": {"id": request.path_params["execution_id"]}}
    result = outcome(await Api(request).call(mutation, variables), root)
    if result.typename == "NotFoundError":
        raise HTTPException(404, result.message or "No such execution.")
    return _opened(request, result)


async def rerun_execution(request: Request) -> Response:
    """Run the workflow again, on its latest version, with the items this execution
    started with (the router keeps them)."""
    return await _restart(request, RERUN, "rerunExecution")


async def retry_execution(request: Request) -> Response:
    """Go on with a failed execution from its failed node, as a new execution."""
    return await _restart(request, RETRY, "retryExecution")


async def delete_execution(request: Request) -> Response:
    """Delete a finished execution and its log; then to the list it was opened from."""
    form = await read_form(request)
    execution_id = request.path_params["execution_id"]
    variables = {"input": {"id": execution_id}}
    result = outcome(await Api(request).call(DELETE, variables), "deleteExecution")
    if result.typename == "NotFoundError":
        raise HTTPException(404, result.message or "No such execution.")
    if not result.ok:
        return _refused(request, result, "Not deleted")
    return _go(request, safe_next(form.get("next"), str(request.url_for("executions").path)))


# -- live updates -------------------------------------------------------------------------


def sse_event(name: str, data: str, event_id: str | None = None) -> str:
    """One server-sent event; every line of ``data`` gets its own ``data:`` field."""
    lines = [f"event: {name}"]
    if event_id:
        lines.append(f"id: {event_id}")
    lines += [f"data: {line}" for line in data.splitlines() or [""]]
    return "\n".join(lines) + "\n\n"


def _fragments(request: Request, execution: JSON, event_id: str | None) -> str:
    context = {"request": request, **detail_context(execution)}
    head = templates.get_template("partials/execution_head.html").render(context)
    timeline = templates.get_template("partials/execution_timeline.html").render(context)
    return sse_event("head", head, event_id) + sse_event("timeline", timeline)


class _Reader:
    """Reads the router's subscription in a task into a queue; None marks its end."""

    def __init__(self, request: Request, execution_id: str, token: str, after: str | None):
        self.queue: asyncio.Queue[JSON | None] = asyncio.Queue()
        api = Api(request)
        self._stream = subscribe(
            api.http,
            api.url,
            EVENTS_SUBSCRIPTION,
            {"id": execution_id, "after": after},
            token,
            api.forwarded_for,
        )
        self.task = asyncio.create_task(self._read())

    async def _read(self) -> None:
        try:
            async for data in self._stream:
                event = data.get("executionEvents")
                if isinstance(event, dict):
                    await self.queue.put(event)
        except (SubscriptionError, RouterUnavailable):
            pass  # the stream ends; the browser reconnects and we subscribe again
        finally:
            await self.queue.put(None)

    async def next_batch(self) -> list[JSON | None]:
        """The next event and any that came with it (one page update per burst)."""
        batch = [await asyncio.wait_for(self.queue.get(), KEEPALIVE_SECONDS)]
        while not self.queue.empty():
            batch.append(self.queue.get_nowait())
        return batch

    async def close(self) -> None:
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.task


async def _live(
    request: Request, execution: JSON, token: str, after: str | None
) -> AsyncIterator[str]:
    execution_id = str(execution["id"])
    # What changed between the page's render and this stream's start comes first.
    yield _fragments(request, execution, after)
    if is_final(execution):
        yield sse_event("done", "")
        return
    reader = _Reader(request, execution_id, token, after)
    try:
        while True:
            try:
                batch = await reader.next_batch()
            except TimeoutError:
                yield ": keep-alive\n\n"
                continue
            events = [e for e in batch if e is not None]
            cursor = str(events[-1]["cursor"]) if events else None
            execution = await _reload(request, execution_id, token) or execution
            yield _fragments(request, execution, cursor)
            if is_final(execution):
                yield sse_event("done", "")
                return
            if None in batch:
                return  # the subscription ended early: the browser will reconnect
    finally:
        await reader.close()


async def _reload(request: Request, execution_id: str, token: str) -> JSON | None:
    """The execution now, or None when the router did not say (the stream goes on)."""
    api = Api(request)
    try:
        response = await execute(
            api.http, api.url, DETAIL_QUERY, {"id": execution_id}, token, api.forwarded_for
        )
    except RouterUnavailable:
        return None
    found = (response.data or {}).get("execution")
    return found if isinstance(found, dict) else None


async def execution_events(request: Request) -> Response:
    """The execution's header and timeline as htmx SSE events until it finishes."""
    # Loaded before the stream starts: a refreshed session's cookies can still be set.
    execution = await load_execution(Api(request), request.path_params["execution_id"])
    token = current_token(request)
    if token is None:
        raise HTTPException(401, "Not signed in.")
    after = request.headers.get("Last-Event-ID") or None
    return StreamingResponse(
        _live(request, execution, token, after),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
