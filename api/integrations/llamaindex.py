"""LlamaIndex: an instrumentation event handler that reports every retrieval to usefirst.

Needs the extra: ``pip install 'usefirst[llamaindex]'``. Attach it once to the root
dispatcher (it then sees every retriever, query engine and chat engine)::

    handler = instrument(reporter)      # a UsageReporter
    index.as_retriever().retrieve("…")  # reported
    handler.detach()

Each ``RetrievalEndEvent`` becomes one retrieval event: ``query_id`` = the retrieval's
span id (or what ``query_id`` returns), ``event_id`` = ``li:<event id>``, the chunks =
the returned nodes with usefirst metadata in their order, with the node's score. Node
metadata keys (see :mod:`api.integrations.chunks`): ``usefirst_dataset_id`` (or
``dataset_id``), ``usefirst_chunk_id`` (or ``chunk_id``, else the node id). Nodes
without them are skipped with a :class:`MissingChunkMetadataWarning`.

LlamaIndex's dispatcher swallows handler exceptions, so this handler never lets one
escape silently: a reporting failure (e.g. ``QueueFull``) is logged as an error.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from llama_index.core.instrumentation import get_dispatcher
from llama_index.core.instrumentation.dispatcher import Dispatcher
from llama_index.core.instrumentation.event_handlers import BaseEventHandler
from llama_index.core.instrumentation.events import BaseEvent
from llama_index.core.instrumentation.events.retrieval import RetrievalEndEvent
from pydantic import ConfigDict, PrivateAttr

from api.integrations.chunks import (
    MissingChunkMetadataWarning,
    Reporter,
    Retrieved,
    report,
    usefirst_chunks,
)

log = logging.getLogger("usefirst.integrations.llamaindex")


@dataclass(frozen=True)
class Retrieval:
    """What LlamaIndex told about one retrieval, for a custom ``query_id``."""

    event_id: str
    span_id: str | None
    query: str
    tags: dict[str, Any] = field(default_factory=dict)


class UsefirstEventHandler(BaseEventHandler):
    """Reports ``RetrievalEndEvent``\\ s through a usage reporter (sync or async)."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    reporter: Any
    query_id: Callable[[Retrieval], str] | None = None
    _dispatcher: Dispatcher | None = PrivateAttr(default=None)

    @classmethod
    def class_name(cls) -> str:
        return "UsefirstEventHandler"

    def handle(self, event: BaseEvent, **kwargs: Any) -> None:
        if not isinstance(event, RetrievalEndEvent):
            return
        try:
            self._report(event)
        except Exception:
            log.exception("usefirst: reporting a LlamaIndex retrieval failed")

    def _report(self, event: RetrievalEndEvent) -> None:
        query = event.str_or_query_bundle
        retrieval = Retrieval(
            event_id=event.id_,
            span_id=event.span_id,
            query=query if isinstance(query, str) else getattr(query, "query_str", str(query)),
            tags=dict(event.tags),
        )
        query_id = (
            self.query_id(retrieval) if self.query_id is not None else (event.span_id or event.id_)
        )
        retrieved = [
            Retrieved(n.node.metadata or {}, document_id=n.node.node_id, score=n.score)
            for n in event.nodes
        ]
        chunks = usefirst_chunks(retrieved, source="LlamaIndex retriever", query_id=query_id)
        if chunks:
            reporter: Reporter = self.reporter
            report(reporter, query_id, chunks, event_id=f"li:{event.id_}")

    def attach(self, dispatcher: Dispatcher | None = None) -> UsefirstEventHandler:
        """Register with ``dispatcher`` (default: the root dispatcher)."""
        target = dispatcher or get_dispatcher()
        if not any(h is self for h in target.event_handlers):
            target.add_event_handler(self)
        self._dispatcher = target
        return self

    def detach(self) -> None:
        """Unregister (a no-op when not attached)."""
        if self._dispatcher is not None:
            self._dispatcher.event_handlers = [
                h for h in self._dispatcher.event_handlers if h is not self
            ]
            self._dispatcher = None


def instrument(
    reporter: Reporter,
    *,
    query_id: Callable[[Retrieval], str] | None = None,
    dispatcher: Dispatcher | None = None,
) -> UsefirstEventHandler:
    """Report every LlamaIndex retrieval through ``reporter``; returns the attached
    handler (call ``detach()`` to stop)."""
    return UsefirstEventHandler(reporter=reporter, query_id=query_id).attach(dispatcher)


__all__ = ["MissingChunkMetadataWarning", "Retrieval", "UsefirstEventHandler", "instrument"]
