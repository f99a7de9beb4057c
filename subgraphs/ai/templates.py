"""The shipped workflow template library (subgraphs/ai/template_library/*.json) and its ranking.

A template file holds a workflow document with what people search it by:

    {"name": ..., "description": ..., "tags": [...], "workflow": {"nodes": ..., ...}}

Its id is the file name without ``.json``. ``recommend`` ranks the templates by the cosine
similarity of a query's embedding to each template's name, description and tags, embedded
once per process by the local embedder (no network, no cost per query); the vectors of
recent queries are kept too, so a repeated query costs one matrix product.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from klikkflow.ai.embeddings import Embedder, LocalEmbedder

log = logging.getLogger(__name__)

TEMPLATES_DIR = Path(__file__).resolve().parent / "template_library"  # package data
MAX_RESULTS = 50
MAX_QUERY_CHARS = 1_000
QUERY_CACHE = 256
FIELDS = {"name", "description", "tags", "workflow"}


class TemplateFileError(Exception):
    """A template file is not a template (the library refuses to load, naming the file)."""

    def __init__(self, path: Path, problem: str) -> None:
        super().__init__(f"template {path.name}: {problem}")
        self.path, self.problem = path, problem


@dataclass(frozen=True)
class Template:
    id: str
    name: str
    description: str
    tags: tuple[str, ...]
    workflow: dict[str, Any]  # the workflow document, ready for createWorkflow / import

    @property
    def search_text(self) -> str:
        """What a query is compared with."""
        return f"{self.name}. {self.description} Tags: {', '.join(self.tags)}."


@dataclass(frozen=True)
class Match:
    template: Template
    score: float  # cosine similarity, -1..1


def read_template(path: Path) -> Template:
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise TemplateFileError(path, f"cannot be read as JSON ({exc})") from None
    if not isinstance(raw, dict) or set(raw) != FIELDS:
        raise TemplateFileError(path, f"must be an object with exactly {sorted(FIELDS)}")
    name, description, tags, workflow = (
        raw[k] for k in ("name", "description", "tags", "workflow")
    )
    if not (isinstance(name, str) and name.strip()):
        raise TemplateFileError(path, "name must be a non-empty string")
    if not (isinstance(description, str) and description.strip()):
        raise TemplateFileError(path, "description must be a non-empty string")
    if not (isinstance(tags, list) and tags and all(isinstance(t, str) and t for t in tags)):
        raise TemplateFileError(path, "tags must be a non-empty list of strings")
    if not isinstance(workflow, dict):
        raise TemplateFileError(path, "workflow must be a workflow document (an object)")
    return Template(path.stem, name.strip(), description.strip(), tuple(tags), workflow)


def load_templates(directory: Path = TEMPLATES_DIR) -> list[Template]:
    """Every template of the directory, by id."""
    return [read_template(path) for path in sorted(directory.glob("*.json"))]


class TemplateLibrary:
    def __init__(self, directory: Path = TEMPLATES_DIR, embedder: Embedder | None = None) -> None:
        self.directory = directory
        self._embedder = embedder
        self._templates: list[Template] | None = None
        self._vectors: npt.NDArray[np.float32] | None = None
        self._queries: OrderedDict[str, npt.NDArray[np.float32]] = OrderedDict()
        self._lock = asyncio.Lock()

    @property
    def embedder(self) -> Embedder:
        if self._embedder is None:
            self._embedder = LocalEmbedder()
        return self._embedder

    @property
    def templates(self) -> list[Template]:
        if self._templates is None:
            self._templates = load_templates(self.directory)
        return self._templates

    async def warm(self) -> None:
        """Load the model and embed the templates now rather than on the first query."""
        try:
            await self._template_vectors()
            await self._query_vector("warm up")
        except Exception:  # the first query will try again and report it
            log.exception("could not embed the workflow templates")

    async def recommend(self, query: str, first: int = 5) -> list[Match]:
        """The `first` templates nearest the query's meaning, best first. A blank query
        ranks nothing: it lists the first templates in library order, scored 0."""
        first = max(1, min(first, MAX_RESULTS))
        query = " ".join(query.split())[:MAX_QUERY_CHARS]
        if not query or not self.templates:
            return [Match(t, 0.0) for t in self.templates[:first]]
        vectors = await self._template_vectors()
        scores = vectors @ await self._query_vector(query)
        best = np.argsort(-scores, kind="stable")[:first]
        return [Match(self.templates[i], float(scores[i])) for i in best]

    async def _template_vectors(self) -> npt.NDArray[np.float32]:
        if self._vectors is None:
            async with self._lock:
                if self._vectors is None:
                    texts = [t.search_text for t in self.templates]
                    self._vectors = _matrix(await self.embedder.embed(texts))
        return self._vectors

    async def _query_vector(self, query: str) -> npt.NDArray[np.float32]:
        key = query.lower()
        found = self._queries.get(key)
        if found is None:
            found = _matrix(await self.embedder.embed([query]))[0]
            self._queries[key] = found
            while len(self._queries) > QUERY_CACHE:
                self._queries.popitem(last=False)
        else:
            self._queries.move_to_end(key)
        return found


def _matrix(vectors: Sequence[Sequence[float]]) -> npt.NDArray[np.float32]:
    return np.asarray(vectors, dtype=np.float32)


template_library = TemplateLibrary()
