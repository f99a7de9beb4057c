"""Workflows through the router: saving with optimistic concurrency, validation, archive
and restore, search and paging, versions (diff, publish, rollback), import and export."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.factories.graphql import data, gql
from tests.factories.identity import sign_up
from tests.factories.workflows import (
    CREATE_WORKFLOW,
    chain,
    create_workflow,
    link,
    node,
    update_workflow,
)

EXAMPLES = Path(__file__).resolve().parents[3] / "examples"

WORKFLOW = """query ($id: ID!) { workflow(id: $id) {
  name version tags archived activeVersion definition savedBy { id }
  versions(first: 50) { edges { node { number message published author { id } } } }
} }"""


@pytest.fixture(scope="module")
async def owner(platform):
    async with httpx.AsyncClient(timeout=30, trust_env=False) as client:
        return await sign_up(client, platform.router_url, "Workflow Makers")


async def _workflow(client, platform, account, workflow_id):
    return data(
        await gql(client, platform.router_url, WORKFLOW, {"id": workflow_id}, account.token)
    )["workflow"]


async def test_a_save_carries_the_version_it_was_made_from(platform, client, owner):
    workflow_id = await create_workflow(client, platform.router_url, owner, "Nightly", chain("A"))
    saved = await update_workflow(
        client,
        platform.router_url,
        owner,
        id=workflow_id,
        expectedVersion=1,
        definition=chain("A", "B"),
        message="add B",
    )
    assert saved["__typename"] == "WorkflowSuccess"
    assert saved["workflow"]["version"] == 2
    # A second editor still holding version 1 is refused; nothing of theirs is written.
    stale = await update_workflow(
        client,
        platform.router_url,
        owner,
        id=workflow_id,
        expectedVersion=1,
        definition=chain("C"),
        name="Overwritten",
    )
    assert stale["__typename"] == "VersionConflictError"
    assert (stale["expectedVersion"], stale["currentVersion"]) == (1, 2)
    now = await _workflow(client, platform, owner, workflow_id)
    assert now["name"] == "Nightly"
    assert now["version"] == 2
    assert [n["name"] for n in now["definition"]["nodes"]] == ["Start", "A", "B"]
    versions = [e["node"] for e in now["versions"]["edges"]]
    assert [(v["number"], v["message"]) for v in versions] == [(2, "add B"), (1, "Created")]
    assert versions[0]["author"]["id"] == owner.user_id


async def test_concurrent_saves_of_one_version_let_exactly_one_through(platform, client, owner):
    workflow_id = await create_workflow(client, platform.router_url, owner, "Raced", chain("A"))
    answers = await asyncio.gather(
        *(
            update_workflow(
                client,
                platform.router_url,
                owner,
                id=workflow_id,
                expectedVersion=1,
                definition=chain(f"N{i}"),
            )
            for i in range(6)
        )
    )
    kinds = sorted(a["__typename"] for a in answers)
    assert kinds == ["VersionConflictError"] * 5 + ["WorkflowSuccess"]
    winner = next(a for a in answers if a["__typename"] == "WorkflowSuccess")
    now = await _workflow(client, platform, owner, workflow_id)
    assert now["definition"] == winner["workflow"]["definition"]
    assert len(now["versions"]["edges"]) == 2


async def test_invalid_definitions_list_every_problem_and_save_nothing(platform, client, owner):
    workflow_id = await create_workflow(client, platform.router_url, owner, "Strict", chain("A"))
    broken = {
        "nodes": [
            node("Start", "manualTrigger"),
            node("Mystery", "acme.doesNotExist"),
            node("Fetch", "httpRequest", typeVersion=4.2, parameters={"method": "FETCH"}),
            node("Left"),
            node("Right"),
        ],
        "connections": [
            link("Start", "Nowhere"),
            link("Left", "Right"),
            link("Right", "Left"),
        ],
    }
    refused = await update_workflow(
        client, platform.router_url, owner, id=workflow_id, expectedVersion=1, definition=broken
    )
    assert refused["__typename"] == "ValidationError"
    paths = {f["path"] for f in refused["fields"]}
    assert "definition.nodes['Mystery'].type" in paths
    assert "definition.nodes['Fetch'].parameters.method" in paths
    assert "definition.connections[0].target" in paths
    cyclic = {
        "nodes": [node("Left"), node("Right")],
        "connections": [link("Left", "Right"), link("Right", "Left")],
    }
    refused = await update_workflow(
        client, platform.router_url, owner, id=workflow_id, expectedVersion=1, definition=cyclic
    )
    assert refused["__typename"] == "ValidationError"
    assert "cycle without a loop node" in refused["fields"][0]["message"]
    now = await _workflow(client, platform, owner, workflow_id)
    assert now["version"] == 1
    assert len(now["versions"]["edges"]) == 1


@pytest.mark.parametrize(
    ("label", "definition", "path", "message"),
    [
        (
            "10,000 nodes",
            {"nodes": [node(f"N{i}") for i in range(10_000)]},
            "definition.nodes",
            "at most 2000",
        ),
        (
            "deep nesting",
            {"nodes": [node("Deep", parameters={})], "x": json.loads("[" * 60 + "]" * 60)},
            "definition",
            "nests deeper",
        ),
        (
            "a 5 MB definition",
            {
                "nodes": [node("Start", "manualTrigger", notes="x" * 9_000)],
                "pinData": {"Start": [{"json": {"pad": "y" * 5_000_000}}]},
            },
            "definition",
            "the limit is",
        ),
    ],
)
async def test_oversized_and_malformed_definitions_are_refused_clearly(
    platform, client, owner, label, definition, path, message
):
    result = await gql(
        client,
        platform.router_url,
        CREATE_WORKFLOW,
        {"input": {"name": f"Bad: {label}", "definition": definition}},
        owner.token,
    )
    created = data(result)["createWorkflow"]
    assert created["__typename"] == "ValidationError", label
    problems = {f["path"]: f["message"] for f in created["fields"]}
    assert message in problems.get(path, ""), problems
    listed = data(
        await gql(
            client,
            platform.router_url,
            "query ($s: String!) { workflows(filter: {search: $s}) { edges { node { id } } } }",
            {"s": f"Bad: {label}"},
            owner.token,
        )
    )
    assert listed["workflows"]["edges"] == []


async def test_bytes_that_are_not_utf8_never_crash_a_save(platform, client, owner):
    # The router decodes bytes that are not UTF-8 as U+FFFD, as WHATWG decoders do: the
    # name is stored readable (and visibly damaged), never as bytes no client can decode.
    body = (
        b'{"query": "mutation { createWorkflow(input: {name: \\"\xff\xfe\\"}) '
        b'{ ... on CreateWorkflowSuccess { workflow { name } } } }"}'
    )
    response = await client.post(
        platform.router_url,
        content=body,
        headers={"authorization": f"Bearer {owner.token}", "content-type": "application/json"},
    )
    assert response.status_code == 200, response.text
    assert response.json()["data"]["createWorkflow"]["workflow"]["name"] == "\ufffd\ufffd"
    # Valid JSON whose string escapes decode to a lone surrogate, which is no UTF-8 text.
    escaped = (
        b'{"query": "mutation ($d: JSON!) { createWorkflow(input: {name: \\"S\\", '
        b'definition: $d}) { __typename ... on ValidationError { fields { path message } } } }",'
        b' "variables": {"d": {"nodes": [{"id": "s", "name": "S", "type": "manualTrigger",'
        b' "notes": "\\ud800"}]}}}'
    )
    response = await client.post(
        platform.router_url,
        content=escaped,
        headers={"authorization": f"Bearer {owner.token}", "content-type": "application/json"},
    )
    created = response.json()["data"]["createWorkflow"]
    assert created["__typename"] == "ValidationError", created
    assert "not valid UTF-8" in created["fields"][0]["message"]


async def test_a_malicious_expression_is_stored_as_text_and_never_run(platform, client, owner):
    evil = (
        "{{ (function(){ while(true){} })() }}"
        + "{{ this.constructor.constructor('return process')() }}"
    )
    definition = chain("A")
    definition["nodes"][1]["notes"] = evil
    definition["nodes"][1]["parameters"] = {}
    workflow_id = await create_workflow(client, platform.router_url, owner, "Evil", definition)
    now = await _workflow(client, platform, owner, workflow_id)
    assert now["definition"]["nodes"][1]["notes"] == evil


async def test_archive_restore_search_tags_and_paging(platform, client):
    account = await sign_up(client, platform.router_url, "Searchers")
    ids = [
        await create_workflow(client, platform.router_url, account, name, tags=tags)
        for name, tags in [
            ("Sync CRM contacts", ["crm", "nightly"]),
            ("crm cleanup", ["CRM"]),
            ("Invoice mailer", ["billing"]),
            ("Slack digest", ["nightly"]),
        ]
    ]
    query = """query ($f: WorkflowFilterInput, $first: Int!, $after: String) {
      workflows(first: $first, after: $after, filter: $f) {
        edges { cursor node { name } } pageInfo { hasNextPage endCursor } } }"""

    async def names(f=None, first=20, after=None):
        found = data(
            await gql(
                client,
                platform.router_url,
                query,
                {"f": f, "first": first, "after": after},
                account.token,
            )
        )
        return [e["node"]["name"] for e in found["workflows"]["edges"]], found["workflows"]

    assert (await names({"search": "CRM"}))[0] == ["crm cleanup", "Sync CRM contacts"]
    assert (await names({"tags": ["crm", "nightly"]}))[0] == ["Sync CRM contacts"]
    assert (await names({"search": ".*"}))[0] == []  # a regex is matched as text
    page1, conn = await names(first=3)
    assert page1 == ["Slack digest", "Invoice mailer", "crm cleanup"]
    assert conn["pageInfo"]["hasNextPage"] is True
    page2, conn = await names(first=3, after=conn["pageInfo"]["endCursor"])
    assert page2 == ["Sync CRM contacts"]
    assert conn["pageInfo"]["hasNextPage"] is False
    tags = data(await gql(client, platform.router_url, "{ workflowTags }", token=account.token))
    assert tags["workflowTags"] == ["billing", "crm", "nightly"]

    archive = (
        "mutation ($id: ID!) { archiveWorkflow(input: {id: $id}) { __typename "
        "... on WorkflowSuccess { workflow { archived } } } }"
    )
    archived = data(await gql(client, platform.router_url, archive, {"id": ids[2]}, account.token))[
        "archiveWorkflow"
    ]
    assert archived == {"__typename": "WorkflowSuccess", "workflow": {"archived": True}}
    assert "Invoice mailer" not in (await names())[0]
    assert (await names({"archived": True}))[0] == ["Invoice mailer"]
    restore = archive.replace("archiveWorkflow", "restoreWorkflow")
    data(await gql(client, platform.router_url, restore, {"id": ids[2]}, account.token))
    assert "Invoice mailer" in (await names())[0]


async def test_diff_publish_and_rollback(platform, client, owner):
    first = chain("Fetch")
    workflow_id = await create_workflow(client, platform.router_url, owner, "Versioned", first)
    second = chain("Fetch", "Store")
    second["nodes"][1]["notes"] = "now with notes"
    second["settings"] = {"timezone": "Europe/Oslo"}
    await update_workflow(
        client,
        platform.router_url,
        owner,
        id=workflow_id,
        expectedVersion=1,
        definition=second,
        message="store results",
    )
    diff = data(
        await gql(
            client,
            platform.router_url,
            """query ($id: ID!) {
      workflowDiff(workflowId: $id, older: 1, newer: 2) { __typename ... on WorkflowDiffView {
        nodesAdded nodesRemoved nodesChanged { name changes { path before after } }
        connectionsAdded { source target } connectionsRemoved { source }
        settingsChanged { path before after } } } }""",
            {"id": workflow_id},
            owner.token,
        )
    )
    view = diff["workflowDiff"]
    assert view["nodesAdded"] == ["Store"]
    assert view["nodesRemoved"] == []
    assert view["nodesChanged"] == [
        {"name": "Fetch", "changes": [{"path": "notes", "before": "", "after": "now with notes"}]}
    ]
    assert view["connectionsAdded"] == [{"source": "Fetch", "target": "Store"}]
    assert view["settingsChanged"] == [
        {"path": "timezone", "before": "UTC", "after": "Europe/Oslo"}
    ]

    publish = """mutation ($id: ID!, $v: Int!) { publishWorkflowVersion(input: {id: $id,
      version: $v}) { __typename ... on WorkflowSuccess { workflow { activeVersion } } } }"""
    published = data(
        await gql(client, platform.router_url, publish, {"id": workflow_id, "v": 2}, owner.token)
    )["publishWorkflowVersion"]
    assert published["workflow"]["activeVersion"] == 2
    missing = data(
        await gql(client, platform.router_url, publish, {"id": workflow_id, "v": 9}, owner.token)
    )["publishWorkflowVersion"]
    assert missing["__typename"] == "NotFoundError"

    rollback = """mutation ($id: ID!) { rollbackWorkflow(input: {id: $id, version: 1,
      expectedVersion: 2}) { __typename ... on WorkflowSuccess { workflow {
        version activeVersion definition } } } }"""
    rolled = data(
        await gql(client, platform.router_url, rollback, {"id": workflow_id}, owner.token)
    )["rollbackWorkflow"]["workflow"]
    assert (rolled["version"], rolled["activeVersion"]) == (3, 3)
    v1 = data(
        await gql(
            client,
            platform.router_url,
            "query ($id: ID!) { exportWorkflow(id: $id, version: 1) }",
            {"id": workflow_id},
            owner.token,
        )
    )["exportWorkflow"]
    assert {**rolled["definition"], "name": "x"} == {**v1, "name": "x"}
    now = await _workflow(client, platform, owner, workflow_id)
    history = [(e["node"]["number"], e["node"]["published"]) for e in now["versions"]["edges"]]
    assert history == [(3, True), (2, False), (1, False)]


async def test_a_version_lost_between_head_and_history_is_rebuilt(platform, client, owner):
    from klikkflow.kit.stores import init_mongo
    from subgraphs.workflows.models import DOCUMENTS, WorkflowVersionDocument

    workflow_id = await create_workflow(client, platform.router_url, owner, "Crashy", chain("A"))
    await update_workflow(
        client,
        platform.router_url,
        owner,
        id=workflow_id,
        expectedVersion=1,
        definition=chain("A", "B"),
        message="before the crash",
    )
    mongo = await init_mongo(platform.mongo_uri, platform.settings.mongo_db, DOCUMENTS)
    try:  # the process died after moving the head, before writing version 2
        removed = await WorkflowVersionDocument.get_pymongo_collection().delete_one(
            {"number": 2, "message": "before the crash"}
        )
        assert removed.deleted_count == 1
        now = await _workflow(client, platform, owner, workflow_id)
        assert [e["node"]["number"] for e in now["versions"]["edges"]] == [2, 1]
        assert (
            await WorkflowVersionDocument.find({"number": 2, "message": "before the crash"}).count()
            == 1
        )
    finally:
        await mongo.close()


async def test_export_import_round_trips_exactly(platform, client, owner):
    example = json.loads((EXAMPLES / "enrich-and-route-leads.json").read_text())
    imported = data(
        await gql(
            client,
            platform.router_url,
            """mutation ($d: JSON!) {
      importWorkflow(input: {document: $d, tags: ["leads"]}) { __typename
        ... on CreateWorkflowSuccess { workflow { id name tags } }
        ... on ValidationError { fields { path message } } } }""",
            {"d": example},
            owner.token,
        )
    )["importWorkflow"]
    assert imported["__typename"] == "CreateWorkflowSuccess", imported
    exported = data(
        await gql(
            client,
            platform.router_url,
            "query ($id: ID!) { exportWorkflow(id: $id) }",
            {"id": imported["workflow"]["id"]},
            owner.token,
        )
    )["exportWorkflow"]
    assert exported["name"] == example["name"]
    assert [n["name"] for n in exported["nodes"]] == [n["name"] for n in example["nodes"]]
    again = data(
        await gql(
            client,
            platform.router_url,
            """mutation ($d: JSON!) {
      importWorkflow(input: {document: $d}) { ... on CreateWorkflowSuccess { workflow { id } } } }
      """,
            {"d": exported},
            owner.token,
        )
    )["importWorkflow"]["workflow"]["id"]
    exported_again = data(
        await gql(
            client,
            platform.router_url,
            "query ($id: ID!) { exportWorkflow(id: $id) }",
            {"id": again},
            owner.token,
        )
    )["exportWorkflow"]
    assert json.dumps(exported_again) == json.dumps(exported)


@pytest.mark.parametrize("name", ["bench-a.json", "bench-b.json"])
async def test_n8n_workflows_import_and_run(platform, client, owner, name, tmp_path):
    document = json.loads((EXAMPLES / "n8n" / name).read_text())
    imported = data(
        await gql(
            client,
            platform.router_url,
            """mutation ($d: JSON!) {
      importWorkflow(input: {document: $d}) { __typename
        ... on CreateWorkflowSuccess { workflow { definition } }
        ... on ValidationError { fields { path message } } } }""",
            {"d": document},
            owner.token,
        )
    )["importWorkflow"]
    assert imported["__typename"] == "CreateWorkflowSuccess", imported
    definition = imported["workflow"]["definition"]
    assert {n["name"] for n in definition["nodes"]} == {n["name"] for n in document["nodes"]}
    assert all("n8n-nodes-base" not in n["type"] for n in definition["nodes"])
    expressions = [json.dumps(n["parameters"]) for n in document["nodes"]]
    carried = json.dumps([n["parameters"] for n in definition["nodes"]])
    assert any("{{" in e for e in expressions)
    assert carried.count("{{") == sum(e.count("{{") for e in expressions)
    # The imported workflow runs: through the engine, with a webhook's item.
    (tmp_path / "imported.json").write_text(json.dumps({**definition, "name": name}))
    body = {"id": 7, "name": "gadget", "qty": 2, "price": 5.0, "priority": "high", "tags": []}
    (tmp_path / "in.json").write_text(json.dumps({"body": body}))
    command = [sys.executable, "-m", "klikkflow.cli", "run", str(tmp_path / "imported.json")]
    command += ["--input", str(tmp_path / "in.json"), "--json"]
    ran = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    assert ran.returncode == 0, ran.stderr
    summary = json.loads(ran.stdout)
    assert summary["status"] == "succeeded"
    last = {
        "bench-a.json": ("Respond", {"branch": "high", "id": 7, "name": "GADGET", "total": 10.0}),
        "bench-b.json": ("Step10", {"counter": 10}),
    }[name]
    [run] = summary["nodes"][last[0]]
    output = run["outputs"]["main"][0]["json"]
    assert {k: output[k] for k in last[1]} == last[1]


async def test_n8n_import_lists_unsupported_nodes_and_saves_nothing(platform, client, owner):
    document = json.loads((EXAMPLES / "n8n" / "bench-a.json").read_text())
    document["name"] = "Has a Slack node"
    document["nodes"].append(
        {
            "name": "Tell Slack",
            "type": "n8n-nodes-base.slack",
            "typeVersion": 2,
            "parameters": {},
            "position": [0, 0],
        }
    )
    refused = data(
        await gql(
            client,
            platform.router_url,
            """mutation ($d: JSON!) {
      importWorkflow(input: {document: $d}) { __typename
        ... on UnsupportedNodesError { message nodes { name type } } } }""",
            {"d": document},
            owner.token,
        )
    )["importWorkflow"]
    assert refused["__typename"] == "UnsupportedNodesError"
    assert refused["nodes"] == [{"name": "Tell Slack", "type": "n8n-nodes-base.slack"}]
    listed = data(
        await gql(
            client,
            platform.router_url,
            '{ workflows(filter: {search: "Has a Slack"}) { edges { cursor } } }',
            token=owner.token,
        )
    )
    assert listed["workflows"]["edges"] == []


async def test_the_node_catalog_describes_every_node_type(platform, client, owner):
    catalog = data(
        await gql(
            client,
            platform.router_url,
            """{ nodeTypes { type version
      displayName category trigger inputs outputs credentialTypes parametersSchema } }""",
            token=owner.token,
        )
    )["nodeTypes"]
    by_key = {(n["type"], n["version"]): n for n in catalog}
    http = by_key[("httpRequest", 4.2)]
    assert "httpBasicAuth" in http["credentialTypes"]
    assert "url" in http["parametersSchema"]["properties"]
    assert by_key[("webhook", 2.0)]["trigger"] is True
    assert by_key[("if", 2.2)]["outputs"] == ["true", "false"]


async def test_viewers_read_but_do_not_edit(platform, client):
    from dataclasses import replace

    account = await sign_up(client, platform.router_url, "Readers")
    workflow_id = await create_workflow(client, platform.router_url, account, "Read only")
    key = data(
        await gql(
            client,
            platform.router_url,
            """mutation { createApiKey(input:
      {name: "reader", role: "viewer"}) { ... on CreateApiKeySuccess { secret } } }""",
            token=account.token,
        )
    )["createApiKey"]["secret"]
    viewer = replace(account, token=key)
    refused = await update_workflow(
        client, platform.router_url, viewer, id=workflow_id, expectedVersion=1, name="Mine now"
    )
    assert refused["__typename"] == "ForbiddenError"
    seen = await _workflow(client, platform, viewer, workflow_id)
    assert seen["name"] == "Read only"


async def test_every_execution_records_the_version_it_ran(platform, client, owner):
    workflow_id = await create_workflow(client, platform.router_url, owner, "Run me", chain("A"))
    await update_workflow(
        client,
        platform.router_url,
        owner,
        id=workflow_id,
        expectedVersion=1,
        definition=chain("A", "B"),
    )
    run = data(
        await gql(
            client,
            platform.router_url,
            "mutation ($id: ID!) { runWorkflow(input: {workflowId: $id}) {"
            " ... on RunWorkflowSuccess { execution { workflowVersion } } } }",
            {"id": workflow_id},
            owner.token,
        )
    )
    assert run["runWorkflow"]["execution"]["workflowVersion"] == 2
