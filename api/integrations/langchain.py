"""LangChain: a callback handler that reports every retrieval to usefirst.

Needs the extra: ``pip install 'usefirst[langchain]'``. Pass the handler in the
callbacks of any chain or retriever call::

    handler = UsefirstCallbackHandler(reporter)          # a UsageReporter
    chain.invoke(question, config={"callbacks": [handler]})

Each retriever run becomes one retrieval event: ``query_id`` = the retriever's run id
(or what ``query_id`` returns), ``event_id`` = ``lc:<run id>`` (so a repeated callback
counts once), the chunks = the returned documents with usefirst metadata in their
order. Document metadata keys (see :mod:`api.integrations.chunks`):
``usefirst_dataset_id`` (or ``dataset_id``), ``usefirst_chunk_id`` (or ``chunk_id``,
else ``Document.id``), optional ``usefirst_score``/``score``/``relevance_score``.
Documents without them are skipped with a :class:`MissingChunkMetadataWarning`.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.documents import Document

from api.integrations.chunks import (
    MissingChunkMetadataWarning,
    Reporter,
    Retrieved,
    report,
    usefirst_chunks,
)

log = logging.getLogger("usefirst.integrations.langchain")


@dataclass(frozen=True)
class RetrieverRun:
    """What LangChain told about one retriever run, for a custom ``query_id``."""

    run_id: uuid.UUID
    parent_run_id: uuid.UUID | None
    query: str | None
    metadata: dict[str, Any] = field(default_factory=dict)
    tags: list[str] = field(default_factory=list)


class UsefirstCallbackHandler(BaseCallbackHandler):
    """Reports each retriever run through a usage reporter (sync or async).

    ``query_id``: a function of the :class:`RetrieverRun` giving the query id (default:
    the retriever's run id). ``raise_error``: let a reporting failure (e.g. ``QueueFull``)
    propagate into the chain; by default LangChain logs it and the chain goes on.
    """

    def __init__(
        self,
        reporter: Reporter,
        *,
        query_id: Callable[[RetrieverRun], str] | None = None,
        raise_error: bool = False,
    ) -> None:
        super().__init__()
        self.reporter = reporter
        self.query_id = query_id
        self.raise_error = raise_error
        self._starts: dict[uuid.UUID, tuple[str | None, dict[str, Any]]] = {}
        self._lock = threading.Lock()

    def on_retriever_start(
        self,
        serialized: dict[str, Any],
        query: str,
        *,
        run_id: uuid.UUID,
        parent_run_id: uuid.UUID | None = None,
        tags: list[str] | None = None,
        metadata: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        if self.query_id is not None:
            with self._lock:
                self._starts[run_id] = (query, dict(metadata or {}))

    def on_retriever_error(
        self,
        error: BaseException,
        *,
        run_id: uuid.UUID,
        parent_run_id: uuid.UUID | None = None,
        **kwargs: Any,
    ) -> None:
        with self._lock:
            self._starts.pop(run_id, None)

    def on_retriever_end(
        self,
        documents: Sequence[Document],
        *,
        run_id: uuid.UUID,
        parent_run_id: uuid.UUID | None = None,
        tags: list[str] | None = None,
        **kwargs: Any,
    ) -> None:
        with self._lock:
            query, metadata = self._starts.pop(run_id, (None, {}))
        run = RetrieverRun(run_id, parent_run_id, query, metadata, list(tags or []))
        query_id = self.query_id(run) if self.query_id is not None else str(run_id)
        retrieved = [Retrieved(d.metadata or {}, document_id=d.id) for d in documents]
        chunks = usefirst_chunks(retrieved, source="LangChain retriever", query_id=query_id)
        if chunks:
            report(self.reporter, query_id, chunks, event_id=f"lc:{run_id}")


__all__ = ["MissingChunkMetadataWarning", "RetrieverRun", "UsefirstCallbackHandler"]
