"""Every AI-data query, scoped by organization."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ARRAY, Uuid, bindparam, delete, func, insert, text, update
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession
from sqlalchemy.orm import aliased
from sqlmodel import SQLModel, col, select

from subgraphs.ai.models import (
    TEXT_SEARCH_CONFIG,
    Chunk,
    Document,
    KnowledgeBase,
    sql_literal,
    vector_index_ddl,
    vector_index_name,
)

#: Reciprocal rank fusion's constant: a hit's score is the sum of 1 / (RRF_K + rank).
RRF_K = 60
#: Highlight markers in ts_headline's answer; they cannot occur in chunk text (extraction
#: keeps no control characters), so the text around them can be escaped safely.
MARK_START, MARK_END = "\x02", "\x03"
_HEADLINE_OPTIONS = (
    f"StartSel={MARK_START}, StopSel={MARK_END}, MaxWords=35, MinWords=15, "
    'MaxFragments=2, FragmentDelimiter=" … "'
)


def parse_uuid(value: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(value)
    except ValueError:
        return None


def vector_literal(vector: Sequence[float]) -> str:
    return "[" + ",".join(repr(float(x)) for x in vector) + "]"


@dataclass(frozen=True)
class SearchFilter:
    document_ids: list[uuid.UUID] | None = None
    metadata: dict[str, Any] | None = None


@dataclass(frozen=True)
class Hit:
    chunk_id: int
    document_id: uuid.UUID
    ordinal: int
    text: str
    metadata: dict[str, Any]
    score: float
    vector_rank: int | None
    similarity: float | None
    text_rank: int | None
    text_score: float | None
    headline: str


class KnowledgeBaseRepository:
    async def by_ids(
        self, session: AsyncSession, organization_id: str, ids: Sequence[str]
    ) -> dict[str, KnowledgeBase]:
        uuids = [u for u in (parse_uuid(i) for i in ids) if u is not None]
        if not uuids:
            return {}
        rows = await session.execute(
            select(KnowledgeBase).where(
                col(KnowledgeBase.id).in_(uuids),
                KnowledgeBase.organization_id == organization_id,
            )
        )
        return {str(kb.id): kb for kb in rows.scalars()}

    async def get(
        self, session: AsyncSession, organization_id: str, id: str, *, lock: bool = False
    ) -> KnowledgeBase | None:
        """One knowledge base; `lock` holds its row until the transaction ends (writers of
        its chunks take it, so a change of model never meets a half-written document)."""
        kb_id = parse_uuid(id)
        if kb_id is None:
            return None
        query = select(KnowledgeBase).where(
            KnowledgeBase.id == kb_id, KnowledgeBase.organization_id == organization_id
        )
        if lock:
            query = query.with_for_update().execution_options(populate_existing=True)
        return (await session.execute(query)).scalars().first()

    async def recent(
        self, session: AsyncSession, organization_id: str, limit: int
    ) -> list[KnowledgeBase]:
        rows = await session.execute(
            select(KnowledgeBase)
            .where(KnowledgeBase.organization_id == organization_id)
            .order_by(col(KnowledgeBase.created_at).desc())
            .limit(limit)
        )
        return list(rows.scalars())

    async def delete(self, session: AsyncSession, kb: KnowledgeBase) -> None:
        """Its documents and chunks go with it (ON DELETE CASCADE)."""
        await session.execute(
            delete(KnowledgeBase).where(
                col(KnowledgeBase.id) == kb.id,
                col(KnowledgeBase.organization_id) == kb.organization_id,
            )
        )

    # ---- documents ------------------------------------------------------------------------

    async def documents_by_ids(
        self, session: AsyncSession, organization_id: str, ids: Sequence[str]
    ) -> dict[str, Document]:
        uuids = [u for u in (parse_uuid(i) for i in ids) if u is not None]
        if not uuids:
            return {}
        rows = await session.execute(
            select(Document).where(
                col(Document.id).in_(uuids), Document.organization_id == organization_id
            )
        )
        return {str(d.id): d for d in rows.scalars()}

    async def documents_of(
        self,
        session: AsyncSession,
        organization_id: str,
        kb_ids: Sequence[uuid.UUID],
        limit: int,
    ) -> dict[uuid.UUID, list[Document]]:
        """The newest `limit` documents of each knowledge base, newest first."""
        place = (
            func.row_number()
            .over(
                partition_by=col(Document.knowledge_base_id),
                order_by=(col(Document.created_at).desc(), col(Document.id)),
            )
            .label("place")
        )
        ranked = (
            select(Document, place)
            .where(
                col(Document.knowledge_base_id).in_(list(kb_ids)),
                Document.organization_id == organization_id,
            )
            .subquery()
        )
        newest = aliased(Document, ranked)
        rows = await session.execute(
            select(newest).where(ranked.c.place <= limit).order_by(ranked.c.place)
        )
        found: dict[uuid.UUID, list[Document]] = {k: [] for k in kb_ids}
        for document in rows.scalars():
            found[document.knowledge_base_id].append(document)
        return found

    async def document_counts(
        self, session: AsyncSession, organization_id: str, kb_ids: Sequence[uuid.UUID]
    ) -> dict[uuid.UUID, int]:
        rows = await session.execute(
            select(Document.knowledge_base_id, func.count())
            .where(
                col(Document.knowledge_base_id).in_(list(kb_ids)),
                Document.organization_id == organization_id,
            )
            .group_by(col(Document.knowledge_base_id))
        )
        counts = {kb_id: int(n) for kb_id, n in rows}
        return {k: counts.get(k, 0) for k in kb_ids}

    async def document_with_content(
        self, session: AsyncSession, kb: KnowledgeBase, sha256: str
    ) -> Document | None:
        rows = await session.execute(
            select(Document).where(
                Document.knowledge_base_id == kb.id,
                Document.organization_id == kb.organization_id,
                Document.sha256 == sha256,
            )
        )
        return rows.scalars().first()

    async def delete_document(self, session: AsyncSession, document: Document) -> None:
        """Its chunks go with it (ON DELETE CASCADE)."""
        await session.execute(
            delete(Document).where(
                col(Document.id) == document.id,
                col(Document.organization_id) == document.organization_id,
            )
        )

    # ---- chunks ---------------------------------------------------------------------------

    async def insert_chunks(self, session: AsyncSession, rows: list[dict[str, Any]]) -> None:
        for start in range(0, len(rows), 500):
            await session.execute(insert(Chunk), rows[start : start + 500])

    async def chunks_to_embed(
        self, session: AsyncSession, kb: KnowledgeBase, batch: int
    ) -> AsyncIterator[list[tuple[int, str, dict[str, Any]]]]:
        """Every chunk of the knowledge base (id, text, metadata), a batch at a time."""
        after = 0
        while True:
            rows = await session.execute(
                select(Chunk.id, Chunk.text, Chunk.meta)
                .where(
                    Chunk.knowledge_base_id == kb.id,
                    Chunk.organization_id == kb.organization_id,
                    col(Chunk.id) > after,
                )
                .order_by(col(Chunk.id))
                .limit(batch)
            )
            found = [(int(i), t, m) for i, t, m in rows]
            if not found:
                return
            yield found
            after = found[-1][0]

    async def set_embeddings(
        self,
        session: AsyncSession,
        kb: KnowledgeBase,
        model: str,
        vectors: dict[int, list[float]],
    ) -> None:
        table = SQLModel.metadata.tables["chunks"]  # Core: one UPDATE run for many rows
        await session.execute(
            update(table)
            .where(table.c.knowledge_base_id == kb.id, table.c.id == bindparam("chunk_id"))
            .values(model=model, embedding=bindparam("vector", type_=table.c.embedding.type)),
            [{"chunk_id": i, "vector": v} for i, v in vectors.items()],
        )

    async def ensure_vector_index(self, session: AsyncSession, model: str, dimensions: int) -> None:
        """The HNSW index over one model's vectors, if missing built at once on a
        connection of its own (so it is there whatever becomes of this transaction).

        Call it before this transaction writes chunks: the build waits for transactions
        writing chunks, and holds other writers only while it runs (it indexes no rows
        until the model's vectors are written)."""
        name = vector_index_name(model, dimensions)
        exists = await session.scalar(text("SELECT to_regclass(:name) IS NOT NULL"), {"name": name})
        if exists:
            return
        bind = session.bind
        if bind is None:
            raise RuntimeError("the session is bound to no database")
        engine = bind if isinstance(bind, AsyncEngine) else bind.engine
        async with engine.connect() as conn:
            auto = await conn.execution_options(isolation_level="AUTOCOMMIT")
            # One builder at a time: two would collide on the name.
            await auto.execute(text("SELECT pg_advisory_lock(hashtext(:name))"), {"name": name})
            try:
                await auto.execute(text(vector_index_ddl(model, dimensions)))
            finally:
                await auto.execute(
                    text("SELECT pg_advisory_unlock(hashtext(:name))"), {"name": name}
                )

    # ---- search ---------------------------------------------------------------------------

    async def search(
        self,
        session: AsyncSession,
        kb: KnowledgeBase,
        query: str,
        vector: list[float],
        k: int,
        filter: SearchFilter,
    ) -> list[Hit]:
        """Hybrid search: the nearest vectors of the knowledge base's model (cosine, HNSW)
        and the best full-text matches (ts_rank_cd over websearch_to_tsquery), fused by
        reciprocal rank."""
        assert kb.embedding_model is not None
        assert kb.embedding_dimensions is not None
        candidates = min(max(4 * k, 40), 400)
        # Filtered scans go on through the HNSW graph until enough rows pass (pgvector 0.8).
        await session.execute(text("SET LOCAL hnsw.iterative_scan = relaxed_order"))
        # A wider beam than the candidates asked for: +0.012 recall@10 for ~0.5 ms at 100k
        # chunks (bench/vector.py).
        ef_search = max(int(candidates), 100)
        await session.execute(text(f"SET LOCAL hnsw.ef_search = {ef_search}"))
        sql, params = search_sql(kb, filter)
        rows = await session.execute(
            text(sql).bindparams(*params),
            {
                "org": kb.organization_id,
                "kb": kb.id,
                "query": query,
                "vector": vector_literal(vector),
                "candidates": candidates,
                "k": k,
                "document_ids": filter.document_ids,
                "metadata": json.dumps(filter.metadata) if filter.metadata else None,
            },
        )
        return [
            Hit(
                chunk_id=r.id,
                document_id=r.document_id,
                ordinal=r.ordinal,
                text=r.text,
                metadata=r.metadata,
                score=float(r.score),
                vector_rank=r.vector_rank,
                similarity=None if r.similarity is None else float(r.similarity),
                text_rank=r.text_rank,
                text_score=None if r.text_score is None else float(r.text_score),
                headline=r.headline,
            )
            for r in rows
        ]


def vector_order(kb: KnowledgeBase) -> str:
    """The distance expression, written as the model's HNSW index is (its cast and the
    model as a literal), so the planner can use the index."""
    dims = int(kb.embedding_dimensions or 0)
    return f"(c.embedding::vector({dims})) <=> CAST(CAST(:vector AS text) AS vector({dims}))"


def vector_candidates_sql(kb: KnowledgeBase, document_filter: str = "") -> str:
    assert kb.embedding_model is not None
    distance = vector_order(kb)
    return (
        f"SELECT c.id, {distance} AS distance FROM chunks c "
        "WHERE c.organization_id = :org AND c.knowledge_base_id = :kb "
        f"AND c.model = {sql_literal(kb.embedding_model)}{document_filter} "
        f"ORDER BY {distance} LIMIT :candidates"
    )


def search_sql(kb: KnowledgeBase, filter: SearchFilter) -> tuple[str, list[Any]]:
    params: list[Any] = []
    conditions = []
    if filter.document_ids is not None:
        conditions.append("d.id = ANY(:document_ids)")
        params.append(bindparam("document_ids", type_=ARRAY(Uuid())))
    if filter.metadata:
        conditions.append("d.metadata @> CAST(:metadata AS jsonb)")
    document_filter = ""
    if conditions:
        document_filter = (
            " AND c.document_id IN (SELECT d.id FROM documents d WHERE "
            "d.organization_id = :org AND d.knowledge_base_id = :kb AND "
            + " AND ".join(conditions)
            + ")"
        )
    config = sql_literal(TEXT_SEARCH_CONFIG)
    sql = f"""
WITH q AS (SELECT websearch_to_tsquery({config}, :query) AS tsq),
vec AS (
  SELECT v.id, row_number() OVER (ORDER BY v.distance, v.id) AS rank, v.distance
  FROM ({vector_candidates_sql(kb, document_filter)}) v
),
txt AS (
  SELECT t.id, row_number() OVER (ORDER BY t.score DESC, t.id) AS rank, t.score
  FROM (
    SELECT c.id, ts_rank_cd(c.tsv, q.tsq, 32) AS score FROM chunks c, q
    WHERE c.organization_id = :org AND c.knowledge_base_id = :kb
      AND c.tsv @@ q.tsq{document_filter}
    ORDER BY score DESC, c.id LIMIT :candidates
  ) t
),
fused AS (
  SELECT coalesce(vec.id, txt.id) AS id,
         vec.rank AS vector_rank, 1 - vec.distance AS similarity,
         txt.rank AS text_rank, txt.score AS text_score,
         coalesce(1.0 / ({RRF_K} + vec.rank), 0) + coalesce(1.0 / ({RRF_K} + txt.rank), 0)
           AS score
  FROM vec FULL OUTER JOIN txt ON vec.id = txt.id
  ORDER BY score DESC, id
  LIMIT :k
)
SELECT f.id, f.vector_rank, f.similarity, f.text_rank, f.text_score, f.score,
       c.document_id, c.ordinal, c.text, c.metadata,
       ts_headline({config}, c.text, q.tsq, {sql_literal(_HEADLINE_OPTIONS)}) AS headline
FROM fused f JOIN chunks c ON c.id = f.id CROSS JOIN q
ORDER BY f.score DESC, f.id
"""
    return sql, params


repository = KnowledgeBaseRepository()
