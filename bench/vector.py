"""Knowledge-base vector search at scale: our `chunks` table (PostgreSQL + pgvector, the
HNSW index of migration 0002), our ingest path and our search SQL, with `--chunks` rows.

Starts its own embedded PostgreSQL (klikkflow.kit.embedded, as `klikkflow up` does) in a
temporary directory and brings the AI database to head with our migrations.

Vectors. Embedding 100k chunks with the local model would take over an hour, so `--base`
real paragraphs are embedded with `LocalEmbedder` (all-MiniLM-L6-v2, heading line + text
as the service embeds a chunk): the prose paragraphs of our README and of our code's
docstrings (up to half of the bases; they come from the checkout, so figures move a
little as the code changes), the rest generated from topic templates (12 business
domains, 2-3 sentences under a heading). Each of the `--chunks` chunks is then derived
from them:

    v = normalise(w1*b1 + w2*b2 [+ w3*b3] + e)

b1 a base vector drawn uniformly; b2 (and b3: half of the chunks mix three) drawn from
b1's `--neighbours` (64) nearest base vectors, so chunks cluster by topic as a
document's do; w ~ Dirichlet(1, ..., 1), a convex mix; e ~ N(0, (noise/sqrt(384))^2) per
dimension, of expected norm `--noise` (0.3: then 700 random chunks are about as spread
out as 700 random base paragraphs, by the median cosine to the nearest other, printed).
A chunk's text is its bases' paragraphs, heaviest first, cut at 900 characters (the
chunker's limit), its metadata heading the heaviest one's: the full-text column and its
GIN index get text that agrees with the vector. Chunks come in documents of 20 (rows in
`documents`) in one knowledge base, or spread over `--knowledge-bases` of one
organization (searches then go to the first one, so the HNSW scan has to filter).

Ingest. The first `--incremental` chunks go in as the service writes documents
(`repository.insert_chunks`, a transaction per document of 20 chunks) without the HNSW
index; the bulk by COPY; then the HNSW index is built with the migration's DDL; the last
`--incremental` chunks go in as documents again, with the index present: the cost of
incremental ingest, which is how the service always writes.

Queries: `--queries` held-out vectors, none of them in the table: a third short keyword
queries and a third whole sentences (texts made like the bases but found in none, embedded
with the same model), a third chunk vectors derived like the stored ones but not stored.
Each runs the service's vector SQL (`vector_candidates_sql`: the model's cast and the
partial index's predicate, organization and knowledge-base filter) with k = `--k`: as the
service runs it (LIMIT and hnsw.ef_search 4k but at least 40, iterative scan
relaxed_order, the best k kept), and at LIMIT k for each `--ef-search`, with iterative scan
relaxed_order and off. Recall@k is against exact search: the top k by numpy over the
same vectors, checked against the same SQL with `SET LOCAL enable_indexscan = off` (a
sequential scan) for `--exact-sql` of the queries. Then the whole hybrid search:
`repository.search` (vector + full text, reciprocal rank fusion: the SQL alone) and
`KnowledgeBaseService.search` end to end (its session, the query's embedding, the SQL),
for `--service-queries` of the query texts. Latencies are wall times at the client
(SQLAlchemy + asyncpg, as in the service), after a warm-up pass.

    .venv/bin/python bench/vector.py [--chunks 100000] [--queries 1000] [--k 10]
        [--ef-search 40 100] [--base 3000] [--incremental 2000] [--service-queries 200]
        [--knowledge-bases 1] [--pg-setting shared_buffers=1GB ...] [--explain]
        [--hnsw-with "m = 16, ef_construction = 128"] [--cache DIR]

At 100k chunks on 2 shared cores: 6 to 9 minutes, 2 to 4 of them embedding the 3,667
texts (`--cache DIR` keeps their vectors for the next run: then about 3 minutes);
`--chunks 20000 --base 1000 --queries 300` for a quick run.
"""

from __future__ import annotations

import argparse
import ast
import asyncio
import hashlib
import os
import platform as host_platform
import random
import re
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import numpy as np
import numpy.typing as npt
from pgvector.asyncpg import register_vector
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from klikkflow.ai.documents import CHUNK_CHARS, embedding_text  # noqa: E402
from klikkflow.ai.embeddings import (  # noqa: E402
    LOCAL_DIMENSIONS,
    LOCAL_MODEL_ID,
    LocalEmbedder,
    default_threads,
)
from klikkflow.kit import embedded, migrations  # noqa: E402
from klikkflow.kit.supervisor import Supervisor, free_port  # noqa: E402
from subgraphs.ai.models import (  # noqa: E402
    TEXT_SEARCH_CONFIG,
    Document,
    KnowledgeBase,
    sql_literal,
    vector_index_ddl,
    vector_index_name,
)
from subgraphs.ai.repository import (  # noqa: E402
    Hit,
    SearchFilter,
    repository,
    search_sql,
    vector_candidates_sql,
    vector_literal,
)
from subgraphs.ai.service import knowledge_base as service  # noqa: E402

Matrix = npt.NDArray[np.float32]
ORG = "bench-organization"
CHUNKS_PER_DOCUMENT = 20
SOURCES = ("klikkflow", "subgraphs", "workers", "web", "bench")
DIMS = LOCAL_DIMENSIONS


# ---- texts --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Domain:
    title: str
    subjects: tuple[str, ...]
    actions: tuple[str, ...]
    objects: tuple[str, ...]
    details: tuple[str, ...]


def _d(title: str, subjects: str, actions: str, objects: str, details: str) -> Domain:
    def split(words: str) -> tuple[str, ...]:
        return tuple(w.strip() for w in words.split("|"))

    return Domain(title, split(subjects), split(actions), split(objects), split(details))


DOMAINS = (
    _d(
        "Refunds and returns",
        "Customers|The support team|Our store|A returning buyer|The finance desk|Shoppers",
        "may request|must confirm|can approve|will refund|should photograph|are asked to ship",
        "a refund for damaged goods|the return label|unused items in their original box|"
        "a partial credit for late delivery|the receipt of the purchase|an exchange for "
        "another size|store credit instead of cash|the full price including shipping",
        "within thirty days of purchase|before the warranty ends|after the parcel reaches "
        "the warehouse|once the inspection is done|unless the item was used|by bank "
        "transfer within five working days",
    ),
    _d(
        "Shipping and delivery",
        "Parcels|The courier|Our warehouse in Trondheim|Express orders|Freight pallets|"
        "International shipments",
        "leave|are tracked by|arrive at|are insured against|are held at|are weighed before",
        "the customs office|the pickup point|the customer's door|the sorting centre|"
        "a locker near the station|the loading dock|the regional hub|the neighbour's address",
        "every weekday before noon|in two to four days|with a signature on delivery|"
        "when the address is incomplete|during the holiday season|unless the weather "
        "closes the roads",
    ),
    _d(
        "Billing and invoices",
        "The accounting system|Each invoice|Late payments|Subscription plans|The billing "
        "team|Enterprise customers",
        "are charged|list|include|remind customers of|are reconciled with|carry",
        "value added tax|a reminder fee|the purchase order number|monthly usage totals|"
        "discounts for annual plans|the bank account for payment|currency conversion "
        "costs|credit notes for cancelled orders",
        "at the end of each month|thirty days after issue|in euros or kroner|before the "
        "books are closed|for every region separately|as a PDF attached to an email",
    ),
    _d(
        "Passwords and accounts",
        "Users|Administrators|The login page|Single sign-on|Locked accounts|New employees",
        "can reset|must rotate|are protected by|verify|are unlocked after|receive",
        "their password|a one-time code from the authenticator app|two-factor "
        "authentication|the recovery email|an invitation link|the session cookie|access "
        "to the admin console|their API keys",
        "every ninety days|after five failed attempts|through the identity provider|"
        "before the first login|when they change teams|from a trusted device only",
    ),
    _d(
        "Workflow automation",
        "A workflow|The scheduler|Webhook triggers|Each execution|The retry policy|"
        "Background workers",
        "runs|starts|records|retries|waits for|sends",
        "an email to the sales channel|the HTTP request to the partner API|a summary of "
        "new leads|every failed node|the approval of a manager|rows to the spreadsheet|"
        "a message to the on-call engineer|the nightly data export",
        "every hour on weekdays|when a form is submitted|with exponential backoff|until "
        "the timeout expires|for each item in the list|after the previous step succeeds",
    ),
    _d(
        "Security and compliance",
        "The security team|Auditors|Encryption keys|Access logs|Vulnerability scans|"
        "Our data centre",
        "review|are stored in|detect|are rotated by|are kept for|report",
        "suspicious login attempts|personal data of customers|the server room access "
        "code|firewall rule changes|outdated software packages|backups of the database|"
        "privileged accounts|incidents to the data protection officer",
        "for seven years|within seventy-two hours|according to the GDPR|every quarter|"
        "before each release|in a hardware security module",
    ),
    _d(
        "Human resources",
        "Employees|Managers|The HR department|New hires|Part-time staff|Team leads",
        "may take|must approve|plan|are entitled to|submit|discuss",
        "annual leave|parental leave|the onboarding checklist|overtime compensation|"
        "performance reviews|remote work days|travel expense claims|training budgets",
        "at least two weeks in advance|once a year in spring|through the HR portal|"
        "according to the collective agreement|during the probation period|with their "
        "direct manager",
    ),
    _d(
        "Sales and customers",
        "The sales team|Account managers|Trial users|Our largest customers|Prospects|"
        "The marketing department",
        "contact|negotiate|convert|renew|qualify|present",
        "annual contracts|the product demo|leads from the trade fair|volume discounts|"
        "the quarterly business review|a proposal with three pricing tiers|upgrade "
        "offers|references from similar companies",
        "before the fiscal year ends|within one business day|in the customer's "
        "language|after the free trial|at the regional conference|with the help of "
        "solution engineers",
    ),
    _d(
        "Infrastructure and operations",
        "The database cluster|Our Kubernetes nodes|The load balancer|Monitoring alerts|"
        "The on-call engineer|Nightly backups",
        "scale|page|fail over to|restore|throttle|replicate",
        "the standby replica|slow queries|disk usage above ninety percent|the message "
        "queue|TLS certificates|the staging environment|container images|traffic "
        "between regions",
        "during peak hours|within fifteen minutes|without downtime|at three in the "
        "morning|when latency exceeds the budget|from the last snapshot",
    ),
    _d(
        "Product and features",
        "The new dashboard|Our mobile app|The reporting module|The search feature|"
        "Release 4.2|The public API",
        "shows|exports|highlights|supports|limits|introduces",
        "charts of weekly revenue|dark mode|filters by region and product|rate limits "
        "per token|offline editing|custom fields on tickets|a changelog for each "
        "version|keyboard shortcuts",
        "for all paid plans|starting next month|on desktop and phone|behind a feature "
        "flag|after user research showed the need|in twelve languages",
    ),
    _d(
        "Facilities and office",
        "The cat|Visitors|The cleaning crew|The reception|Office plants|The kitchen",
        "sleeps on|must sign|empties|books|brightens|stocks",
        "the mat by the window|the visitor log|the meeting rooms|the recycling bins|"
        "coffee and fruit|the parking spaces|the lockers in the basement|the rooftop "
        "terrace",
        "all afternoon|before nine in the morning|on Fridays|during the summer|when the "
        "heating fails|for guests from abroad",
    ),
    _d(
        "Finance and reporting",
        "Revenue|The board|Operating costs|The annual report|Quarterly forecasts|The controller",
        "grew by|expects|reduced|summarises|compares|explains",
        "twelve percent in the third quarter|steady growth next year|the budget for "
        "marketing|cash flow and liquidity|margins per product line|headcount plans|"
        "the impact of exchange rates|investments in research",
        "compared with last year|despite higher energy prices|for the shareholders' "
        "meeting|in the management summary|after the acquisition closed|by region",
    ),
)
_STOP_WORDS = (
    "a an the of to in on for and or by with at from their our its is are be as into "
    "each every after before when until unless within during than all may can must will "
    "should"
)
STOP = frozenset(_STOP_WORDS.split())


def _sentence(rng: random.Random, d: Domain, obj: str | None = None) -> str:
    parts = [rng.choice(d.subjects), rng.choice(d.actions), obj or rng.choice(d.objects)]
    return " ".join([*parts, rng.choice(d.details)]) + "."


def generated_paragraphs(rng: random.Random) -> Iterator[tuple[str, str]]:
    """Endless (heading, paragraph): 2-3 sentences of one domain, one object shared."""
    while True:
        d = rng.choice(DOMAINS)
        obj = rng.choice(d.objects)
        sentences = [_sentence(rng, d, obj)] + [_sentence(rng, d) for _ in range(rng.randint(1, 2))]
        rng.shuffle(sentences)
        topic = " ".join(w for w in obj.split() if w.lower() not in STOP)
        yield f"{d.title} > {topic.capitalize()}", " ".join(sentences)


def readme_paragraphs() -> list[tuple[str, str]]:
    """Prose paragraphs of our README under their headings (code blocks left out)."""
    found, heading, in_code = [], "KlikkFlow", False
    for block in (ROOT / "README.md").read_text().split("\n\n"):
        if block.lstrip().startswith("```"):
            in_code = block.count("```") % 2 == 1
            continue
        if in_code:
            in_code = block.count("```") % 2 == 0
            continue
        if block.startswith("#"):
            heading = block.splitlines()[0].lstrip("# ").strip()
            block = "\n".join(block.splitlines()[1:])
        prose = re.sub(r"[`*_>|]|\[([^]]*)\]\([^)]*\)", r"\1", block)
        prose = " ".join(prose.split())
        if 12 <= len(prose.split()) <= 150:
            found.append((heading, prose))
    return found


def docstring_paragraphs() -> list[tuple[str, str]]:
    """Prose paragraphs of our own code's docstrings (12 to 150 words), under the module's
    or the function's name."""
    found = []
    for path in sorted(ROOT.glob("*/**/*.py")):
        if path.relative_to(ROOT).parts[0] not in SOURCES:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
                doc = ast.get_docstring(node)
                name = getattr(node, "name", path.stem)
                for block in (doc or "").split("\n\n"):
                    prose = " ".join(block.split())
                    if 12 <= len(prose.split()) <= 150:
                        found.append((f"{path.stem} > {name}", prose))
    return found


def corpus(count: int, queries: int, seed: int) -> tuple[list[tuple[str, str]], list[str], int]:
    """`count` distinct base paragraphs (real prose of the repo first, then generated
    ones), `queries` texts found in none of them, and how many bases are real prose."""
    rng = random.Random(seed)
    bases, seen = [], set()
    for heading, paragraph in readme_paragraphs() + docstring_paragraphs():
        if paragraph not in seen and len(bases) < count // 2:
            seen.add(paragraph)
            bases.append((heading, paragraph))
    real = len(bases)
    paragraphs = generated_paragraphs(rng)
    while len(bases) < count:
        heading, paragraph = next(paragraphs)
        if paragraph not in seen:
            seen.add(paragraph)
            bases.append((heading, paragraph))
    sentences = {s for p in seen for s in re.split(r"(?<=\.) ", p)}
    rng = random.Random(seed + 1)  # the same queries however many bases are real prose
    texts: list[str] = []
    while len(texts) < queries:
        d = rng.choice(DOMAINS)
        sentence = _sentence(rng, d)
        if sentence in sentences or sentence in texts:
            continue
        if len(texts) % 2:  # a whole unseen sentence
            texts.append(sentence)
        else:  # a few of its words, as people type into a search box
            words = [w for w in re.findall(r"[\w'-]+", sentence) if w.lower() not in STOP]
            start = rng.randrange(max(1, len(words) - 2))
            texts.append(" ".join(words[start : start + rng.randint(2, 4)]).lower())
    return bases, texts, real


# ---- vectors ------------------------------------------------------------------------------


@dataclass
class Chunks:
    vectors: Matrix  # (n, 384), unit length
    texts: list[str]
    headings: list[str]
    parts: npt.NDArray[np.int64]  # (n,) how many bases each mixes


def derive(
    base: Matrix,
    bases: list[tuple[str, str]],
    n: int,
    noise: float,
    neighbours: int,
    seed: int,
) -> Chunks:
    rng = np.random.default_rng(seed)
    similar = base @ base.T
    np.fill_diagonal(similar, -np.inf)
    near = np.argpartition(-similar, neighbours, axis=1)[:, :neighbours]
    first = rng.integers(0, len(base), n)
    parts = rng.integers(2, 4, n)  # 2 or 3
    picks = np.empty((n, 3), dtype=np.int64)
    picks[:, 0] = first
    for i in range(n):  # two distinct neighbours, the second used by three-part chunks
        picks[i, 1:] = near[first[i], rng.choice(neighbours, 2, replace=False)]
    weights = rng.dirichlet(np.ones(3), n)
    two = parts == 2
    weights[two] = np.c_[rng.dirichlet(np.ones(2), int(two.sum())), np.zeros(int(two.sum()))]
    mixed = np.einsum("nk,nkd->nd", weights, base[picks])
    mixed += rng.normal(0.0, noise / np.sqrt(DIMS), mixed.shape)
    mixed /= np.linalg.norm(mixed, axis=1, keepdims=True)
    order = np.argsort(-weights, axis=1)
    texts, headings = [], []
    for i in range(n):
        chosen = [int(picks[i, j]) for j in order[i] if weights[i, j] > 0]
        texts.append(" ".join(bases[b][1] for b in chosen)[:CHUNK_CHARS])
        headings.append(bases[chosen[0]][0])
    return Chunks(mixed.astype(np.float32), texts, headings, parts)


async def embed(
    embedder: LocalEmbedder, texts: Sequence[str], cache: Path | None
) -> tuple[Matrix, int]:
    """The texts' vectors, and how many were embedded now: with a cache directory, they
    are kept there by the texts' digest."""
    digest = hashlib.sha256("\0".join([embedder.model, *texts]).encode()).hexdigest()[:20]
    kept = cache / f"vectors-{digest}.npy" if cache else None
    if kept is not None and kept.exists():
        return np.load(kept), 0
    vectors = np.asarray(await embedder.embed(list(texts)), dtype=np.float32)
    if kept is not None:
        kept.parent.mkdir(parents=True, exist_ok=True)
        np.save(kept, vectors)
    return vectors, len(texts)


# ---- database -----------------------------------------------------------------------------


@dataclass
class Store:
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    raw_url: str


async def connect_raw(store: Store) -> asyncpg.Connection:
    url = make_url(store.raw_url)
    conn = await asyncpg.connect(
        host=url.host, port=url.port, user=url.username, database=url.database
    )
    await register_vector(conn)
    return conn


async def make_knowledge_bases(store: Store, count: int) -> list[KnowledgeBase]:
    async with store.sessions() as session:
        kbs = [
            KnowledgeBase(
                organization_id=ORG,
                name=f"bench {i}",
                embedding_model=LOCAL_MODEL_ID,
                embedding_dimensions=DIMS,
            )
            for i in range(count)
        ]
        session.add_all(kbs)
        await session.commit()
        return kbs


def documents_for(kbs: list[KnowledgeBase], n: int) -> list[Document]:
    docs = []
    for i in range((n + CHUNKS_PER_DOCUMENT - 1) // CHUNKS_PER_DOCUMENT):
        docs.append(
            Document(
                organization_id=ORG,
                knowledge_base_id=kbs[i % len(kbs)].id,
                name=f"document-{i}.md",
                content_type="text/markdown",
                size=CHUNK_CHARS * CHUNKS_PER_DOCUMENT,
                sha256=hashlib.sha256(f"bench {i}".encode()).hexdigest(),
                title=f"Document {i}",
                chunk_count=CHUNKS_PER_DOCUMENT,
            )
        )
    return docs


def chunk_row(chunks: Chunks, docs: list[Document], i: int) -> dict[str, Any]:
    doc = docs[i // CHUNKS_PER_DOCUMENT]
    return {
        "organization_id": ORG,
        "knowledge_base_id": doc.knowledge_base_id,
        "document_id": doc.id,
        "ordinal": i % CHUNKS_PER_DOCUMENT,
        "text": chunks.texts[i],
        "meta": {"heading": chunks.headings[i], "headings": chunks.headings[i].split(" > ")},
        "model": LOCAL_MODEL_ID,
        "embedding": chunks.vectors[i].tolist(),
    }


async def insert_as_service(
    store: Store, chunks: Chunks, docs: list[Document], rows: range
) -> float:
    """Documents' chunks the way KnowledgeBaseService.ingest writes them: one transaction
    per document, repository.insert_chunks. Answers the seconds it took."""
    began = time.perf_counter()
    for start in range(rows.start, rows.stop, CHUNKS_PER_DOCUMENT):
        stop = min(start + CHUNKS_PER_DOCUMENT, rows.stop)
        async with store.sessions() as session:
            await repository.insert_chunks(
                session, [chunk_row(chunks, docs, i) for i in range(start, stop)]
            )
            await session.commit()
    return time.perf_counter() - began


async def copy_documents(conn: asyncpg.Connection, docs: list[Document]) -> None:
    columns = ["id", "organization_id", "knowledge_base_id", "name", "content_type", "size"]
    columns += ["sha256", "status", "title", "chunk_count", "metadata", "created_at"]
    records = [
        (d.id, d.organization_id, d.knowledge_base_id, d.name, d.content_type, d.size,
         d.sha256, d.status, d.title, d.chunk_count, "{}", d.created_at)
        for d in docs
    ]  # fmt: skip
    await conn.copy_records_to_table("documents", records=records, columns=columns)


async def copy_chunks(
    conn: asyncpg.Connection, chunks: Chunks, docs: list[Document], rows: range
) -> float:
    import json

    columns = ["organization_id", "knowledge_base_id", "document_id", "ordinal", "text"]
    columns += ["metadata", "model", "embedding"]

    def records() -> Iterator[tuple[Any, ...]]:
        for i in rows:
            row = chunk_row(chunks, docs, i)
            yield (
                ORG, row["knowledge_base_id"], row["document_id"], row["ordinal"], row["text"],
                json.dumps(row["meta"]), LOCAL_MODEL_ID, chunks.vectors[i],
            )  # fmt: skip

    began = time.perf_counter()
    await conn.copy_records_to_table("chunks", records=records(), columns=columns)
    return time.perf_counter() - began


def percentiles(samples: Sequence[float]) -> tuple[float, float, float, float]:
    """p50, p95, p99 and mean, in milliseconds."""
    ms = np.asarray(samples) * 1000
    p50, p95, p99 = np.percentile(ms, [50, 95, 99])
    return float(p50), float(p95), float(p99), float(ms.mean())


@dataclass
class Config:
    label: str
    limit: int
    ef_search: int | None  # None: the exact scan
    iterative: str


async def run_vector_queries(
    store: Store, kb: KnowledgeBase, queries: Matrix, cfg: Config, k: int
) -> tuple[list[float], list[list[int]]]:
    """The service's vector SQL for each query in one transaction with cfg's settings:
    latencies and the k best ids of each (by distance, as the service's `vec` ranks)."""
    sql = text(vector_candidates_sql(kb))
    latencies, found = [], []
    async with store.sessions() as session:
        if cfg.ef_search is None:
            await session.execute(text("SET LOCAL enable_indexscan = off"))
            await session.execute(text("SET LOCAL jit = off"))  # it compiles for each query
        else:
            await session.execute(text(f"SET LOCAL hnsw.iterative_scan = {cfg.iterative}"))
            await session.execute(text(f"SET LOCAL hnsw.ef_search = {cfg.ef_search}"))
        for q in queries:
            params = {
                "org": ORG,
                "kb": kb.id,
                "vector": vector_literal(q),
                "candidates": cfg.limit,
            }
            began = time.perf_counter()
            rows = (await session.execute(sql, params)).all()
            latencies.append(time.perf_counter() - began)
            rows.sort(key=lambda r: (r.distance, r.id))
            found.append([r.id for r in rows[:k]])
        await session.rollback()
    return latencies, found


async def explain(store: Store, sql: str, params: dict[str, Any], settings: dict[str, Any]) -> str:
    async with store.sessions() as session:
        for name, value in settings.items():
            await session.execute(text(f"SET LOCAL {name} = {value}"))
        rows = await session.execute(text(f"EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) {sql}"), params)
        plan = "\n".join(r[0] for r in rows)
        await session.rollback()
    return plan


async def facts(store: Store) -> dict[str, str]:
    async with store.engine.connect() as conn:

        async def one(sql: str) -> str:
            return str(await conn.scalar(text(sql)))

        await conn.execute(text("SELECT '[1]'::vector"))  # loads pgvector and its settings
        found = {
            "postgres": await one("SHOW server_version"),
            "pgvector": await one("SELECT extversion FROM pg_extension WHERE extname = 'vector'"),
        }
        for name in ("shared_buffers", "maintenance_work_mem", "work_mem", "jit",
                     "max_parallel_workers_per_gather", "max_parallel_maintenance_workers",
                     "hnsw.ef_search", "hnsw.iterative_scan", "hnsw.max_scan_tuples"):  # fmt: skip
            found[name] = await one(f"SHOW {name}")
    return found


async def sizes(store: Store) -> dict[str, str]:
    index = vector_index_name(LOCAL_MODEL_ID, DIMS)
    async with store.engine.connect() as conn:
        rows = await conn.execute(
            text(
                "SELECT c.relname, pg_size_pretty(pg_total_relation_size(c.oid)) FROM pg_class c "
                "WHERE c.relname IN ('chunks', :index, 'ix_chunks_tsv')"
            ),
            {"index": index},
        )
        return {name: size for name, size in rows}


def _load() -> str:
    one, five, _ = os.getloadavg()
    return f"{one:.2f} (1 min), {five:.2f} (5 min)"


# ---- main ---------------------------------------------------------------------------------


async def main(args: argparse.Namespace) -> None:
    n, k = args.chunks, args.k
    incremental = min(args.incremental, n // 10)
    cpus = len(os.sched_getaffinity(0))
    cpu = next(
        (line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
         if line.startswith("model name")), host_platform.processor())  # fmt: skip
    print(f"machine: {cpus} cores ({cpu}), load average {_load()}")
    with tempfile.TemporaryDirectory(prefix="bench-vector-") as tmp:
        os.chmod(tmp, 0o755)  # as root, postgres runs as its own user and must reach it
        supervisor = Supervisor(Path(tmp) / "logs")
        try:
            await run(args, supervisor, Path(tmp), n, k, incremental)
        finally:
            await supervisor.stop_all()
    print(f"load average at the end: {_load()}")


async def run(
    args: argparse.Namespace, supervisor: Supervisor, tmp: Path, n: int, k: int, incremental: int
) -> None:
    spec, database_url = embedded.postgres_spec(free_port(), tmp / "postgres")
    for setting in args.pg_setting:
        spec.argv += ["-c", setting]
    await supervisor.start(spec)
    await supervisor.wait_ready(["postgres"], timeout=60)
    await migrations.upgrade(database_url)
    engine = create_async_engine(database_url)
    store = Store(engine, async_sessionmaker(engine, expire_on_commit=False), database_url)
    found = await facts(store)
    print(f"PostgreSQL {found.pop('postgres')}, pgvector {found.pop('pgvector')}; " +
          ", ".join(f"{name} {value}" for name, value in found.items()))  # fmt: skip

    # -- vectors
    embedder = LocalEmbedder()
    began = time.perf_counter()
    derived_queries = args.queries // 3
    bases, query_texts, real = corpus(args.base, args.queries - derived_queries, args.seed)
    base, fresh = await embed(embedder, [embedding_text(p, h) for h, p in bases], args.cache)
    text_queries, fresh_queries = await embed(embedder, query_texts, args.cache)
    fresh += fresh_queries
    embed_seconds = time.perf_counter() - began
    made = derive(base, bases, n + derived_queries, args.noise, args.neighbours, args.seed)
    chunks = Chunks(made.vectors[:n], made.texts[:n], made.headings[:n], made.parts[:n])
    queries = np.concatenate([text_queries, made.vectors[n:]])
    kinds = np.array([i % 2 for i in range(len(query_texts))] + [2] * derived_queries)
    took = f"in {embed_seconds:.0f} s ({fresh / embed_seconds:.0f} texts/s)"
    if fresh < len(bases) + len(query_texts):
        took += f", {len(bases) + len(query_texts) - fresh} of them earlier (in {args.cache})"
    print(
        f"\nvectors: {len(bases)} base paragraphs ({real} of prose from README.md and our "
        f"docstrings, {len(bases) - real} generated from {len(DOMAINS)} topic templates) and "
        f"{len(query_texts)} held-out query texts embedded with {LOCAL_MODEL_ID} "
        f"({default_threads()} threads) {took}"
    )
    print(
        f"  {n} chunks, each normalise(w1*b1 + w2*b2 [+ w3*b3] + e): b1 a random base, b2 and "
        f"b3 among b1's {args.neighbours} nearest bases, 2 ({int((chunks.parts == 2).sum())}) or"
        f" 3 parts, w ~ Dirichlet(1), e ~ N(0, ({args.noise}/sqrt({DIMS}))^2) per dimension"
    )
    print(
        "  spread (median cosine to the nearest other, 700 random of each): base paragraphs "
        f"{_nearest_median(base):.3f}, real prose {_nearest_median(base[:real]):.3f}, chunks "
        f"{_nearest_median(chunks.vectors):.3f}; among all {n} chunks "
        f"{_nearest_median(chunks.vectors, among=chunks.vectors):.3f}"
    )
    print(
        f"  queries: {len(query_texts) - len(query_texts) // 2} short keyword texts, "
        f"{len(query_texts) // 2} unseen sentences, {derived_queries} unstored chunk vectors "
        "made like the chunks; median cosine to the nearest chunk: "
        + ", ".join(
            f"{KINDS[kind]} {np.median((queries[kinds == kind] @ chunks.vectors.T).max(1)):.3f}"
            for kind in range(3)
        )
    )

    # -- ingest
    kbs = await make_knowledge_bases(store, args.knowledge_bases)
    kb = kbs[0]
    docs = documents_for(kbs, n)
    index = vector_index_name(LOCAL_MODEL_ID, DIMS)
    conn = await connect_raw(store)
    try:
        await copy_documents(conn, docs)
        await conn.execute(f"DROP INDEX {index}")
        head = await insert_as_service(store, chunks, docs, range(0, incremental))
        bulk = range(incremental, n - incremental)
        copied = await copy_chunks(conn, chunks, docs, bulk)
        await conn.execute(f"SET maintenance_work_mem = '{args.maintenance_work_mem}'")
        notices: list[str] = []
        conn.add_log_listener(lambda _c, message: notices.append(str(message)))
        began = time.perf_counter()
        ddl = vector_index_ddl(LOCAL_MODEL_ID, DIMS)
        if args.hnsw_with:  # to try other build parameters than the migration's
            ddl = ddl.replace(" WHERE ", f" WITH ({args.hnsw_with}) WHERE ")
        await conn.execute(ddl)
        built = time.perf_counter() - began
        tail = await insert_as_service(store, chunks, docs, range(n - incremental, n))
        began = time.perf_counter()
        await conn.execute("VACUUM ANALYZE chunks")
        vacuumed = time.perf_counter() - began
        ids = {
            (r["document_id"], r["ordinal"]): r["id"]
            for r in await conn.fetch("SELECT id, document_id, ordinal FROM chunks")
        }
    finally:
        await conn.close()
    print(f"\ningest of {n} chunks, {CHUNKS_PER_DOCUMENT} per document (load {_load()}):")
    per_doc = CHUNKS_PER_DOCUMENT * 1000
    print(
        f"  as the service writes documents, no HNSW index: {incremental / head:7.0f} chunks/s "
        f"({incremental} chunks, {head / incremental * per_doc:.1f} ms per document)"
    )
    print(
        f"  COPY, with the full-text GIN index:             {len(bulk) / copied:7.0f} chunks/s "
        f"({len(bulk)} chunks in {copied:.1f} s)"
    )
    print(
        f"  HNSW index build after the load ({args.hnsw_with or 'm 16, ef_construction 64'}, "
        "maintenance_work_mem "
        f"{args.maintenance_work_mem}): {built:.1f} s" + "".join(f"\n    {m}" for m in notices)
    )
    print(
        f"  as the service writes documents, HNSW present:  {incremental / tail:7.0f} chunks/s "
        f"({incremental} chunks, {tail / incremental * per_doc:.1f} ms per document)"
    )
    total = head + copied + built + tail
    print(
        f"  all {n} chunks in {total:.1f} s ({n / total:.0f} chunks/s); then VACUUM ANALYZE "
        f"{vacuumed:.1f} s; sizes: "
        + ", ".join(f"{name} {size}" for name, size in (await sizes(store)).items())
    )

    # -- vector queries
    chunk_ids = np.array(
        [ids[(docs[i // CHUNKS_PER_DOCUMENT].id, i % CHUNKS_PER_DOCUMENT)] for i in range(n)]
    )
    in_kb = np.array([docs[i // CHUNKS_PER_DOCUMENT].knowledge_base_id == kb.id for i in range(n)])
    truth, kth = exact_numpy(queries, chunks.vectors[in_kb], chunk_ids[in_kb], k)
    row_of = {int(chunk_id): row for row, chunk_id in enumerate(chunk_ids)}

    def near_ties(got: list[list[int]]) -> float:
        """Share of returned hits that are exact top-k or within TIE of the k-th best."""
        shares = []
        for i, found in enumerate(got):
            rows = [row_of[f] for f in found[:k]]
            close = chunks.vectors[rows] @ queries[i] >= kth[i] - TIE
            shares.append(
                sum(bool(c) or f in truth[i] for c, f in zip(close, found[:k], strict=True)) / k
            )
        return float(np.mean(shares))

    service_limit = min(max(4 * k, 40), 400)
    configs = [
        Config(
            f"service: LIMIT {service_limit}, ef_search {service_limit}, relaxed_order",
            service_limit,
            service_limit,
            "relaxed_order",
        )
    ]
    for ef in args.ef_search:
        for iterative in ("relaxed_order", "off"):
            configs.append(Config(f"LIMIT {k}, ef_search {ef}, {iterative}", k, ef, iterative))
    print(
        f"\nk-NN, k={k}, {len(queries)} held-out queries, in a knowledge base of "
        f"{int(in_kb.sum())} chunks (load {_load()}):"
    )
    sample = np.linspace(0, len(queries) - 1, min(args.exact_sql, len(queries))).astype(int)
    exact = Config(f"exact: LIMIT {k}, indexscan & jit off ({len(sample)} q.)", k, None, "")
    exact_latency, exact_found = await run_vector_queries(store, kb, queries[sample], exact, k)
    # Warm-up after the sequential scans (they pass the whole table through shared buffers).
    await run_vector_queries(store, kb, queries, configs[0], k)
    agree = recall(exact_found, [truth[i] for i in sample])
    print(f"  exact SQL (sequential scan) vs numpy float32, top-{k} overlap: {agree:.4f}")
    names = "".join(f" {KINDS[kind]:>8}" for kind in range(3))
    header = (
        f"  {'query':58} {'p50':>6} {'p95':>6} {'p99':>6} {'mean':>6}  recall@{k}{names}  ±{TIE}"
    )
    print(header + "\n  " + "-" * (len(header) - 2))
    for cfg in configs:
        latencies, got = await run_vector_queries(store, kb, queries, cfg, k)
        by_kind = "".join(
            f" {recall([got[i] for i in np.flatnonzero(kinds == kind)], truth[kinds == kind]):8.4f}"
            for kind in range(3)
        )
        p50, p95, p99, mean = percentiles(latencies)
        print(
            f"  {cfg.label:58} {p50:6.2f} {p95:6.2f} {p99:6.2f} {mean:6.2f}"
            f"    {recall(got, truth):.4f}{by_kind}  {near_ties(got):.4f}"
        )
    p50, p95, p99, mean = percentiles(exact_latency)
    print(f"  {exact.label:58} {p50:6.1f} {p95:6.1f} {p99:6.1f} {mean:6.1f}    1")
    print(
        "  (milliseconds at the client, SQLAlchemy + asyncpg as in the service; recall by query"
        f" kind; ±{TIE}: hits in the exact top {k} or at most {TIE} cosine below its k-th)"
    )

    # -- plans
    settings = {"hnsw.iterative_scan": "relaxed_order", "hnsw.ef_search": service_limit}
    params: dict[str, Any] = {
        "org": ORG,
        "kb": kb.id,
        "vector": vector_literal(queries[0]),
        "candidates": service_limit,
    }
    plan = await explain(store, vector_candidates_sql(kb), params, settings)
    print(f"\nservice vector SQL: {_plan_summary(plan, index)}")
    if args.explain:
        print(_shorten(plan))
    generic = await explain(
        store, vector_candidates_sql(kb), params, settings | {"plan_cache_mode": GENERIC}
    )
    summary = _plan_summary(generic, index)
    print(f"  as a generic plan (a prepared statement's after 5 runs): {summary}")
    exact_plan = await explain(
        store, vector_candidates_sql(kb), params | {"candidates": k}, {"enable_indexscan": "off"}
    )
    print(f"exact (enable_indexscan off): {_plan_summary(exact_plan, index)}")

    # -- hybrid search
    await hybrid(args, store, embedder, kb, query_texts, text_queries, k, service_limit, index)
    await store.engine.dispose()


async def hybrid(
    args: argparse.Namespace,
    store: Store,
    embedder: LocalEmbedder,
    kb: KnowledgeBase,
    query_texts: list[str],
    vectors: Matrix,
    k: int,
    service_limit: int,
    index: str,
) -> None:
    m = min(args.service_queries, len(query_texts))
    service.configure(embedder, 20 * 1024 * 1024)
    embed_latencies: list[float] = []
    matches: list[int] = []
    count = text(
        "SELECT count(*) FROM chunks c WHERE c.organization_id = :org AND "
        "c.knowledge_base_id = :kb AND c.tsv @@ websearch_to_tsquery("
        f"{sql_literal(TEXT_SEARCH_CONFIG)}, :query)"
    )
    async with store.sessions() as session:
        stored = await repository.get(session, ORG, str(kb.id))
        assert stored is not None
        for i in range(m):
            params = {"org": ORG, "kb": kb.id, "query": query_texts[i]}
            matches.append(int(await session.scalar(count, params) or 0))

    async def sql(i: int) -> tuple[float, list[Hit]]:
        async with store.sessions() as session:
            began = time.perf_counter()
            hits = await repository.search(
                session, stored, query_texts[i], vectors[i].tolist(), k, SearchFilter()
            )
            took = time.perf_counter() - began
            await session.rollback()
        return took, hits

    async def end_to_end(i: int) -> tuple[float, list[Hit]]:
        async with store.sessions() as session:
            began = time.perf_counter()
            hits = await service.search(session, ORG, str(kb.id), query_texts[i], k)
            await session.commit()
        return time.perf_counter() - began, hits

    for i in range(min(50, m)):  # warm-up
        await sql(i)
        await end_to_end(i)
    # One pass each, so that no query finds the pages of its own previous run.
    sql_answers = [await sql(i) for i in range(m)]
    for i in range(m):
        began = time.perf_counter()
        await embedder.embed([query_texts[i]])
        embed_latencies.append(time.perf_counter() - began)
    service_answers = [await end_to_end(i) for i in range(m)]
    sql_latencies = [took for took, _ in sql_answers]
    service_latencies = [took for took, _ in service_answers]
    text_hits = [sum(h.text_rank is not None for h in hits) for _, hits in sql_answers]
    same = sum(
        [h.chunk_id for h in a] == [h.chunk_id for h in b]
        for (_, a), (_, b) in zip(sql_answers, service_answers, strict=True)
    )
    print(
        f"\nhybrid search (vector + full text, reciprocal rank fusion), k={k}, {m} of the "
        f"query texts (load {_load()}):"
    )
    print(f"  {'':58} {'p50':>6} {'p95':>6} {'p99':>6} {'mean':>6}")
    rows = [
        ("repository.search: the SQL (query vector given)", sql_latencies),
        ("embedding the query (LocalEmbedder, one text)", embed_latencies),
        ("KnowledgeBaseService.search end to end", service_latencies),
    ]
    by_matches = np.asarray(matches)
    for low, high in ((0, 1), (1, 100), (100, 1000), (1000, 3000), (3000, None)):
        chosen = (by_matches >= low) & (by_matches < (high or 1 << 62))
        if chosen.any():
            label = (
                f"{low}+" if high is None else f"{low}" if high == low + 1 else f"{low}-{high - 1}"
            )
            rows.append(
                (
                    f"  the SQL, {int(chosen.sum())} queries matching {label} chunks by text",
                    [sql_latencies[i] for i in np.flatnonzero(chosen)],
                )
            )
    for label, samples in rows:
        p50, p95, p99, mean = percentiles(samples)
        print(f"  {label:58} {p50:6.2f} {p95:6.2f} {p99:6.2f} {mean:6.2f}")
    mean_hits = statistics.mean(text_hits)
    print(
        f"  chunks matching the query's text: median {int(np.median(by_matches))} (short "
        f"{int(np.median(by_matches[0::2]))}, sentences {int(np.median(by_matches[1::2]))}); "
        f"on average {mean_hits:.1f} of the {k} hits have a full-text rank; the service "
        f"answered the same hits as the SQL with the batch-embedded vector in {same} of {m}"
    )
    hybrid_sql, _ = search_sql(stored, SearchFilter())
    slow = int(np.argmax(by_matches))
    params = {
        "org": ORG,
        "kb": kb.id,
        "vector": vector_literal(vectors[slow]),
        "candidates": service_limit,
        "query": query_texts[slow],
        "k": k,
        "document_ids": None,
        "metadata": None,
    }
    settings = {"hnsw.iterative_scan": "relaxed_order", "hnsw.ef_search": service_limit}
    plan = await explain(store, hybrid_sql, params, settings)
    print(f"  hybrid SQL for {query_texts[slow]!r} ({matches[slow]} text matches):")
    print(f"    {_plan_summary(plan, index)}")
    print(f"    {_text_side(plan)}")
    generic = await explain(store, hybrid_sql, params, settings | {"plan_cache_mode": GENERIC})
    print(f"    as a generic plan: {_plan_summary(generic, index)}")
    if args.explain:
        print(_shorten(plan))


KINDS = ("short", "sentence", "chunk")
TIE = 0.01
GENERIC = "force_generic_plan"


def recall(found: Sequence[Sequence[int]], truth: Sequence[Sequence[int]] | np.ndarray) -> float:
    if not len(found):
        return float("nan")
    k = len(truth[0])
    return float(np.mean([len(set(f[:k]) & set(t)) / k for f, t in zip(found, truth, strict=True)]))


def exact_numpy(
    queries: Matrix, vectors: Matrix, ids: np.ndarray, k: int
) -> tuple[np.ndarray, np.ndarray]:
    """The ids of the k most cosine-similar vectors to each query (all are unit length),
    and the k-th best similarity of each."""
    found, kth = [], []
    for start in range(0, len(queries), 256):
        scores = queries[start : start + 256] @ vectors.T
        top = np.argpartition(-scores, k, axis=1)[:, :k]
        best = np.take_along_axis(scores, top, axis=1)
        order = np.argsort(-best, axis=1)
        found.append(ids[np.take_along_axis(top, order, axis=1)])
        kth.append(best.min(axis=1))
    return np.concatenate(found), np.concatenate(kth)


def _nearest_median(vectors: Matrix, among: Matrix | None = None, size: int = 700) -> float:
    """Median cosine of `size` random vectors to their nearest other one (in `among`, or
    in the same sample)."""
    rng = np.random.default_rng(0)
    sample = vectors[rng.choice(len(vectors), min(size, len(vectors)), replace=False)]
    scores = sample @ (sample if among is None else among).T
    scores[scores > 0.999999] = -1  # the vector itself
    return float(np.median(scores.max(axis=1)))


def _plan_summary(plan: str, index: str) -> str:
    scans = re.findall(
        r"(Index Scan|Bitmap Index Scan|Seq Scan|Index Only Scan) (?:using )?(?:on )?(\S+)", plan
    )
    execution = re.search(r"Execution Time: ([\d.]+) ms", plan)
    uses = "uses" if index in plan else "does NOT use"
    jit = re.search(r"JIT:.*?Timing: .*?Total ([\d.]+) ms", plan, re.S)
    return (
        f"{uses} {index}; scans: {', '.join(f'{a} {b}' for a, b in scans)}; "
        f"execution {execution.group(1) if execution else '?'} ms (EXPLAIN ANALYZE)"
        + (f", of it JIT {jit.group(1)} ms" if jit else "")
    )


def _text_side(plan: str) -> str:
    """How long the full-text branch took, from the plan's txt subquery nodes."""
    lines = plan.splitlines()
    heap = re.search(
        r"Bitmap Heap Scan on chunks \S+ \(actual time=[\d.]+\.\.([\d.]+) rows=([\d.]+)", plan
    )
    ranked = next(
        (
            re.search(r"actual time=[\d.]+\.\.([\d.]+)", before)
            for before, line in zip(lines, lines[1:], strict=False)
            if "Window:" in line and "ts_rank_cd" in line
        ),
        None,
    )
    if not heap or not ranked:
        return "full-text branch: not found in the plan"
    return (
        f"full-text branch: {float(heap.group(2)):.0f} matching chunks read by a bitmap heap "
        f"scan in {heap.group(1)} ms, ranked by ts_rank_cd and cut by {ranked.group(1)} ms"
    )


def _shorten(plan: str) -> str:
    return re.sub(r"'\[[^\]]{60,}\]'", "'[...]'", plan)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chunks", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--ef-search", type=int, nargs="+", default=[40, 100])
    parser.add_argument("--base", type=int, default=3000, help="real paragraphs embedded")
    parser.add_argument("--noise", type=float, default=0.3, help="expected norm of the noise")
    parser.add_argument("--neighbours", type=int, default=64, help="b2, b3 among b1's nearest")
    parser.add_argument("--exact-sql", type=int, default=300, help="queries checked by SQL")
    parser.add_argument("--incremental", type=int, default=2000)
    parser.add_argument("--service-queries", type=int, default=200)
    parser.add_argument("--knowledge-bases", type=int, default=1)
    parser.add_argument("--maintenance-work-mem", default="1GB", help="for the index build")
    parser.add_argument(
        "--pg-setting", action="append", default=[], help="name=value, passed as postgres -c"
    )
    parser.add_argument("--explain", action="store_true", help="print the query plans")
    parser.add_argument("--cache", type=Path, help="keep the embedded texts' vectors here")
    parser.add_argument(
        "--hnsw-with", help='other HNSW build parameters, e.g. "m = 16, ef_construction = 128"'
    )
    parser.add_argument("--seed", type=int, default=7)
    asyncio.run(main(parser.parse_args()))
