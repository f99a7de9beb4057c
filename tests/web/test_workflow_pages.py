"""The workflow pages over plain HTTP, against the real router and subgraphs: the list with
search, tags and paging, create and import (n8n too, refusals shown in full), the graph,
the generated node forms, conflicts, the JSON view, versions, diff and export."""

from __future__ import annotations

import html
import json
import re
import secrets
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from graphql import build_schema, parse, validate

from tests.factories.graphql import data, gql
from web import workflows
from web.workflow_forms import node_of_path, param_fields, read_parameters
from web.workflow_graph import NODE_HEIGHT, NODE_WIDTH, PORT_SPACING, layout, render_svg

ROOT = Path(__file__).parents[2]
BENCH_A = ROOT / "examples" / "n8n" / "bench-a.json"

CREATE = """
mutation Create($input: CreateWorkflowInput!) {
  createWorkflow(input: $input) { __typename ... on CreateWorkflowSuccess { workflow { id } } }
}
"""


@pytest.fixture
async def signed_in(web_url: str) -> AsyncIterator[httpx.AsyncClient]:
    """A browser-like client (cookies kept, redirects not followed) of a new owner."""
    async with httpx.AsyncClient(base_url=web_url, trust_env=False, timeout=20) as client:
        await client.get("/signup")
        tag = secrets.token_hex(4)
        account = {
            "email": f"workflows-{tag}@example.com",
            "name": f"Flow Tester {tag}",
            "password": f"{secrets.token_urlsafe(12)}-Vx9!",
            "organizationName": f"Flow Org {tag}",
            "csrf_token": client.cookies["kf_csrf"],
        }
        response = await client.post("/signup", data=account)
        assert response.status_code == 303, response.text
        yield client


def token(client: httpx.AsyncClient) -> str:
    return client.cookies["kf_csrf"]


def visible(markup: str) -> str:
    """The text a person reads in the page's main part."""
    main = markup.split("<main", 1)[-1]
    main = re.sub(r"<(script|style|title)[^>]*>.*?</\1>", " ", main, flags=re.S)
    main = re.sub(r"</?(code|strong|em|span|a|time)\b[^>]*>", "", main)  # inline: no gap
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", main)).split())


async def create(client: httpx.AsyncClient, name: str, starter: str = "webhook", **extra: str):
    form = {"name": name, "starter": starter, "csrf_token": token(client), **extra}
    response = await client.post("/workflows", data=form)
    assert response.status_code == 303, visible(response.text)
    location = response.headers["location"]
    assert re.fullmatch(r"/workflows/[0-9a-f]{24}", location), location
    return location


async def import_file(client: httpx.AsyncClient, document: Any, **fields: str) -> httpx.Response:
    content = json.dumps(document).encode()
    return await client.post(
        "/workflows/import",
        data={"csrf_token": token(client), **fields},
        files={"file": ("workflow.json", content, "application/json")},
    )


def node_form(markup: str, node_name: str) -> str:
    start = markup.index(f'data-node="{node_name}" ', markup.index('id="workflow-nodes"'))
    return markup[start : markup.index("</details>", start)]


def form_fields(form_html: str) -> dict[str, str]:
    """What a browser would submit from one node form, untouched (checked boxes only)."""
    fields: dict[str, str] = {}
    for tag in re.findall(r"<input[^>]*>", form_html):
        name = re.search(r'name="([^"]+)"', tag)
        if not name:
            continue
        kind = re.search(r'type="([^"]+)"', tag)
        if kind and kind.group(1) == "checkbox" and "checked" not in tag:
            continue
        value = re.search(r'value="([^"]*)"', tag)
        fields[name.group(1)] = value.group(1) if value else ""
    for name, value in re.findall(
        r'<textarea[^>]*name="([^"]+)"[^>]*>(.*?)</textarea>', form_html, re.S
    ):
        fields[name] = value
    for name, body in re.findall(
        r'<select[^>]*name="([^"]+)"[^>]*>(.*?)</select>', form_html, re.S
    ):
        selected = re.search(r'<option value="([^"]*)" selected', body)
        fields[name] = selected.group(1) if selected else ""
    return {k: html.unescape(v) for k, v in fields.items()}


# -- the list --------------------------------------------------------------------------


async def test_the_workflow_pages_need_a_session(web_url: str) -> None:
    async with httpx.AsyncClient(base_url=web_url, trust_env=False) as client:
        response = await client.get("/workflows")

    assert response.status_code == 303
    assert response.headers["location"] == "/login?next=%2Fworkflows"


async def test_create_search_and_filter_by_tag(signed_in: httpx.AsyncClient) -> None:
    empty = await signed_in.get("/workflows")
    assert "No workflows yet" in visible(empty.text)
    assert 'aria-current="page">Workflows</a>' in empty.text

    await create(signed_in, "Invoice intake", tags="billing, inbound")
    await create(signed_in, "Lead router", tags="sales")
    listing = visible((await signed_in.get("/workflows")).text)
    search = await signed_in.get(
        "/workflows?search=INVOICE",
        headers={"HX-Request": "true", "HX-Target": "workflow-list"},
    )
    tagged = await signed_in.get("/workflows?tag=sales")
    nothing = await signed_in.get("/workflows?search=no-such-thing")

    assert "Invoice intake" in listing
    assert "Lead router" in listing
    assert "billing" in listing  # tags are shown, and offered as filters
    assert 'name="tag" value="sales"' in tagged.text
    assert search.text.lstrip().startswith('<section id="workflow-list"')  # the fragment only
    assert "Invoice intake" in search.text
    assert "Lead router" not in search.text
    assert 'data-workflow="Lead router"' in tagged.text
    assert 'data-workflow="Invoice intake"' not in tagged.text
    assert "No workflows match." in visible(nothing.text)


async def test_more_loads_the_next_page_after_the_last_row(
    signed_in: httpx.AsyncClient, platform: Any
) -> None:
    access = signed_in.cookies["kf_token"]
    async with httpx.AsyncClient(trust_env=False, timeout=20) as http:
        for number in range(workflows.PAGE_SIZE + 2):
            variables = {"input": {"name": f"Paged {number:02d}", "tags": ["paged"]}}
            data(await gql(http, platform.router_url, CREATE, variables, token=access))

    first = await signed_in.get("/workflows?tag=paged")
    more_url = re.search(r'hx-get="([^"]+)" hx-target="#workflow-more"', first.text)
    assert more_url, "no More button"
    url = more_url.group(1).replace("&amp;", "&")
    more = await signed_in.get(url, headers={"HX-Request": "true", "HX-Target": "workflow-more"})

    shown_first = re.findall(r'data-workflow="(Paged \d+)"', first.text)
    shown_more = re.findall(r'data-workflow="(Paged \d+)"', more.text)
    assert len(shown_first) == workflows.PAGE_SIZE
    assert shown_first[0] == "Paged 21"  # newest first
    assert shown_more == ["Paged 01", "Paged 00"]
    assert "<section" not in more.text  # only rows, to put in the More row's place
    assert 'id="workflow-more"' not in more.text  # nothing after them


async def test_archive_hides_a_workflow_until_restored(signed_in: httpx.AsyncClient) -> None:
    page = await create(signed_in, "Retired flow")

    archived = await signed_in.post(
        f"{page}/archive", data={"csrf_token": token(signed_in)}, headers={"HX-Request": "true"}
    )
    live = await signed_in.get("/workflows")
    shelf = await signed_in.get("/workflows?archived=1")
    restored = await signed_in.post(f"{page}/restore", data={"csrf_token": token(signed_in)})

    assert "Archived: it no longer runs." in visible(archived.text)
    assert re.search(
        r'id="workflow-state">\s*<span class="badge badge-down">archived', archived.text
    )
    assert "Retired flow" not in visible(live.text)
    assert "Retired flow" in visible(shelf.text)
    assert "Restored." in visible(restored.text)
    assert "Retired flow" in visible((await signed_in.get("/workflows")).text)


async def test_a_refused_create_says_why_next_to_the_name(signed_in: httpx.AsyncClient) -> None:
    response = await signed_in.post(
        "/workflows",
        data={"name": "x" * 201, "starter": "blank", "csrf_token": token(signed_in)},
        headers={"HX-Request": "true"},
    )

    assert response.status_code == 200
    assert re.search(r'data-field-error="name">[^<]*200 characters', response.text)
    assert response.text.lstrip().startswith('<form class="card form" id="create-workflow-form"')


# -- import ----------------------------------------------------------------------------


async def test_an_n8n_workflow_imports_and_its_graph_shows_every_node_and_connection(
    signed_in: httpx.AsyncClient,
) -> None:
    document = json.loads(BENCH_A.read_text())

    response = await import_file(signed_in, document, tags="n8n, bench")
    assert response.status_code == 303, visible(response.text)
    page = await signed_in.get(response.headers["location"])

    svg = page.text[page.text.index("<svg") : page.text.index("</svg>")]
    for node in document["nodes"]:
        assert f'data-node="{node["name"]}"' in svg
        assert f">{node['name']}</text>" in svg
    names = {n["name"] for n in document["nodes"]}
    for source, outputs in document["connections"].items():
        for _port, targets in enumerate(outputs["main"]):
            for target in targets:
                assert target["node"] in names
                link = re.search(
                    rf'data-source="{re.escape(source)}" data-source-output="([^"]+)"'
                    rf' data-target="{re.escape(target["node"])}"',
                    svg,
                )
                assert link, f"no line from {source} to {target['node']}"
                if link.group(1) != "main":  # If's true/false ports are labelled
                    assert f'class="wf-port" text-anchor="start">{link.group(1)}</text>' in svg
    assert "bench" in visible(page.text)
    assert "Imported" in visible(page.text)  # the first version's note


async def test_pasted_json_imports_too(signed_in: httpx.AsyncClient) -> None:
    response = await signed_in.post(
        "/workflows/import",
        data={
            "document": BENCH_A.read_text(),
            "name": "Pasted bench",
            "csrf_token": token(signed_in),
        },
        headers={"HX-Request": "true"},
    )

    assert response.status_code == 204
    page = await signed_in.get(response.headers["HX-Redirect"])
    assert '<h1 id="workflow-name">Pasted bench</h1>' in page.text


async def test_an_import_with_unsupported_nodes_lists_them_and_saves_nothing(
    signed_in: httpx.AsyncClient,
) -> None:
    document = json.loads(BENCH_A.read_text())
    document["name"] = "Needs Slack"
    document["nodes"].append(
        {
            "id": "slack-1",
            "name": "Tell the team",
            "type": "n8n-nodes-base.slack",
            "typeVersion": 2.2,
            "position": [900, 0],
            "parameters": {"text": "done"},
        }
    )

    response = await import_file(signed_in, document)

    assert response.status_code == 200
    assert 'data-error="UnsupportedNodesError"' in response.text
    shown = visible(response.text)
    assert "Tell the team n8n-nodes-base.slack" in shown
    assert "Needs Slack" not in visible((await signed_in.get("/workflows")).text)


async def test_an_import_that_is_not_valid_says_where(signed_in: httpx.AsyncClient) -> None:
    broken = {
        "name": "Broken",
        "nodes": [
            {"id": "1", "name": "Hook", "type": "webhook", "typeVersion": 2, "parameters": {}}
        ],
        "connections": [{"source": "Hook", "target": "Nowhere"}],
    }
    not_json = await signed_in.post(
        "/workflows/import",
        data={"document": '{"nodes": [', "csrf_token": token(signed_in)},
        headers={"HX-Request": "true"},
    )
    refused = await import_file(signed_in, broken)

    assert "That is not JSON" in visible(not_json.text)
    assert 'data-error="ValidationError"' in refused.text
    shown = visible(refused.text)
    assert "definition.nodes['Hook'].parameters.path: Field required" in shown
    assert "no node named 'Nowhere'" in shown


# -- one workflow ---------------------------------------------------------------------


async def test_a_node_form_saves_a_new_version_and_a_stale_form_is_refused(
    signed_in: httpx.AsyncClient,
) -> None:
    page_url = await create(signed_in, "Hooked")
    page = await signed_in.get(page_url)
    webhook_form = node_form(page.text, "Webhook")
    fields = form_fields(webhook_form)
    action = re.search(r'action="([^"]+)"', webhook_form).group(1)  # type: ignore[union-attr]
    assert fields["expectedVersion"] == "1"
    assert fields["p.path"] == "incoming"
    assert fields["p.httpMethod"] == "POST"  # an enum, as a select
    assert fields["kind.responseCode"] == "integer"

    saved = await signed_in.post(
        action,
        data={**fields, "p.path": "orders", "csrf_token": token(signed_in)},
        headers={"HX-Request": "true"},
    )
    stale = await signed_in.post(
        action,
        data={**fields, "p.path": "refunds", "csrf_token": token(signed_in)},
        headers={"HX-Request": "true"},
    )

    assert "Saved Webhook: version 2." in visible(saved.text)
    assert 'id="workflow-version">v2<' in saved.text
    assert 'value="orders"' in node_form(saved.text, "Webhook")
    assert "Someone saved version 2 since you loaded version 1" in visible(stale.text)
    assert 'value="refunds"' in node_form(stale.text, "Webhook")  # what you typed stays
    latest = await signed_in.get(f"{page_url}/export")
    path = next(n for n in latest.json()["nodes"] if n["name"] == "Webhook")["parameters"]
    assert path["path"] == "orders"  # nothing was overwritten
    assert "responseCode" not in path  # untouched inputs left the parameters as they were


async def test_a_refused_parameter_is_shown_next_to_its_input(
    signed_in: httpx.AsyncClient,
) -> None:
    page_url = await create(signed_in, "Strict")
    page = await signed_in.get(page_url)
    webhook_form = node_form(page.text, "Webhook")
    action = re.search(r'action="([^"]+)"', webhook_form).group(1)  # type: ignore[union-attr]
    fields = form_fields(webhook_form)

    refused = await signed_in.post(
        action,
        data={**fields, "p.path": "", "p.responseCode": "9000", "csrf_token": token(signed_in)},
    )
    unreadable = await signed_in.post(
        action, data={**fields, "p.responseCode": "lots", "csrf_token": token(signed_in)}
    )

    form = node_form(refused.text, "Webhook")
    assert re.search(r'data-field-error="path">String should have at least 1 character<', form)
    assert re.search(r'data-field-error="responseCode">[^<]*less than or equal to 599<', form)
    assert 'id="workflow-version">v1<' in refused.text
    assert re.search(
        r'data-field-error="responseCode">is not a number<', node_form(unreadable.text, "Webhook")
    )


async def test_the_json_view_saves_the_definition(signed_in: httpx.AsyncClient) -> None:
    page_url = await create(signed_in, "Raw", starter="manual")
    page = await signed_in.get(page_url)
    definition = json.loads(
        html.unescape(
            re.search(r'id="workflow-definition"[^>]*>(.*?)</textarea>', page.text, re.S).group(1)  # type: ignore[union-attr]
        )
    )
    definition["settings"]["timezone"] = "Europe/Oslo"
    bad = {**definition, "connections": [{"source": "Start", "target": "Ghost"}]}

    saved = await signed_in.post(
        f"{page_url}/definition",
        data={
            "definition": json.dumps(definition),
            "expectedVersion": "1",
            "csrf_token": token(signed_in),
        },
    )
    refused = await signed_in.post(
        f"{page_url}/definition",
        data={
            "definition": json.dumps(bad),
            "expectedVersion": "2",
            "csrf_token": token(signed_in),
        },
    )

    assert "Saved the JSON: version 2." in visible(saved.text)
    assert "Europe/Oslo" in saved.text
    assert "no node named 'Ghost'" in visible(refused.text)
    assert 'id="workflow-version">v2<' in refused.text


async def test_versions_diff_publish_rollback_and_export(signed_in: httpx.AsyncClient) -> None:
    page_url = await create(signed_in, "Versioned Flow")
    page = await signed_in.get(page_url)
    fields = form_fields(node_form(page.text, "Webhook"))
    action = re.search(r'action="([^"]+)"', node_form(page.text, "Webhook")).group(1)  # type: ignore[union-attr]
    await signed_in.post(
        action, data={**fields, "p.path": "v2-path", "csrf_token": token(signed_in)}
    )

    diff = await signed_in.get(f"{page_url}/diff?older=1&newer=2", headers={"HX-Request": "true"})
    published = await signed_in.post(
        f"{page_url}/versions/2/publish", data={"csrf_token": token(signed_in)}
    )
    rolled_back = await signed_in.post(
        f"{page_url}/versions/1/rollback",
        data={"expectedVersion": "2", "csrf_token": token(signed_in)},
    )
    export = await signed_in.get(f"{page_url}/export?version=2")

    assert diff.text.lstrip().startswith('<section id="workflow-diff"')
    shown = visible(diff.text)
    assert "Changes from v1 to v2" in shown
    assert 'parameters.path "incoming" "v2-path"' in shown
    assert "Version 2 is published" in visible(published.text)
    assert 'id="workflow-published">v2<' in published.text
    assert "Rolled back to version 1: saved as version 3 and published." in visible(
        rolled_back.text
    )
    assert 'id="workflow-published">v3<' in rolled_back.text
    assert re.search(r'<tr data-version="3" data-published="true">', rolled_back.text)
    assert 'value="incoming"' in node_form(rolled_back.text, "Webhook")
    assert export.headers["content-disposition"] == 'attachment; filename="versioned-flow-v2.json"'
    webhook = next(n for n in export.json()["nodes"] if n["name"] == "Webhook")
    assert webhook["parameters"]["path"] == "v2-path"


async def test_an_unknown_workflow_is_not_found(signed_in: httpx.AsyncClient) -> None:
    response = await signed_in.get("/workflows/000000000000000000000000")

    assert response.status_code == 404
    assert "No such workflow" in visible(response.text)


# -- pieces without the platform -------------------------------------------------------


def test_every_query_the_workflow_pages_send_is_valid_against_the_schema() -> None:
    sdl = (ROOT / "schemas" / "workflows.graphql").read_text()
    sdl = re.sub(r"schema @link\(.*?\)\s*\{", "schema {", sdl, flags=re.S)
    directives = (
        "directive @key(fields: String!) repeatable on OBJECT | INTERFACE\n"
        "directive @shareable on OBJECT | FIELD_DEFINITION\n"
    )
    identity = "extend type User { name: String! email: String! }\n"
    schema = build_schema(directives + sdl + identity)
    queries = {
        name: value
        for name, value in vars(workflows).items()
        if name.isupper() and isinstance(value, str) and re.match(r"\s*(query|mutation)\b", value)
    }
    assert len(queries) >= 11
    for name, query in queries.items():
        assert not validate(schema, parse(query)), name


def test_nodes_without_positions_are_laid_out_in_columns_by_depth() -> None:
    definition = json.loads((ROOT / "examples" / "enrich-and-route-leads.json").read_text())
    for node in definition["nodes"]:
        node["position"] = [0, 0]
    boxes, links = layout(definition, {})
    at = {b.name: b for b in boxes}

    for link in links:  # every line runs left to right
        assert at[link.target].x > at[link.source].x, link
    corners = {(b.x, b.y) for b in boxes}
    assert len(corners) == len(boxes)  # no two boxes on top of each other
    for a in boxes:
        for b in boxes:
            if a is not b and a.x == b.x:  # one column: one above the other, apart
                assert a.y + a.height <= b.y or b.y + b.height <= a.y
    assert min(b.x for b in boxes) == 0
    assert min(b.y for b in boxes) == 0
    assert max(b.x for b in boxes) >= NODE_WIDTH


def test_a_box_with_many_ports_is_tall_enough_to_label_each() -> None:
    definition = json.loads((ROOT / "examples" / "enrich-and-route-leads.json").read_text())
    boxes, links = layout(definition, {})
    route = next(b for b in boxes if b.name == "Route")
    ports = {link.source_output for link in links if link.source == "Route"}

    assert len(ports) == 3
    assert route.height >= PORT_SPACING * 4 > NODE_HEIGHT
    assert route.outputs == ["hot", "warm", "cold"]  # only ports with lines take room
    ys = sorted(route.port_y(route.outputs, port) for port in ports)
    assert ys[1] - ys[0] >= PORT_SPACING


def test_a_loop_back_still_gets_every_node_a_column() -> None:
    definition = {
        "nodes": [
            {"id": "1", "name": "Start", "type": "manualTrigger"},
            {"id": "2", "name": "Loop", "type": "splitInBatches"},
            {"id": "3", "name": "Work", "type": "noOp"},
        ],
        "connections": [
            {"source": "Start", "target": "Loop"},
            {"source": "Loop", "sourceOutput": "loop", "target": "Work"},
            {"source": "Work", "target": "Loop"},
        ],
    }
    boxes, _ = layout(definition, {})
    x = {b.name: b.x for b in boxes}
    assert x["Start"] < x["Loop"] < x["Work"]


def test_names_in_the_graph_are_text_never_markup() -> None:
    definition = {
        "nodes": [{"id": "1", "name": "<script>alert(1)</script>", "type": "noOp"}],
        "connections": [],
    }
    svg = str(render_svg(definition, {}, "A & B"))
    assert "<script>" not in svg
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in svg
    assert "A &amp; B" in svg


def test_form_values_keep_their_types_and_untouched_defaults_stay_unset() -> None:
    schema = {
        "properties": {
            "count": {"type": "integer", "default": 1},
            "ratio": {"type": "number", "default": 0.5},
            "on": {"type": "boolean", "default": False},
            "mode": {"type": "string", "enum": ["a", "b"], "default": "a"},
            "options": {"type": "object", "default": {}},
        }
    }
    fields = {f.name: f for f in param_fields(schema, {"count": "={{ $json.n }}"}, {})}
    assert fields["count"].kind == "string"  # an expression where a number goes
    assert fields["mode"].kind == "enum"
    assert fields["options"].kind == "json"
    form = {
        "kind.count": "string", "p.count": "={{ $json.n }}",
        "kind.ratio": "number", "p.ratio": "2",
        "kind.on": "boolean",
        "kind.mode": "enum", "p.mode": "a",
        "kind.options": "json", "p.options": '{"x": [1]}',
    }  # fmt: skip
    assert read_parameters(form, {"count": "={{ $json.n }}"}, schema) == {
        "count": "={{ $json.n }}",
        "ratio": 2,
        "options": {"x": [1]},
    }


def test_error_paths_point_at_the_node_and_parameter() -> None:
    nodes = [{"name": "A"}, {"name": "It's"}]
    assert node_of_path("definition.nodes['A'].parameters.url", nodes) == ("A", "url")
    assert node_of_path('definition.nodes["It\'s"].parameters.x.y', nodes) == ("It's", "x")
    assert node_of_path("definition.nodes[1].parameters", nodes) == ("It's", None)
    assert node_of_path("definition.connections[0].target", nodes) == (None, None)
