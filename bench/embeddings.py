"""Local embedding cost: model load time and throughput of all-MiniLM-L6-v2 on onnxruntime.

Load: checksums of model and tokenizer, onnxruntime import and session creation, in this
fresh process. Throughput: `--docs` texts of about 100 words, `--batch` per batch, through
`LocalEmbedder.embed` (so tokenising, the thread hop and pooling count too); prints docs
per second of wall time and per CPU-second, the median of `--repeat` rounds.

    .venv/bin/python bench/embeddings.py [--docs 320] [--batch 32] [--threads N] [--repeat 3]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from klikkflow.ai.embeddings import LocalEmbedder, default_threads  # noqa: E402

VOCABULARY = (
    "the a workflow runs every hour and sends an invoice to each customer whose order was "
    "shipped yesterday while the support team reviews tickets about password resets billing "
    "errors and slow pages before noon so that managers can read a short report with totals "
    "per region product and week including refunds discounts taxes and late payments"
)


def texts(count: int, words: int = 100) -> list[str]:
    rng, vocabulary = random.Random(7), VOCABULARY.split()
    return [" ".join(rng.choice(vocabulary) for _ in range(words)) for _ in range(count)]


async def main(docs: int, batch: int, threads: int | None, repeat: int) -> None:
    embedder = LocalEmbedder(batch_size=batch, threads=threads)
    started = time.perf_counter()
    embedder.load()
    print(f"load (verify + onnxruntime session): {time.perf_counter() - started:.2f} s")
    print(f"intra-op threads: {threads or default_threads()}, batch {batch}, {docs} docs")
    corpus = texts(docs)
    await embedder.embed(corpus[:batch])  # warm-up
    walls, cpus = [], []
    for _ in range(repeat):
        wall, cpu = time.perf_counter(), time.process_time()
        vectors = await embedder.embed(corpus)
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
        assert len(vectors) == docs
    wall, cpu = statistics.median(walls), statistics.median(cpus)
    print(f"throughput: {docs / wall:.1f} docs/s wall, {docs / cpu:.1f} docs per CPU-s")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, default=320)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    asyncio.run(main(args.docs, args.batch, args.threads, args.repeat))
