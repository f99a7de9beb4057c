"""The shipped template library (subgraphs/ai/template_library): every template passes the workflows
subgraph's own validation (document schema + engine compile), and the engine runs them
against a local stand-in of the chat, feed and business APIs they call."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse
from zoneinfo import ZoneInfo

import pytest

from klikkflow.engine.graph import compile_workflow
from klikkflow.engine.runner import Runner
from klikkflow.engine.state import ExecutionStatus, State
from klikkflow.nodes.http import SsrfPolicy
from klikkflow.nodes.registry import default_registry
from subgraphs.ai.templates import TemplateFileError, TemplateLibrary, load_templates
from subgraphs.workflows import definition

TEMPLATES = Path(__file__).resolve().parents[2] / "subgraphs" / "ai" / "template_library"
SECRET = "template-test-secret"
RESUME_URL = "https://flows.example/webhook-waiting/e1/token"


def template(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((TEMPLATES / f"{name}.json").read_text())
    return loaded


# ---- the library ---------------------------------------------------------------------------


def test_the_library_has_at_least_twenty_described_templates():
    templates = load_templates(TEMPLATES)  # refuses a file that is not a template
    assert len(templates) >= 20
    assert len({t.name for t in templates}) == len(templates)
    for found in templates:
        assert len(found.description) >= 60, found.id
        assert all(t == t.strip().lower() for t in found.tags), found.id


def test_a_file_that_is_not_a_template_is_named(tmp_path: Path):
    (tmp_path / "a.json").write_text(json.dumps(template("uptime-monitor")))
    (tmp_path / "b.json").write_text('{"name": "No workflow", "description": "d", "tags": ["x"]}')
    with pytest.raises(TemplateFileError, match=r"^template b.json: must be an object with"):
        load_templates(tmp_path)


async def test_an_empty_library_recommends_nothing(tmp_path: Path):
    assert await TemplateLibrary(tmp_path).recommend("anything", 5) == []


@pytest.mark.parametrize("path", sorted(TEMPLATES.glob("*.json")), ids=lambda p: p.stem)
def test_every_template_passes_the_workflow_validation(path: Path):
    found = json.loads(path.read_text())
    workflow = definition.check(found["workflow"], found["name"])  # raises with the problems
    assert workflow.nodes
    assert not definition.credential_ids(workflow)
    assert len({tuple(n.position) for n in workflow.nodes}) == len(workflow.nodes)


# ---- running them --------------------------------------------------------------------------


class _Apis(BaseHTTPRequestHandler):
    """Chat incoming-webhook, health, RSS feed, orders, rates and record APIs."""

    received: list[tuple[str, str, Any]] = []
    health_status = 200

    def log_message(self, *args: Any) -> None:
        return None

    def _reply(self, status: int, body: Any, content_type: str = "application/json") -> None:
        data = body.encode() if isinstance(body, str) else json.dumps(body).encode()
        self.send_response(status)
        self.send_header("content-type", content_type)
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        url = urlparse(self.path)
        query = parse_qs(url.query)
        if url.path == "/health":
            self._reply(_Apis.health_status, {"ok": _Apis.health_status == 200})
        elif url.path == "/feed":
            self._reply(200, _feed(), "application/rss+xml")
        elif url.path == "/orders":
            # "yesterday" where the template's workflow runs (its settings.timezone)
            today = datetime.now(ZoneInfo("Europe/Oslo")).date()
            assert query["date"] == [(today - timedelta(days=1)).isoformat()]
            self._reply(200, ORDERS)
        elif url.path == "/latest":
            self._reply(200, {"base": "USD", "rates": {"EUR": 0.5, "NOK": 10.0}})
        else:
            self._reply(404, {"error": "no such path"})

    def do_POST(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        body = json.loads(self.rfile.read(length) or b"null")
        _Apis.received.append(("POST", self.path, body))
        self._reply(201, {"ok": True, "path": self.path})


def _feed() -> str:
    now = datetime.now(UTC)
    entries = [("Fresh news", "https://news.example/fresh", now - timedelta(minutes=3))]
    entries.append(("Old news", "https://news.example/old", now - timedelta(days=2)))
    items = "".join(
        f"<item><title><![CDATA[{title}]]></title><link>{link}</link>"
        f"<pubDate>{format_datetime(at)}</pubDate></item>"
        for title, link, at in entries
    )
    return f'<?xml version="1.0"?><rss version="2.0"><channel>{items}</channel></rss>'


ORDERS = [
    {"id": "o1", "status": "paid", "category": "tools", "total": 20.0},
    {"id": "o2", "status": "PAID", "category": "garden", "total": 55.5},
    {"id": "o3", "status": "refunded", "category": "tools", "total": 99.0},
    {"id": "o4", "status": "paid", "category": "tools", "total": 5.0},
]


@pytest.fixture(scope="module")
def apis() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Apis)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


@pytest.fixture(autouse=True)
def _fresh_recording() -> None:
    _Apis.received.clear()


def chat_texts() -> list[str]:
    return [body["text"] for _, path, body in _Apis.received if path == "/chat"]


def template_runner(name: str, apis: str) -> Runner:
    registry = default_registry()
    found = template(name)
    workflow = definition.check(found["workflow"], found["name"])
    variables = {
        "CHAT_WEBHOOK_URL": f"{apis}/chat",
        "HEALTH_CHECK_URL": f"{apis}/health",
        "FEED_URL": f"{apis}/feed",
        "API_BASE_URL": apis,
        "RATES_API_URL": apis,
        "CRM_API_URL": f"{apis}/crm",
        "MARKETING_API_URL": f"{apis}/marketing",
        "INVENTORY_API_URL": apis,
        "WEBHOOK_SECRET": SECRET,
    }
    return Runner(
        compile_workflow(workflow, registry),
        variables=variables,
        resume_url=RESUME_URL,
        node_extras={"ssrf_policy": SsrfPolicy(allowed_hosts=frozenset({"127.0.0.1"}))},
    )


async def run_template(name: str, apis: str, items: list[dict[str, Any]] | None = None) -> State:
    runner = template_runner(name, apis)
    try:
        return await runner.run(items or [{"json": {}}])
    finally:
        runner.close()


def out(state: State, node: str, port: str = "main") -> list[dict[str, Any]]:
    return [i["json"] for i in state.runs[node][-1].outputs[port]]


def webhook(body: Any, headers: dict[str, str] | None = None, **query: str) -> list[Any]:
    return [{"json": {"headers": headers or {}, "params": {}, "query": query, "body": body}}]


async def test_webhook_events_are_posted_to_chat(apis):
    state = await run_template("webhook-to-chat", apis, webhook({"type": "signup", "id": 7}))
    assert state.status == ExecutionStatus.SUCCEEDED, state.error
    [text] = chat_texts()
    assert text.startswith("New event *signup*:")
    assert '"id":7' in text
    assert out(state, "Acknowledge") == [{"received": True}]


async def test_a_complete_form_is_announced_and_an_incomplete_one_refused(apis):
    form = {"name": "  ada  ", "email": " Ada@Example.COM ", "message": "Hello!"}
    state = await run_template("form-submission-notify", apis, webhook(form))
    assert state.status == ExecutionStatus.SUCCEEDED, state.error
    assert chat_texts() == ["New contact form message from ada <ada@example.com>:\nHello!"]
    assert state.node_state["Thank you"]["response"]["body"]["ok"] is True
    refused = await run_template("form-submission-notify", apis, webhook({"name": "x"}))
    response = refused.node_state["Missing fields"]["response"]
    assert response["status"] == 400
    assert "email and message" in response["body"]["error"]
    assert "Announce" not in refused.runs


async def test_the_uptime_monitor_alerts_only_when_the_site_is_down(apis):
    _Apis.health_status = 200
    quiet = await run_template("uptime-monitor", apis)
    assert quiet.status == ExecutionStatus.SUCCEEDED, quiet.error
    assert chat_texts() == []
    _Apis.health_status = 503
    try:
        alerted = await run_template("uptime-monitor", apis)
    finally:
        _Apis.health_status = 200
    assert alerted.status == ExecutionStatus.SUCCEEDED, alerted.error
    [text] = chat_texts()
    assert "/health is down: HTTP 503" in text


async def test_only_new_feed_entries_are_posted(apis):
    state = await run_template("rss-feed-to-chat", apis)
    assert state.status == ExecutionStatus.SUCCEEDED, state.error
    assert len(out(state, "Parse items")) == 2
    assert chat_texts() == [":newspaper: Fresh news\nhttps://news.example/fresh"]


async def test_the_error_workflow_describes_the_failure(apis):
    failure = {
        "execution": {
            "id": "e1",
            "mode": "webhook",
            "retryOf": None,
            "error": {"message": "boom", "type": "NodeError"},
            "lastNodeExecuted": "Charge",
        },
        "workflow": {"id": "w1", "name": "Billing"},
    }
    state = await run_template("error-notifier", apis, [{"json": failure}])
    assert state.status == ExecutionStatus.SUCCEEDED, state.error
    assert chat_texts() == [
        ":x: Workflow *Billing* failed in node Charge: boom (execution e1, webhook)"
    ]


async def test_the_daily_sales_report_sums_paid_orders_per_category(apis):
    state = await run_template("daily-sales-report", apis)
    assert state.status == ExecutionStatus.SUCCEEDED, state.error
    [text] = chat_texts()
    assert text.splitlines() == [
        "Sales yesterday: 80.50 in 3 orders",
        "• garden: 1 orders, 55.50",
        "• tools: 2 orders, 25.00",
    ]


async def test_contacts_are_cleaned_and_deduplicated(apis):
    rows = [
        {"name": "grace hopper", "email": " Grace@Example.com"},
        {"name": "Ada", "email": "ada@example.com"},
        {"name": "ada again", "email": "ADA@example.com "},
        {"name": "nobody", "email": "not-an-email"},
    ]
    state = await run_template("deduplicate-contacts", apis, [{"json": r} for r in rows])
    assert state.status == ExecutionStatus.SUCCEEDED, state.error
    assert out(state, "By name") == [
        {"name": "Ada", "email": "ada@example.com"},
        {"name": "Grace Hopper", "email": "grace@example.com"},
    ]


async def test_only_correctly_signed_webhooks_are_processed(apis):
    body = {"event": "paid", "amount": 12}
    # What JSON.stringify gives for this body, signed with the shared secret.
    signature = hmac.new(
        SECRET.encode(), json.dumps(body, separators=(",", ":")).encode(), hashlib.sha256
    ).hexdigest()
    good = await run_template(
        "verify-signed-webhook", apis, webhook(body, {"x-signature": f"sha256={signature}"})
    )
    assert good.status == ExecutionStatus.SUCCEEDED, good.error
    assert out(good, "Process event") == [{"event": body, "verified": True}]
    forged = await run_template(
        "verify-signed-webhook", apis, webhook(body, {"x-signature": "sha256=" + "0" * 64})
    )
    assert forged.node_state["Unauthorized"]["response"]["status"] == 401
    assert "Process event" not in forged.runs


async def test_python_cleanup_types_values_and_drops_empty_rows(apis):
    rows = [
        {"name": " Ada ", "age": "36", "score": "9.5", "joined": "10.12.2024"},
        {"name": "", "age": "", "score": None, "joined": ""},
        {"name": "Grace", "age": "85", "score": "7", "joined": "12/09/1906"},
    ]
    state = await run_template("python-data-cleanup", apis, [{"json": r} for r in rows])
    assert state.status == ExecutionStatus.SUCCEEDED, state.error
    assert out(state, "Number rows") == [
        {"row": 1, "name": "Ada", "age": 36, "score": 9.5, "joined": "2024-12-10"},
        {"row": 2, "name": "Grace", "age": 85, "score": 7, "joined": "1906-12-09"},
    ]


async def test_the_json_endpoint_converts_an_amount(apis):
    state = await run_template(
        "json-api-endpoint", apis, webhook(None, amount="100", currency="nok")
    )
    assert state.status == ExecutionStatus.SUCCEEDED, state.error
    body = state.node_state["Answer"]["response"]["body"]
    assert body == {
        "ok": True,
        "amountUsd": 100,
        "currency": "NOK",
        "rate": 10.0,
        "converted": 1000,
    }


async def test_leads_are_scored_and_routed(apis):
    hot = {"email": "cto@big.example", "company": "Big", "employees": 500, "source": "referral"}
    cold = {"email": "me@tiny.example", "employees": 2}
    state = await run_template("lead-routing", apis, webhook(hot) + webhook(cold))
    assert state.status == ExecutionStatus.SUCCEEDED, state.error
    deals = [body for _, path, body in _Apis.received if path == "/crm/deals"]
    assert deals == [{"email": "cto@big.example", "company": "Big", "score": 70}]
    assert [c["email"] for c in out(state, "Record cold lead")] == ["me@tiny.example"]


async def test_invalid_records_fail_the_execution_with_the_reason(apis):
    good = await run_template(
        "validate-or-fail", apis, webhook({"records": [{"id": "r1", "amount": 3}]})
    )
    assert good.status == ExecutionStatus.SUCCEEDED, good.error
    bad = await run_template(
        "validate-or-fail", apis, webhook({"records": [{"id": "r2", "amount": -1}]})
    )
    assert bad.status == ExecutionStatus.FAILED
    assert bad.error is not None
    assert "an id and a positive amount are required" in bad.error.message


async def test_order_lines_are_reserved_one_by_one(apis):
    order = {"id": "ord-9", "lines": [{"sku": "A", "quantity": 2}, {"sku": "B", "quantity": 1}]}
    state = await run_template("order-fulfilment", apis, webhook(order))
    assert state.status == ExecutionStatus.SUCCEEDED, state.error
    reserved = [body for _, path, body in _Apis.received if path == "/reservations"]
    assert reserved == [
        {"orderId": "ord-9", "sku": "A", "quantity": 2},
        {"orderId": "ord-9", "sku": "B", "quantity": 1},
    ]
    assert len(out(state, "Gather reservations")[0]["reservations"]) == 2


async def test_the_approval_workflow_sends_its_links_and_goes_on_when_one_is_opened(apis):
    request = {"summary": "new laptop", "requester": "ada"}
    runner = template_runner("approval-with-wait", apis)
    try:
        state = await runner.run(webhook(request))
        assert state.status == ExecutionStatus.WAITING, state.error
        assert state.parked is not None
        assert state.parked.node == "Wait for decision"
        [text] = chat_texts()
        assert text.splitlines() == [
            "Approval needed: new laptop (requested by ada).",
            f"Approve: {RESUME_URL}?decision=approve",
            f"Reject: {RESUME_URL}?decision=reject",
        ]
        # The approver opens the first link: the call becomes the Wait node's output.
        opened = {"headers": {}, "params": {}, "query": {"decision": "approve"}, "body": {}}
        done = await runner.resume(opened)
    finally:
        runner.close()
    assert done.status == ExecutionStatus.SUCCEEDED, done.error
    assert [body for _, path, body in _Apis.received if path == "/approved"] == [request]
    assert "Rejected" not in done.runs
