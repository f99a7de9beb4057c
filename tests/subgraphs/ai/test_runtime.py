"""The AI nodes' PostgreSQL side: memories by (organization, session key) with window and
token limits, and token usage rows analytics can sum."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from klikkflow.ai.embeddings import embedder_from_settings
from klikkflow.ai.runtime import MemoryLimit, Turn, UsageRecord
from klikkflow.kit.settings import EmbeddingSettings
from subgraphs.ai.runtime import PostgresAiServices


@pytest.fixture(scope="module")
async def engine(platform) -> AsyncIterator[AsyncEngine]:
    engine = create_async_engine(platform.database_url)
    yield engine
    await engine.dispose()


@pytest.fixture
def services(engine: AsyncEngine) -> PostgresAiServices:
    return PostgresAiServices(engine, embedder_from_settings(EmbeddingSettings()))


def _org() -> str:
    return secrets.token_hex(12)


async def test_a_memory_is_read_back_in_order_within_its_limits(services):
    org, session = _org(), "chat-1"
    for n in range(3):
        await services.remember(
            org, session, [Turn("user", f"question {n}"), Turn("assistant", f"answer {n}")]
        )

    everything = await services.recall(org, session, MemoryLimit(window=100))
    assert [t.content for t in everything] == [
        "question 0",
        "answer 0",
        "question 1",
        "answer 1",
        "question 2",
        "answer 2",
    ]
    assert [t.role for t in everything] == ["user", "assistant"] * 3
    last = await services.recall(org, session, MemoryLimit(window=3))
    assert [t.content for t in last] == ["question 2", "answer 2"]
    fitting = await services.recall(org, session, MemoryLimit(window=None, token_limit=12))
    assert [t.content for t in fitting] == ["question 1", "answer 1", "question 2", "answer 2"]


async def test_a_memory_belongs_to_one_organization_and_one_session(services):
    org, other = _org(), _org()
    await services.remember(
        org, "shared-key", [Turn("user", "secret plan"), Turn("assistant", "ok")]
    )

    assert await services.recall(other, "shared-key", MemoryLimit()) == []
    assert await services.recall(org, "another-key", MemoryLimit()) == []
    assert len(await services.recall(org, "shared-key", MemoryLimit())) == 2


async def test_token_usage_is_kept_one_row_per_call_for_analytics(services, engine):
    org = _org()
    records = [
        UsageRecord(org, "wf-1", "ex-1", "Chat", "openai", "gpt-x", 100, 20),
        UsageRecord(org, "wf-1", "ex-2", "Agent", "anthropic", "claude-y", 300, 40, calls=2),
    ]
    await services.record_usage(records)
    await services.record_usage([])

    async with engine.connect() as conn:
        totals = await conn.execute(
            text(
                "SELECT provider, sum(input_tokens), sum(output_tokens), sum(calls)"
                " FROM ai_token_usage WHERE organization_id = :org GROUP BY provider"
                " ORDER BY provider"
            ),
            {"org": org},
        )
        assert [tuple(row) for row in totals] == [("anthropic", 300, 40, 2), ("openai", 100, 20, 1)]
