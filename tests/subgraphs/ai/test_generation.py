"""generateWorkflow and recommendTemplates through the router. The language model is the
local provider stand-in (real OpenAI and Anthropic protocols, scripted answers); the
credentials vault, the workflows service that validates and saves, and the embedder that
ranks templates are the real ones."""

from __future__ import annotations

import copy
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine

from klikkflow.ai.llm import LlmProviderError
from klikkflow.kit.auth import Viewer
from klikkflow.kit.errors import InvalidInput
from klikkflow.kit.stores import init_mongo
from klikkflow.kit.vault import LocalKeyProvider
from klikkflow.nodes.registry import default_registry
from subgraphs.ai.generation import EXAMPLE, GenerationService, node_catalog
from subgraphs.workflows import definition
from subgraphs.workflows.credentials import credential as credential_service
from subgraphs.workflows.models import DOCUMENTS as WORKFLOW_DOCUMENTS
from tests.factories.credentials import create_credential
from tests.factories.executions import output, run_and_wait
from tests.factories.graphql import data, gql
from tests.factories.identity import Account, sign_up
from tests.factories.llm import LlmStandIn, Reply, llm_stand_in

API_KEY = "sk-generation-test-1234567890"
GENERATE = """
mutation ($input: GenerateWorkflowInput!) {
  generateWorkflow(input: $input) {
    __typename
    ... on GenerateWorkflowSuccess {
      workflow { id name description tags version activeVersion active definition }
      definition attempts model usage { inputTokens outputTokens totalTokens }
    }
    ... on GenerationRefusedError { message reasons attempts usage { totalTokens } }
    ... on LanguageModelError { message failure status retryable }
    ... on ValidationError { message fields { path message } }
    ... on NotFoundError { message id }
    ... on ForbiddenError { message }
  }
}
"""
RECOMMEND = """
query ($q: String!, $first: Int) {
  recommendTemplates(query: $q, first: $first) { id name description tags score definition }
}
"""
FORM_REQUEST = "When someone submits our contact form, post the message to our chat channel."

# The model's answer: no ids, positions or Set version (filled in), a credential it must
# not pick (dropped), and a settings key it may not set (dropped).
VALID_ANSWER: dict[str, Any] = {
    "name": "Contact form to chat",
    "description": "Posts contact form submissions to the team chat.",
    "tags": ["Form", "chat"],
    "nodes": [
        {
            "name": "Form submitted",
            "type": "webhook",
            "typeVersion": 2.1,
            "parameters": {"httpMethod": "POST", "path": "contact-form"},
        },
        {
            "name": "Message",
            "type": "set",
            "parameters": {
                "mode": "manual",
                "assignments": {
                    "assignments": [
                        {"name": "text", "type": "string", "value": "={{ $json.body.message }}"}
                    ]
                },
            },
        },
        {
            "name": "Post to chat",
            "type": "httpRequest",
            "typeVersion": 4.2,
            "parameters": {"method": "POST", "url": "={{ $vars.CHAT_WEBHOOK_URL }}"},
            "credentials": {"httpHeaderAuth": {"id": "made-up-credential"}},
        },
    ],
    "connections": [
        {"source": "Form submitted", "target": "Message"},
        {"source": "Message", "target": "Post to chat"},
    ],
    "settings": {"timezone": "Europe/Oslo", "errorWorkflow": "made-up-workflow"},
}


def answer(**changes: Any) -> Reply:
    found = copy.deepcopy(VALID_ANSWER) | changes
    return Reply.say(json.dumps(found), input_tokens=1000, output_tokens=200)


def broken_answer() -> Reply:
    """Unknown node type and a connection to a node that does not exist."""
    nodes = copy.deepcopy(VALID_ANSWER["nodes"])
    nodes[2]["type"] = "slackSendMessage"
    connections = [*VALID_ANSWER["connections"], {"source": "Post to chat", "target": "Nowhere"}]
    return answer(nodes=nodes, connections=connections)


@pytest.fixture(scope="module")
async def llm() -> AsyncIterator[LlmStandIn]:
    async with llm_stand_in() as stand_in:
        yield stand_in


@pytest.fixture(autouse=True)
def _fresh_script(llm: LlmStandIn) -> None:
    llm.replies.clear()
    llm.sent.clear()


@pytest.fixture(scope="module")
async def owner(platform) -> Account:
    async with httpx.AsyncClient(timeout=15, trust_env=False) as client:
        return await sign_up(client, platform.router_url, "Generators")


@pytest.fixture(scope="module")
async def openai_credential(platform, owner, llm) -> str:
    async with httpx.AsyncClient(timeout=15, trust_env=False) as client:
        values = {"apiKey": API_KEY, "baseUrl": llm.openai_url}
        return await create_credential(
            client, platform.router_url, owner, "openAiApi", values, "Stand-in OpenAI"
        )


async def generate(
    client: httpx.AsyncClient,
    platform: Any,
    account: Account | str,
    credential: str,
    description: str = FORM_REQUEST,
    **extra: Any,
) -> dict[str, Any]:
    token = account if isinstance(account, str) else account.token
    variables = {
        "input": {"description": description, "credentialId": credential, "model": "gpt-4o"} | extra
    }
    result = data(await gql(client, platform.router_url, GENERATE, variables, token))
    found: dict[str, Any] = result["generateWorkflow"]
    return found


async def usage_rows(platform: Any, account: Account) -> list[dict[str, Any]]:
    engine = create_async_engine(platform.database_url)
    try:
        async with engine.connect() as conn:
            found = await conn.execute(
                text(
                    "SELECT workflow_id, execution_id, node, provider, model, input_tokens,"
                    " output_tokens, calls FROM ai_token_usage WHERE organization_id = :org"
                    " ORDER BY id"
                ),
                {"org": account.organization_id},
            )
            return [dict(row._mapping) for row in found]
    finally:
        await engine.dispose()


async def workflow_count(client: httpx.AsyncClient, platform: Any, account: Account) -> int:
    query = "{ workflows(first: 100) { edges { node { id } } } }"
    found = data(await gql(client, platform.router_url, query, token=account.token))
    return len(found["workflows"]["edges"])


# ---- the prompt's pieces -----------------------------------------------------------------


def test_the_prompt_example_is_a_valid_workflow():
    document = {k: EXAMPLE[k] for k in ("nodes", "connections")}
    assert definition.check(document, EXAMPLE["name"]).nodes


def test_the_catalog_keeps_every_type_and_cuts_the_largest_schemas_first():
    registry = default_registry()
    full = node_catalog(registry)
    assert '"jsCode":{"type":"string"}' in full  # Code's long sample default left out
    assert '"title"' not in full
    # The two largest schemas (AI Agent's, HTTP Request's) are cut; one is not enough.
    cut = node_catalog(registry, budget=len(full) - 8_000)
    assert len(cut) <= len(full) - 8_000
    assert "- aiAgent@1 [ai]" in cut  # still listed...
    assert '"nodeType"' not in cut  # ...its schema cut to the names
    assert "(parameters: credentialType, maxIterations, memory, model," in cut
    assert "- httpRequest@4.2 [core]" in cut
    assert '"paginationMode"' not in cut
    assert "(parameters: authentication, body, bodyParameters," in cut
    assert '"fieldToSplitOut":{"minLength":1,"type":"string"}' in cut  # small ones stay


async def test_a_private_base_url_is_refused_unless_the_platform_allows_it(
    platform, llm, owner, openai_credential
):
    # The platform under test allows private networks (the stand-in is on loopback), so
    # this runs the service in-process with the setting off, and then on.
    mongo = await init_mongo(platform.mongo_uri, platform.settings.mongo_db, WORKFLOW_DOCUMENTS)
    engine = create_async_engine(platform.database_url)
    settings = platform.settings
    credential_service.configure(
        settings, LocalKeyProvider(settings.credentials_master_keys, settings.secret_key)
    )
    viewer = Viewer(user_id=owner.user_id, organization_id=owner.organization_id, role="owner")
    try:
        async with AsyncSession(engine) as session:
            guarded = GenerationService()
            guarded.configure(settings.model_copy(update={"allow_private_network": False}))
            llm.script(Reply.failure(500, "asked"), Reply.failure(500, "asked again"))
            with pytest.raises(InvalidInput) as refused:
                await guarded.generate(session, viewer, FORM_REQUEST, openai_credential, "m")
            assert refused.value.problems["credentialId"] == (
                "its base URL is refused: refused to connect to 127.0.0.1 (127.0.0.1):"
                " loopback address"
            )
            assert llm.sent == []
            assert not session.new  # no token usage charged: nothing was asked

            allowing = GenerationService()
            allowing.configure(settings.model_copy(update={"allow_private_network": True}))
            with pytest.raises(LlmProviderError, match="answered HTTP 500"):
                await allowing.generate(session, viewer, FORM_REQUEST, openai_credential, "m")
            assert len(llm.chats) == 2  # the request and the SDK's one retry
    finally:
        await engine.dispose()
        await mongo.close()


async def test_a_valid_answer_is_saved_as_a_draft_and_returned(
    platform, client, llm, owner, openai_credential
):
    before = await workflow_count(client, platform, owner)
    llm.script(answer())
    result = await generate(client, platform, owner, openai_credential)
    assert result["__typename"] == "GenerateWorkflowSuccess", result
    assert (result["attempts"], result["model"]) == (1, "gpt-4o")
    assert result["usage"] == {"inputTokens": 1000, "outputTokens": 200, "totalTokens": 1200}
    saved = result["workflow"]
    assert saved["name"] == "Contact form to chat"
    assert saved["description"] == "Posts contact form submissions to the team chat."
    assert saved["tags"] == ["ai-generated", "chat", "form"]
    assert (saved["version"], saved["activeVersion"], saved["active"]) == (1, None, False)
    assert saved["definition"] == result["definition"]
    assert await workflow_count(client, platform, owner) == before + 1
    nodes = {n["name"]: n for n in result["definition"]["nodes"]}
    # Filled in: ids, the Set node's latest version, positions left to right.
    assert [n["id"] for n in result["definition"]["nodes"]] == ["1", "2", "3"]
    assert nodes["Message"]["typeVersion"] == default_registry().versions("set")[-1]
    assert [nodes[n]["position"][0] for n in ("Form submitted", "Message", "Post to chat")] == [
        0,
        240,
        480,
    ]
    # Dropped: the credential the model made up and the error workflow it named.
    assert nodes["Post to chat"]["credentials"] == {}
    assert result["definition"]["settings"]["timezone"] == "Europe/Oslo"
    assert result["definition"]["settings"]["errorWorkflow"] is None


async def test_the_model_gets_the_catalog_the_format_and_the_request(
    platform, client, llm, owner, openai_credential
):
    llm.script(answer())
    result = await generate(client, platform, owner, openai_credential)
    assert result["__typename"] == "GenerateWorkflowSuccess", result
    [sent] = llm.chats
    assert sent.path == "/v1/chat/completions"
    assert sent.headers["authorization"] == f"Bearer {API_KEY}"
    assert sent.model == "gpt-4o"
    registry = default_registry()
    for node_type in {t for t, _, _ in registry.all()}:
        latest = registry.versions(node_type)[-1]
        assert f"- {node_type}@{latest:g} [" in sent.system, node_type
    assert '"httpMethod":{"default":"GET","enum":["GET","POST"' in sent.system  # a schema
    assert '"sourceOutput"' in sent.system  # the document format, by example
    assert FORM_REQUEST in sent.last_user_text
    output = sent.body["response_format"]["json_schema"]  # structured output was asked for
    assert output["schema"]["required"] == ["name", "description", "tags", "nodes", "connections"]


async def test_an_invalid_answer_is_repaired_in_the_second_round(
    platform, client, llm, owner, openai_credential
):
    llm.script(broken_answer(), answer())
    result = await generate(client, platform, owner, openai_credential)
    assert result["__typename"] == "GenerateWorkflowSuccess", result
    assert result["attempts"] == 2
    assert result["usage"]["totalTokens"] == 2400
    first, second = llm.chats
    assert FORM_REQUEST in first.last_user_text
    history = second.messages
    assert history[-2]["role"] == "assistant"
    assert "slackSendMessage" in history[-2]["content"]  # its own answer, sent back
    repair = second.last_user_text
    assert "unknown node type 'slackSendMessage'" in repair
    assert "no node named 'Nowhere'" in repair


async def test_still_invalid_after_the_repairs_is_refused_and_nothing_is_saved(
    platform, client, llm, owner, openai_credential
):
    before = await workflow_count(client, platform, owner)
    no_trigger = answer(
        nodes=VALID_ANSWER["nodes"][1:], connections=[VALID_ANSWER["connections"][1]]
    )
    call = {
        "name": "Run enrichment",
        "type": "executeWorkflow",
        "parameters": {"workflowId": "507f1f77bcf86cd799439011"},
    }
    ghost_sub_workflow = answer(
        nodes=[VALID_ANSWER["nodes"][0], call],
        connections=[{"source": "Form submitted", "target": "Run enrichment"}],
    )
    llm.script(broken_answer(), no_trigger, ghost_sub_workflow)
    result = await generate(client, platform, owner, openai_credential)
    assert result["__typename"] == "GenerationRefusedError", result
    assert result["attempts"] == 3
    assert len(llm.chats) == 3  # the first answer and two repairs, no more
    assert "exactly one trigger node" in llm.chats[2].last_user_text
    [reason] = result["reasons"]  # the last answer's
    assert "there is no workflow '507f1f77bcf86cd799439011'" in reason
    assert reason in result["message"]
    assert result["usage"]["totalTokens"] == 3600
    assert await workflow_count(client, platform, owner) == before


async def test_malformed_json_is_sent_back_and_refused_when_it_stays_malformed(
    platform, client, llm, owner, openai_credential
):
    llm.script(Reply.say("Sure! Here is your workflow: {nodes: ["), answer())
    repaired = await generate(client, platform, owner, openai_credential)
    assert repaired["__typename"] == "GenerateWorkflowSuccess", repaired
    assert repaired["attempts"] == 2
    assert "the answer is not JSON" in llm.chats[1].last_user_text

    before = await workflow_count(client, platform, owner)
    llm.script(Reply.say("{"), Reply.say("not json"), Reply.say('{"name": 1}'))
    refused = await generate(client, platform, owner, openai_credential)
    assert refused["__typename"] == "GenerationRefusedError", refused
    assert refused["attempts"] == 3
    assert any("$.name" in r for r in refused["reasons"])  # the last answer's shape
    assert await workflow_count(client, platform, owner) == before


async def test_the_tokens_are_recorded_for_the_organization_saved_or_not(
    platform, client, llm, openai_credential, owner
):
    spender = await sign_up(client, platform.router_url, "Token spenders")
    values = {"apiKey": API_KEY, "baseUrl": llm.openai_url}
    credential = await create_credential(client, platform.router_url, spender, "openAiApi", values)
    llm.script(broken_answer(), answer())
    saved = await generate(client, platform, spender, credential)
    llm.script(broken_answer(), broken_answer(), broken_answer())
    refused = await generate(client, platform, spender, credential)
    assert refused["__typename"] == "GenerationRefusedError"
    common = {"execution_id": "", "node": "generateWorkflow", "provider": "openai"}
    assert await usage_rows(platform, spender) == [
        common
        | {"workflow_id": saved["workflow"]["id"], "model": "gpt-4o", "calls": 2}
        | {"input_tokens": 2000, "output_tokens": 400},
        common
        | {"workflow_id": None, "model": "gpt-4o", "calls": 3}
        | {"input_tokens": 3000, "output_tokens": 600},
    ]


async def test_a_model_that_does_not_answer_in_time_is_a_clear_error(
    platform, client, llm, owner, openai_credential
):
    before = await workflow_count(client, platform, owner)
    llm.script(Reply.slow(5), Reply.slow(5))  # the first try and the SDK's one retry
    result = await generate(client, platform, owner, openai_credential, timeoutSeconds=1)
    assert result == {
        "__typename": "LanguageModelError",
        "message": "the language model failed: openai model 'gpt-4o': no answer within 1 s",
        "failure": "TIMEOUT",
        "status": None,
        "retryable": True,
    }
    assert await workflow_count(client, platform, owner) == before


async def test_a_refused_key_is_reported_without_the_key(
    platform, client, llm, owner, openai_credential
):
    llm.script(Reply.failure(401, f"Incorrect API key provided: {API_KEY}"))
    result = await generate(client, platform, owner, openai_credential)
    assert result["__typename"] == "LanguageModelError", result
    assert (result["failure"], result["status"], result["retryable"]) == ("PROVIDER", 401, False)
    assert "HTTP 401" in result["message"]
    assert API_KEY not in result["message"]


async def test_an_anthropic_credential_works_the_same(platform, client, llm, owner):
    values = {"apiKey": "sk-ant-generation", "baseUrl": llm.anthropic_url}
    credential = await create_credential(client, platform.router_url, owner, "anthropicApi", values)
    llm.script(answer())
    result = await generate(client, platform, owner, credential)
    assert result["__typename"] == "GenerateWorkflowSuccess", result
    [sent] = llm.chats
    assert sent.path == "/v1/messages"
    assert sent.headers["authorization"] == "Bearer sk-ant-generation"
    assert sent.headers["anthropic-version"]
    assert "- httpRequest@4.2 [core]" in sent.system
    assert FORM_REQUEST in json.dumps(sent.messages)


async def test_bad_input_is_refused_before_the_model_is_asked(
    platform, client, llm, owner, openai_credential
):
    not_an_llm = await create_credential(
        client, platform.router_url, owner, "httpBearerAuth", {"token": "abc"}, "Bearer"
    )
    wrong_type = await generate(client, platform, owner, not_an_llm)
    assert wrong_type["__typename"] == "ValidationError"
    assert wrong_type["fields"][0]["path"] == "credentialId"
    assert "not a language model's" in wrong_type["fields"][0]["message"]
    blank = await generate(client, platform, owner, openai_credential, description="   ")
    assert blank["fields"] == [
        {"path": "description", "message": "describe what the workflow should do"}
    ]
    long = await generate(client, platform, owner, openai_credential, description="x" * 4001)
    assert long["fields"][0]["path"] == "description"
    missing = await generate(client, platform, owner, "507f1f77bcf86cd799439011")
    assert missing["__typename"] == "NotFoundError"
    assert llm.chats == []


async def test_viewers_may_not_generate_workflows(platform, client, llm, owner, openai_credential):
    key = data(
        await gql(
            client,
            platform.router_url,
            'mutation { createApiKey(input: {name: "v", role: "viewer"}) {'
            " ... on CreateApiKeySuccess { secret } } }",
            token=owner.token,
        )
    )["createApiKey"]["secret"]
    result = await generate(client, platform, key, openai_credential)
    assert result["__typename"] == "ForbiddenError"
    assert llm.chats == []


async def test_another_organizations_credential_cannot_be_used(
    platform, client, llm, owner, openai_credential
):
    stranger = await sign_up(client, platform.router_url, "Credential thieves")
    result = await generate(client, platform, stranger, openai_credential)
    assert result == {
        "__typename": "NotFoundError",
        "message": f"credential {openai_credential} not found",
        "id": openai_credential,
    }
    assert llm.chats == []  # the key was never used
    assert await workflow_count(client, platform, stranger) == 0


# ---- recommendTemplates -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("send a message when a form is submitted", "form-submission-notify"),
        ("alert me when my website goes down", "uptime-monitor"),
        ("tell the team in slack when a workflow run fails", "error-notifier"),
        ("wait for my manager to approve before going on", "approval-with-wait"),
        ("remind customers who have not paid their invoices", "overdue-invoice-reminders"),
    ],
)
async def test_the_obviously_matching_template_ranks_first(
    platform, client, owner, query, expected
):
    found = data(
        await gql(client, platform.router_url, RECOMMEND, {"q": query, "first": 3}, owner.token)
    )["recommendTemplates"]
    assert [t["id"] for t in found][0] == expected, [(t["id"], t["score"]) for t in found]
    assert len(found) == 3
    assert found[0]["score"] > found[1]["score"] >= found[2]["score"]
    assert found[0]["definition"]["nodes"]
    assert found[0]["tags"]


async def test_a_recommended_template_can_be_created_as_is(platform, client, owner):
    [best] = data(
        await gql(
            client, platform.router_url, RECOMMEND, {"q": "rss feed", "first": 1}, owner.token
        )
    )["recommendTemplates"]
    created = data(
        await gql(
            client,
            platform.router_url,
            "mutation ($input: CreateWorkflowInput!) { createWorkflow(input: $input) "
            "{ __typename } }",
            {"input": {"name": best["name"], "definition": best["definition"]}},
            owner.token,
        )
    )
    assert created["createWorkflow"]["__typename"] == "CreateWorkflowSuccess"


async def test_a_blank_query_lists_the_library_and_strangers_are_refused(platform, client, owner):
    listed = data(
        await gql(client, platform.router_url, RECOMMEND, {"q": " ", "first": 50}, owner.token)
    )["recommendTemplates"]
    assert len(listed) >= 20
    assert {t["score"] for t in listed} == {0.0}
    anonymous = await gql(client, platform.router_url, RECOMMEND, {"q": "form"})
    assert anonymous["errors"][0]["message"] == "authentication required"


async def test_a_recommended_ai_template_runs_once_a_model_credential_is_attached(
    platform, client, llm, owner, openai_credential
):
    [best] = data(
        await gql(
            client,
            platform.router_url,
            RECOMMEND,
            {"q": "sort incoming support tickets with AI", "first": 1},
            owner.token,
        )
    )["recommendTemplates"]
    assert best["id"] == "ai-support-triage"
    document = best["definition"]
    [classify] = [n for n in document["nodes"] if n["type"] == "textClassifier"]
    classify["credentials"] = {"openAiApi": {"id": openai_credential, "name": "Stand-in"}}
    created = data(
        await gql(
            client,
            platform.router_url,
            "mutation ($input: CreateWorkflowInput!) { createWorkflow(input: $input) "
            "{ ... on CreateWorkflowSuccess { workflow { id } } } }",
            {"input": {"name": best["name"], "definition": document}},
            owner.token,
        )
    )["createWorkflow"]["workflow"]["id"]
    llm.script(Reply.say(json.dumps({"category": "other"})))
    ticket = {"email": "ada@example.com", "subject": "Where is my order?", "message": "Hi!"}
    done = await run_and_wait(client, platform.router_url, owner, created, [{"body": ticket}])
    assert done["status"] == "SUCCEEDED", done
    [sent] = llm.chats
    assert "Where is my order?" in sent.last_user_text
    [person] = output(done, "For a person")  # the model's category: none of the three
    assert (person["from"], person["needsHuman"]) == ("ada@example.com", True)
    assert not {"File bug", "Tell billing", "Tell product"} & {n["node"] for n in done["nodes"]}
