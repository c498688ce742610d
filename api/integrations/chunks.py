"""From a RAG framework's retrieved documents to a usefirst retrieval: shared by the
LangChain and LlamaIndex integrations (no framework import here).

A retrieved document counts as a usefirst chunk when its metadata names the dataset
and the chunk:

- dataset: ``usefirst_dataset_id``, else ``dataset_id`` (the registered dataset's UUID);
- chunk: ``usefirst_chunk_id``, else ``chunk_id``, else the framework's own document id
  (LangChain ``Document.id``, LlamaIndex ``node_id``);
- score (optional): the framework's score (LlamaIndex ``NodeWithScore.score``), else
  ``usefirst_score``, else ``score`` / ``relevance_score`` in the metadata.

Ranks are the retrieval order among the usefirst chunks (1..n): the API needs ranks
without gaps, so a document without usefirst metadata does not take a rank. Such
documents are never skipped silently: each retrieval that had some emits a
:class:`MissingChunkMetadataWarning` and a log warning naming how many and why. A
retrieval with no usefirst chunk at all reports nothing (and warns). Only the first
``CHUNKS_PER_RETRIEVAL_MAX`` chunks are reported (with a warning when there were more).
"""

from __future__ import annotations

import logging
import math
import warnings
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from api.sdk.batching import AsyncUsageReporter, Chunk, UsageReporter

log = logging.getLogger("usefirst.integrations")

DATASET_KEYS: Final = ("usefirst_dataset_id", "dataset_id")
CHUNK_KEYS: Final = ("usefirst_chunk_id", "chunk_id")
SCORE_KEYS: Final = ("usefirst_score", "score", "relevance_score")
CHUNKS_PER_RETRIEVAL_MAX: Final = 100  # the API's limit (ledger.types)


class MissingChunkMetadataWarning(UserWarning):
    """Retrieved documents without usefirst metadata were not reported."""


@dataclass(frozen=True)
class Retrieved:
    """One retrieved document as the framework gave it."""

    metadata: Mapping[str, Any]
    document_id: str | None = None
    score: float | None = None


def usefirst_chunks(documents: Iterable[Retrieved], *, source: str, query_id: str) -> list[Chunk]:
    """The usefirst chunks of one retrieval in rank order, warning about the rest."""
    chunks: list[Chunk] = []
    skipped = 0
    total = 0
    for document in documents:
        total += 1
        dataset_id = _first(document.metadata, DATASET_KEYS)
        chunk_id = _first(document.metadata, CHUNK_KEYS) or document.document_id
        if not dataset_id or not chunk_id:
            skipped += 1
            continue
        score = _finite(document.score) if document.score is not None else None
        if score is None:
            score = _score(document.metadata)
        chunks.append(Chunk(dataset_id=str(dataset_id), chunk_id=str(chunk_id), score=score))
    if skipped:
        _warn(
            f"{source}: {skipped} of {total} retrieved documents of query {query_id} have no "
            f"usefirst metadata (a dataset id in {' or '.join(DATASET_KEYS)} and a chunk id in "
            f"{' or '.join(CHUNK_KEYS)} or the document id) and were not reported"
            + ("; nothing was reported for this retrieval" if not chunks else "")
        )
    if len(chunks) > CHUNKS_PER_RETRIEVAL_MAX:
        _warn(
            f"{source}: query {query_id} retrieved {len(chunks)} usefirst chunks; only the "
            f"first {CHUNKS_PER_RETRIEVAL_MAX} (the API's limit) were reported"
        )
        chunks = chunks[:CHUNKS_PER_RETRIEVAL_MAX]
    return chunks


def _first(metadata: Mapping[str, Any], keys: tuple[str, ...]) -> Any:
    for key in keys:
        value = metadata.get(key)
        if value is not None and value != "":
            return value
    return None


def _score(metadata: Mapping[str, Any]) -> float | None:
    return _finite(_first(metadata, SCORE_KEYS))


def _finite(value: object) -> float | None:
    """``value`` as a finite float (numpy scalars included), else None."""
    if value is None or isinstance(value, bool | str):
        return None
    try:
        score = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return score if math.isfinite(score) else None


Reporter = UsageReporter | AsyncUsageReporter


def report(reporter: Reporter, query_id: str, chunks: list[Chunk], event_id: str) -> str:
    """Queue the retrieval on either kind of reporter without waiting (an async
    reporter's bounded queue raises ``QueueFull`` rather than block a callback)."""
    if isinstance(reporter, AsyncUsageReporter):
        return reporter.report_retrieval_nowait(query_id, chunks, event_id=event_id)
    return reporter.report_retrieval(query_id, chunks, event_id=event_id)


def _warn(message: str) -> None:
    log.warning(message)
    warnings.warn(message, MissingChunkMetadataWarning, stacklevel=3)
