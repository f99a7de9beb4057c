"""What AI nodes ask of the platform while they run: the embedder, conversation memory and
token-usage records (PostgreSQL behind them, in the AI subgraph's tables).

The workers hand an ``AiServices`` to the runner as the node extra ``ai`` (with
``organization_id``, the execution's organization), so nodes reach PostgreSQL without the
engine knowing it exists. Every call names the organization: a memory is kept by
(organization, session key) and never read across organizations.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, Protocol

if TYPE_CHECKING:
    from klikkflow.ai.embeddings import Embedder

Role = Literal["user", "assistant"]
# A rough count (about four characters a token in English): memory limits need no
# tokenizer of the provider's model, only a stable, slightly generous measure.
CHARACTERS_PER_TOKEN = 4
SESSION_KEY_MAX = 512


@dataclass(frozen=True)
class Turn:
    """One remembered message of a conversation."""

    role: Role
    content: str


@dataclass(frozen=True)
class MemoryLimit:
    """Which part of a conversation the model sees again: the last ``window`` messages
    and, within them, only the most recent ones that fit in ``token_limit`` tokens."""

    window: int | None = 10
    token_limit: int | None = None


@dataclass(frozen=True)
class UsageRecord:
    """Tokens one LLM call (or ``calls`` calls for one answer) cost an organization."""

    organization_id: str
    workflow_id: str | None
    execution_id: str
    node: str
    provider: str
    model: str
    input_tokens: int
    output_tokens: int
    calls: int = 1


@dataclass(frozen=True)
class Passage:
    """A knowledge-base search hit as nodes and agent tools hand it on."""

    text: str
    score: float
    document_id: str
    ordinal: int
    metadata: dict[str, Any]


@dataclass(frozen=True)
class StoredDocument:
    """A document in a knowledge base (the one already there when the content was)."""

    id: str
    name: str
    chunks: int


class KnowledgeError(Exception):
    """A knowledge base refused a document or a search, or is not there; the message is
    safe to show."""


class AiServices(Protocol):
    """The platform side of the AI nodes (see ``subgraphs.ai.runtime``)."""

    @property
    def embedder(self) -> Embedder: ...

    async def record_usage(self, records: Sequence[UsageRecord]) -> None:
        """Keep what the calls cost (one row each), for analytics to sum."""
        ...

    async def recall(
        self, organization_id: str, session_key: str, limit: MemoryLimit
    ) -> list[Turn]:
        """The end of a conversation within ``limit``, oldest first, starting with a user
        message; empty for a new session."""
        ...

    async def remember(self, organization_id: str, session_key: str, turns: Sequence[Turn]) -> None:
        """Append turns to a conversation (created on first use)."""
        ...

    async def search(
        self, organization_id: str, knowledge_base_id: str, query: str, k: int
    ) -> list[Passage]:
        """The ``k`` passages of the organization's knowledge base that best answer the
        query (hybrid: vectors and full text). ``KnowledgeError`` when refused."""
        ...

    async def ingest(
        self,
        organization_id: str,
        knowledge_base_id: str,
        name: str,
        content_type: str | None,
        data: bytes,
        metadata: dict[str, Any] | None,
    ) -> StoredDocument:
        """Extract, chunk, embed and store a document. ``KnowledgeError`` when refused."""
        ...


def estimate_tokens(text: str) -> int:
    return max(1, math.ceil(len(text) / CHARACTERS_PER_TOKEN))


def within(turns: Sequence[Turn], limit: MemoryLimit) -> list[Turn]:
    """The most recent ``turns`` (oldest first) within the limit; a conversation handed to a
    model starts with a user message, so a leading assistant message is left out."""
    kept = list(turns[-limit.window :] if limit.window else turns)
    if limit.token_limit is not None:
        budget, start = limit.token_limit, len(kept)
        for index in range(len(kept) - 1, -1, -1):
            budget -= estimate_tokens(kept[index].content)
            if budget < 0:
                break
            start = index
        kept = kept[start:]
    while kept and kept[0].role != "user":
        kept.pop(0)
    return kept


__all__ = [
    "AiServices",
    "KnowledgeError",
    "MemoryLimit",
    "Passage",
    "StoredDocument",
    "Turn",
    "UsageRecord",
    "estimate_tokens",
    "within",
]
