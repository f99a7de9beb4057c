"""Two organizations, every root field of the supergraph: Bob never reaches Alice's data.

The last test keeps this honest: a root field added to the API without a case here (or a
reason it has no cross-tenant surface) fails the suite."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from graphql import parse
from sqlalchemy.ext.asyncio import create_async_engine

from klikkflow import schemas
from klikkflow.ai.embeddings import embedder_from_settings
from klikkflow.ai.runtime import UsageRecord
from klikkflow.kit.settings import EmbeddingSettings
from subgraphs.ai.runtime import PostgresAiServices
from tests.factories.graphql import data, gql
from tests.factories.identity import Account, sign_up
from tests.factories.knowledge import added, search
from tests.factories.subscriptions import ws_subscribe
from tests.factories.workflows import create_workflow


@dataclass
class Alice:
    account: Account
    workflow: str
    execution: str
    knowledge_base: str
    document: str
    credential: str
    api_key: str
    session: str
    invitation: str


@pytest.fixture(scope="module")
async def tenants(platform):
    async with httpx.AsyncClient(timeout=15, trust_env=False) as client:
        alice = await sign_up(client, platform.router_url, "Alice Isolated")
        bob = await sign_up(client, platform.router_url, "Bob Isolated")
        workflow = await create_workflow(client, platform.router_url, alice, "Alice only")
        run = data(
            await gql(
                client,
                platform.router_url,
                "mutation ($id: ID!) { runWorkflow(input: {workflowId: $id}) {"
                " ... on RunWorkflowSuccess { execution { id } } } }",
                {"id": workflow},
                alice.token,
            )
        )
        kb = data(
            await gql(
                client,
                platform.router_url,
                'mutation { createKnowledgeBase(input: {name: "Secrets"}) {'
                " ... on CreateKnowledgeBaseSuccess { knowledgeBase { id } } } }",
                token=alice.token,
            )
        )
        kb_id = kb["createKnowledgeBase"]["knowledgeBase"]["id"]
        document = await added(
            client, platform.router_url, alice.token, kb_id, "secrets.md",
            text="# Vault\n\nThe launch code is swordfish.",
        )  # fmt: skip
        data(  # a variable holding an id of Alice's: the list check would see it leak
            await gql(
                client,
                platform.router_url,
                'mutation ($v: String!) { setVariable(input: {key: "FLOW", value: $v})'
                " { __typename } }",
                {"v": workflow},
                alice.token,
            )
        )
        secret = data(
            await gql(
                client,
                platform.router_url,
                'mutation { createCredential(input: {name: "Vault", type: "httpBearerAuth",'
                ' data: {token: "alice-only-token-123"}}) {'
                " ... on CredentialSuccess { credential { id } } } }",
                token=alice.token,
            )
        )
        key = data(
            await gql(
                client,
                platform.router_url,
                'mutation { createApiKey(input: {name: "k", role: "viewer"}) {'
                " ... on CreateApiKeySuccess { apiKey { id } } } }",
                token=alice.token,
            )
        )
        sessions = data(
            await gql(client, platform.router_url, "{ sessions { id } }", token=alice.token)
        )
        invited = data(
            await gql(
                client,
                platform.router_url,
                'mutation { inviteMember(input: {email: "guest@example.com", role: "viewer"})'
                " { ... on InviteMemberSuccess { invitation { id } } } }",
                token=alice.token,
            )
        )
    return Alice(
        account=alice,
        workflow=workflow,
        execution=run["runWorkflow"]["execution"]["id"],
        knowledge_base=kb_id,
        document=document["id"],
        credential=secret["createCredential"]["credential"]["id"],
        api_key=key["createApiKey"]["apiKey"]["id"],
        session=sessions["sessions"][0]["id"],
        invitation=invited["inviteMember"]["invitation"]["id"],
    ), bob


LOOKUPS = {
    "workflow": "query ($id: ID!) { workflow(id: $id) { id } }",
    "exportWorkflow": "query ($id: ID!) { exportWorkflow(id: $id) }",
    "credential": "query ($id: ID!) { credential(id: $id) { id } }",
    "execution": "query ($id: ID!) { execution(id: $id) { id } }",
    "knowledgeBase": "query ($id: ID!) { knowledgeBase(id: $id) { id } }",
    "document": "query ($id: ID!) { document(id: $id) { id } }",
    "user": "query ($id: ID!) { user(id: $id) { id } }",
    "organization": "query ($id: ID!) { organization(id: $id) { id } }",
}


def _target(alice: Alice, field: str) -> str:
    return {
        "workflow": alice.workflow,
        "exportWorkflow": alice.workflow,
        "credential": alice.credential,
        "execution": alice.execution,
        "knowledgeBase": alice.knowledge_base,
        "document": alice.document,
        "user": alice.account.user_id,
        "organization": alice.account.organization_id,
    }[field]


@pytest.mark.parametrize("field", sorted(LOOKUPS))
async def test_lookups_by_id_find_nothing(platform, client, tenants, field):
    alice, bob = tenants
    mine = data(
        await gql(
            client,
            platform.router_url,
            LOOKUPS[field],
            {"id": _target(alice, field)},
            alice.account.token,
        )
    )
    assert mine[field] is not None  # the case is real: Alice sees it
    theirs = data(
        await gql(
            client, platform.router_url, LOOKUPS[field], {"id": _target(alice, field)}, bob.token
        )
    )
    assert theirs[field] is None


LISTS = {
    "workflows": "{ workflows { edges { node { id } } } }",
    "credentials": "{ credentials { id } }",
    "variables": "{ variables { key value } }",
    "executions": "{ executions { edges { node { id } } } }",
    "knowledgeBases": "{ knowledgeBases { id } }",
    "members": "{ members { user { id } } }",
    "apiKeys": "{ apiKeys { id } }",
    "sessions": "{ sessions { id } }",
    "myOrganizations": "{ myOrganizations { organization { id } } }",
    "auditLog": "{ auditLog { edges { node { actorId targetId } } } }",
    "me": "{ me { id } }",
    "invitations": "{ invitations { id email } }",
}


@pytest.mark.parametrize("field", sorted(LISTS))
async def test_lists_hold_nothing_of_the_other_tenant(platform, client, tenants, field):
    alice, bob = tenants
    alices = {
        alice.workflow,
        alice.execution,
        alice.knowledge_base,
        alice.document,
        alice.credential,
        alice.api_key,
        alice.session,
        alice.invitation,
        alice.account.user_id,
        alice.account.organization_id,
    }
    seen = str(data(await gql(client, platform.router_url, LISTS[field], token=bob.token)))
    assert not [x for x in alices if x in seen]
    filtered = data(
        await gql(
            client,
            platform.router_url,
            "query ($w: ID!) { executions(filter: {workflowId: $w}) { edges { cursor } } }",
            {"w": alice.workflow},
            bob.token,
        )
    )
    assert filtered["executions"] == {"edges": []}


MUTATIONS = {
    "deleteExecution": (
        "mutation ($id: ID!) { deleteExecution(input: {id: $id}) { __typename } }",
        "execution",
        "NotFoundError",
    ),
    "rerunExecution": (
        "mutation ($id: ID!) { rerunExecution(input: {id: $id}) { __typename } }",
        "execution",
        "NotFoundError",
    ),
    "retryExecution": (
        "mutation ($id: ID!) { retryExecution(input: {id: $id}) { __typename } }",
        "execution",
        "NotFoundError",
    ),
    "cancelExecution": (
        "mutation ($id: ID!) { cancelExecution(input: {id: $id}) { __typename } }",
        "execution",
        "NotFoundError",
    ),
    "activateWorkflow": (
        "mutation ($id: ID!) { activateWorkflow(input: {id: $id}) { __typename } }",
        "workflow",
        "NotFoundError",
    ),
    "deactivateWorkflow": (
        "mutation ($id: ID!) { deactivateWorkflow(input: {id: $id}) { __typename } }",
        "workflow",
        "NotFoundError",
    ),
    "updateCredential": (
        'mutation ($id: ID!) { updateCredential(input: {id: $id, name: "taken"}) { __typename } }',
        "credential",
        "NotFoundError",
    ),
    "deleteCredential": (
        "mutation ($id: ID!) { deleteCredential(input: {id: $id}) { __typename } }",
        "credential",
        "NotFoundError",
    ),
    "testCredential": (
        "mutation ($id: ID!) { testCredential(input: {id: $id}) { __typename } }",
        "credential",
        "NotFoundError",
    ),
    "generateWorkflow": (  # Bob may not spend Alice's model key
        "mutation ($id: ID!) { generateWorkflow(input: {credentialId: $id, "
        'description: "anything", model: "m"}) { __typename } }',
        "credential",
        "NotFoundError",
    ),
    "updateWorkflow": (
        "mutation ($id: ID!) { updateWorkflow(input: {id: $id, expectedVersion: 1, "
        'name: "taken"}) { __typename } }',
        "workflow",
        "NotFoundError",
    ),
    "archiveWorkflow": (
        "mutation ($id: ID!) { archiveWorkflow(input: {id: $id}) { __typename } }",
        "workflow",
        "NotFoundError",
    ),
    "restoreWorkflow": (
        "mutation ($id: ID!) { restoreWorkflow(input: {id: $id}) { __typename } }",
        "workflow",
        "NotFoundError",
    ),
    "publishWorkflowVersion": (
        "mutation ($id: ID!) { publishWorkflowVersion(input: {id: $id, version: 1}) "
        "{ __typename } }",
        "workflow",
        "NotFoundError",
    ),
    "rollbackWorkflow": (
        "mutation ($id: ID!) { rollbackWorkflow(input: {id: $id, version: 1, "
        "expectedVersion: 1}) { __typename } }",
        "workflow",
        "NotFoundError",
    ),
    "runWorkflow": (
        "mutation ($id: ID!) { runWorkflow(input: {workflowId: $id}) { __typename } }",
        "workflow",
        "NotFoundError",
    ),
    "revokeApiKey": (
        "mutation ($id: ID!) { revokeApiKey(input: {id: $id}) { __typename } }",
        "api_key",
        "NotFoundError",
    ),
    "revokeSession": (
        "mutation ($id: ID!) { revokeSession(input: {id: $id}) { __typename } }",
        "session",
        "NotFoundError",
    ),
    "changeMemberRole": (
        "mutation ($id: ID!) { changeMemberRole(input: {userId: $id, "
        'role: "viewer"}) { __typename } }',
        "user",
        "ValidationError",
    ),
    "removeMember": (
        "mutation ($id: ID!) { removeMember(input: {userId: $id}) { __typename } }",
        "user",
        "ValidationError",
    ),
    "revokeInvitation": (
        "mutation ($id: ID!) { revokeInvitation(input: {id: $id}) { __typename } }",
        "invitation",
        "NotFoundError",
    ),
    "addDocument": (
        'mutation ($id: ID!) { addDocument(input: {knowledgeBaseId: $id, name: "x.txt", '
        'text: "planted"}) { __typename } }',
        "knowledge_base",
        "NotFoundError",
    ),
    "deleteDocument": (
        "mutation ($id: ID!) { deleteDocument(input: {id: $id}) { __typename } }",
        "document",
        "NotFoundError",
    ),
    "deleteKnowledgeBase": (
        "mutation ($id: ID!) { deleteKnowledgeBase(input: {id: $id}) { __typename } }",
        "knowledge_base",
        "NotFoundError",
    ),
    "reembedKnowledgeBase": (
        "mutation ($id: ID!) { reembedKnowledgeBase(input: {id: $id}) { __typename } }",
        "knowledge_base",
        "NotFoundError",
    ),
    "switchOrganization": (
        "mutation ($id: ID!) { switchOrganization(input: {organizationId: $id}) { __typename } }",
        "organization",
        "ForbiddenError",
    ),
}


@pytest.mark.parametrize("field", sorted(MUTATIONS))
async def test_mutations_on_the_other_tenants_objects_are_refused(platform, client, tenants, field):
    alice, bob = tenants
    query, kind, expected = MUTATIONS[field]
    target = {
        "workflow": alice.workflow,
        "execution": alice.execution,
        "credential": alice.credential,
        "api_key": alice.api_key,
        "session": alice.session,
        "invitation": alice.invitation,
        "knowledge_base": alice.knowledge_base,
        "document": alice.document,
        "user": alice.account.user_id,
        "organization": alice.account.organization_id,
    }[kind]
    result = data(await gql(client, platform.router_url, query, {"id": target}, bob.token))
    assert result[field]["__typename"] == expected
    # ...and Alice's object is untouched.
    still = data(
        await gql(
            client,
            platform.router_url,
            "query ($w: ID!, $kb: ID!) { members { role } apiKeys { revoked } "
            "workflow(id: $w) { name version archived activeVersion } "
            "knowledgeBase(id: $kb) { documents { id name } } }",
            {"w": alice.workflow, "kb": alice.knowledge_base},
            token=alice.account.token,
        )
    )
    assert {"role": "owner"} in still["members"]
    assert all(not k["revoked"] for k in still["apiKeys"])
    assert still["workflow"] == {
        "name": "Alice only",
        "version": 1,
        "archived": False,
        "activeVersion": None,
    }
    assert still["knowledgeBase"] == {"documents": [{"id": alice.document, "name": "secrets.md"}]}


async def test_searches_of_the_other_tenants_knowledge_base_find_nothing(platform, client, tenants):
    alice, bob = tenants
    token = alice.account.token
    mine = await search(client, platform.router_url, token, alice.knowledge_base, "swordfish")
    assert mine["hits"][0]["document"]["id"] == alice.document  # the case is real
    theirs = await search(client, platform.router_url, bob.token, alice.knowledge_base, "swordfish")
    assert theirs["__typename"] == "NotFoundError"


async def test_subscriptions_to_the_other_tenants_execution_are_refused(platform, tenants):
    alice, bob = tenants
    payloads = await asyncio.wait_for(
        ws_subscribe(
            platform.router_url,
            "subscription ($id: ID!) { executionEvents(executionId: $id) { seq } }",
            {"id": alice.execution},
            bob.token,
        ),
        30,
    )
    assert "not found" in payloads[0]["errors"][0]["message"]


# Root fields with no object of another tenant to reach: they act on the caller's own
# account or organization, or on a secret only its holder has (tokens, invitations).
NO_CROSS_TENANT_SURFACE = {
    "oidcConfig",  # the caller's own organization's settings
    "samlConfig",
    "aiHealth",
    "executionsHealth",
    "identityHealth",
    "workflowsHealth",
    "signUp",
    "logIn",
    "verifyMfa",
    "refreshToken",
    "logOut",
    "startMfaEnrolment",
    "confirmMfaEnrolment",
    "disableMfa",
    "createApiKey",
    "inviteMember",
    "acceptInvitation",
    "requestPasswordReset",
    "resetPassword",
    "verifyEmail",
    "updateOrganizationSecurity",
    "createWorkflow",
    "importWorkflow",
    "createCredential",
    # Streams the caller's own organization only (tests/subgraphs/executions/test_changes.py
    # shows another organization's runs never reach it).
    "executionsChanged",
    "setVariable",
    "deleteVariable",
    "credentialTypes",
    "nodeTypes",
    "createKnowledgeBase",
    # The shipped template library: the same for everyone, nothing of a tenant's in it.
    "recommendTemplates",
    # SSO: configuring acts on the caller's organization; starting needs only a public
    # slug; completing needs the secret state from the start.
    "configureOidc",
    "startOidcLogin",
    "completeOidcLogin",
    "configureSaml",
    "startSamlLogin",
    "completeSamlLogin",
}


def test_every_root_field_has_an_isolation_case():
    supergraph = parse((schemas.SCHEMAS_DIR / "supergraph.graphql").read_text())
    roots = {
        field.name.value
        for definition in supergraph.definitions
        if getattr(definition, "name", None)
        and definition.name.value in ("Query", "Mutation", "Subscription")
        for field in definition.fields
    }
    covered = set(LOOKUPS) | set(LISTS) | set(MUTATIONS)
    covered |= {"executionEvents", "workflowDiff", "workflowTags", "searchKnowledgeBase"}
    covered |= {"analytics", "tokenUsage"}
    assert roots - covered - NO_CROSS_TENANT_SURFACE == set(), "add isolation cases"


async def test_whether_someone_uses_mfa_is_told_only_to_them(platform, client, tenants):
    from types import SimpleNamespace

    from klikkflow.kit.auth import Viewer
    from subgraphs.identity.types import User

    alice, _ = tenants
    query = "query ($id: ID!) { user(id: $id) { mfaEnabled } }"
    own = data(
        await gql(
            client, platform.router_url, query, {"id": alice.account.user_id}, alice.account.token
        )
    )
    assert own["user"]["mfaEnabled"] is False
    # A colleague resolving the same user (same organization, another person) learns nothing.
    user = User(
        id="u1",
        email="a@example.com",
        name="A",
        created_at=None,  # type: ignore[arg-type]
        email_verified=True,
        mfa=True,
    )
    resolve = User.mfa_enabled
    as_self = SimpleNamespace(context=SimpleNamespace(viewer=Viewer("u1", "o", "viewer")))
    as_other = SimpleNamespace(context=SimpleNamespace(viewer=Viewer("u2", "o", "admin")))
    assert resolve(user, as_self) is True
    assert resolve(user, as_other) is None


async def test_workflow_diffs_and_tags_of_the_other_tenant_are_hidden(platform, client, tenants):
    alice, bob = tenants
    tagged = data(
        await gql(
            client,
            platform.router_url,
            "mutation ($id: ID!) { updateWorkflow(input: {id: $id, expectedVersion: 1, "
            'tags: ["alice-secret-tag"]}) { __typename } }',
            {"id": alice.workflow},
            alice.account.token,
        )
    )
    assert tagged["updateWorkflow"]["__typename"] == "WorkflowSuccess"
    query = (
        "query ($id: ID!) { workflowTags workflowDiff(workflowId: $id, older: 1, newer: 2) "
        "{ __typename } }"
    )
    mine = data(
        await gql(client, platform.router_url, query, {"id": alice.workflow}, alice.account.token)
    )
    assert mine == {
        "workflowTags": ["alice-secret-tag"],
        "workflowDiff": {"__typename": "WorkflowDiffView"},
    }
    theirs = data(await gql(client, platform.router_url, query, {"id": alice.workflow}, bob.token))
    assert theirs == {"workflowTags": [], "workflowDiff": {"__typename": "NotFoundError"}}


ANALYTICS = """query ($since: Date!, $until: Date!, $workflow: ID) {
  analytics(input: {from: $since, to: $until, groupBy: WORKFLOW, workflowId: $workflow}) {
    ... on ExecutionAnalytics { rows { workflow { id } } totals { executions } } }
  tokenUsage(input: {from: $since, to: $until, groupBy: WORKFLOW, workflowId: $workflow}) {
    ... on TokenUsageReport { rows { workflow { id } } totals { totalTokens } } } }"""


async def test_analytics_and_token_usage_count_only_the_viewers_organization(
    platform, client, tenants
):
    alice, bob = tenants
    engine = create_async_engine(platform.database_url)
    try:
        services = PostgresAiServices(engine, embedder_from_settings(EmbeddingSettings()))
        org = alice.account.organization_id
        usage = UsageRecord(org, alice.workflow, alice.execution, "Chat", "openai", "m", 10, 5)
        await services.record_usage([usage])
    finally:
        await engine.dispose()
    today = datetime.now(UTC).date()
    span = {"since": (today - timedelta(days=1)).isoformat(), "until": today.isoformat()}
    mine: dict = {}
    for _ in range(120):  # until the workers' rollup has counted Alice's execution
        mine = data(await gql(client, platform.router_url, ANALYTICS, span, alice.account.token))
        if mine["analytics"]["totals"]["executions"]:
            break
        await asyncio.sleep(0.25)
    assert mine["analytics"]["rows"] == [{"workflow": {"id": alice.workflow}}]  # the case is real
    assert mine["tokenUsage"]["totals"] == {"totalTokens": 15}
    for workflow in (None, alice.workflow):
        variables = {**span, "workflow": workflow}
        theirs = data(await gql(client, platform.router_url, ANALYTICS, variables, bob.token))
        assert theirs["analytics"] == {"rows": [], "totals": {"executions": 0}}
        assert theirs["tokenUsage"] == {"rows": [], "totals": {"totalTokens": 0}}
