"""Changing the embedding model re-embeds, never mixes: a knowledge base's vectors all come
from one model, and searches compare the query only with vectors of that model.

The running AI service embeds with the local model; this test process also runs the
service layer (as a worker would) with another model, an OpenAI-compatible API played by
the local stand-in, on the same database."""

from __future__ import annotations

import asyncio

import httpx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine

from klikkflow.ai.embeddings import OpenAIEmbedder
from subgraphs.ai.models import vector_index_name
from subgraphs.ai.service import KnowledgeBaseService
from tests.factories.graphql import data, gql
from tests.factories.identity import sign_up
from tests.factories.knowledge import added, create_knowledge_base, hits
from tests.factories.llm import llm_stand_in

LOCAL_MODEL = "all-MiniLM-L6-v2-onnx-int8"
REFUNDS = "# Refunds\n\nCustomers may return unused goods within thirty days for their money."
SHIPPING = "# Shipping\n\nParcels leave the warehouse in Trondheim every weekday."


async def vectors(engine, kb: str) -> set[tuple[str, int]]:
    async with engine.connect() as conn:
        rows = await conn.execute(
            text(
                "SELECT DISTINCT model, vector_dims(embedding) FROM chunks "
                "WHERE knowledge_base_id = CAST(:kb AS uuid)"
            ),
            {"kb": kb},
        )
        return {(model, dims) for model, dims in rows}


async def test_a_new_model_re_embeds_the_whole_knowledge_base(platform, client):
    account = await sign_up(client, platform.router_url, "Model switchers")
    kb = await create_knowledge_base(client, platform.router_url, account, "Switching")
    await added(client, platform.router_url, account.token, kb, "refunds.md", text=REFUNDS)
    engine = create_async_engine(platform.database_url)
    sessions = async_sessionmaker(engine, expire_on_commit=False)
    try:
        assert await vectors(engine, kb) == {(LOCAL_MODEL, 384)}

        async with llm_stand_in(embedding_dimensions=16) as llm:
            other = KnowledgeBaseService()
            other.configure(
                OpenAIEmbedder(base_url=llm.openai_url, model="stand-in-embed", dimensions=16),
                1024 * 1024,
            )
            # A document added with the other model: the existing chunks move to it first.
            async with sessions() as session:
                await other.ingest(
                    session, account.organization_id, kb, "shipping.md", None, SHIPPING.encode()
                )
                await session.commit()
            embedded = [t for s in llm.sent for t in s.body["input"]]
            assert await vectors(engine, kb) == {("openai:stand-in-embed", 16)}
            async with sessions() as session:
                found = await other.search(session, account.organization_id, kb, "Trondheim")
            assert found[0].text.startswith("Parcels leave")

        assert embedded == [
            "Shipping\nParcels leave the warehouse in Trondheim every weekday.",  # the new one
            "Refunds\nCustomers may return unused goods within thirty days for their money.",
        ]
        async with engine.connect() as conn:
            index = await conn.scalar(
                text("SELECT indexdef FROM pg_indexes WHERE indexname = :name"),
                {"name": vector_index_name("openai:stand-in-embed", 16)},
            )
        assert "vector(16)" in index
        assert "model)::text = 'openai:stand-in-embed'" in index

        shown = data(
            await gql(
                client,
                platform.router_url,
                "query ($id: ID!) { knowledgeBase(id: $id) "
                "{ embeddingModel embeddingDimensions } }",
                {"id": kb},
                account.token,
            )
        )["knowledgeBase"]
        assert shown == {"embeddingModel": "openai:stand-in-embed", "embeddingDimensions": 16}

        # The AI service embeds with the local model: its first search moves everything back.
        async with httpx.AsyncClient(timeout=60, trust_env=False) as slow:
            found = await hits(
                slow, platform.router_url, account.token, kb, "Can shoppers be reimbursed?"
            )
        assert found[0]["text"].startswith("Customers may return")
        assert found[0]["vectorRank"] == 1
        assert await vectors(engine, kb) == {(LOCAL_MODEL, 384)}

        again = data(
            await gql(
                client,
                platform.router_url,
                "mutation ($id: ID!) { reembedKnowledgeBase(input: {id: $id}) { __typename "
                "... on ReembedKnowledgeBaseSuccess { chunks knowledgeBase { embeddingModel } } "
                "} }",
                {"id": kb},
                account.token,
            )
        )["reembedKnowledgeBase"]
        assert again == {
            "__typename": "ReembedKnowledgeBaseSuccess",
            "chunks": 2,
            "knowledgeBase": {"embeddingModel": LOCAL_MODEL},
        }
    finally:
        await engine.dispose()


async def test_knowledge_bases_move_to_a_new_model_at_the_same_time(platform, client):
    """Two knowledge bases re-embedded at once for a model with no index yet: one index is
    built, neither waits for the other's lock, both end on the new model."""
    account = await sign_up(client, platform.router_url, "Concurrent switchers")
    kbs = [await create_knowledge_base(client, platform.router_url, account, n) for n in "AB"]
    for kb in kbs:
        await added(client, platform.router_url, account.token, kb, "refunds.md", text=REFUNDS)
    engine = create_async_engine(platform.database_url)
    sessions = async_sessionmaker(engine, expire_on_commit=False)
    try:
        async with llm_stand_in(embedding_dimensions=12) as llm:
            other = KnowledgeBaseService()
            other.configure(
                OpenAIEmbedder(base_url=llm.openai_url, model="stand-in-twelve", dimensions=12),
                1024 * 1024,
            )

            async def switch(kb: str) -> str:
                async with sessions() as session:
                    found = await other.search(session, account.organization_id, kb, "refund")
                    await session.commit()
                return found[0].text

            answers = await asyncio.wait_for(asyncio.gather(*(switch(kb) for kb in kbs)), 60)
        assert [a.startswith("Customers may return") for a in answers] == [True, True]
        for kb in kbs:
            assert await vectors(engine, kb) == {("openai:stand-in-twelve", 12)}
        async with engine.connect() as conn:
            index = await conn.scalar(
                text("SELECT to_regclass(:name) IS NOT NULL"),
                {"name": vector_index_name("openai:stand-in-twelve", 12)},
            )
        assert index
    finally:
        await engine.dispose()
