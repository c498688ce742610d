"""Usage reporters: queue usage events in memory and deliver them in batches from the
background, so a training loop or a RAG request never waits on the ledger.

:class:`UsageReporter` (a thread) and :class:`AsyncUsageReporter` (an asyncio task)
promise the same things:

- ``report_training(...)`` / ``report_retrieval(...)`` build the event at once (its
  ``event_id`` is a uuid4 hex unless you pass one; ``occurred_at`` is now unless you
  pass one), put it in a **bounded** queue and return the event id. When the queue is
  full they block (``on_full="block"``, optionally at most ``block_timeout_s``) or
  raise :class:`~api.sdk.errors.QueueFull` (``on_full="raise"``).
- A batch is sent when ``batch_events_max`` events are waiting, when the oldest has
  waited ``flush_interval_s``, on ``flush()``, and on ``close()`` (also via the context
  manager and, for the thread, at interpreter exit).
- Transient failures (no answer, 408/425/429/5xx) are retried with exponential backoff
  and the **same events, same ids**, for as long as the batch's oldest event is younger
  than ``retry_max_age_s`` (None: forever). The ledger counts an event id once, so a
  resend of a batch that did land answers ``duplicate`` and nothing is double counted.
- Nothing is dropped silently. Events the ledger rejects (unknown dataset, use not
  allowed…; it keeps them in its quarantine) go to ``on_rejected`` and a warning log.
  Events that cannot be delivered (too old, a permanent error such as a revoked key, or
  the reporter closed while the server was unreachable) go to ``on_failed``, an error
  log and, when ``dead_letter_path`` is set, that NDJSON file, from which
  :func:`replay_dead_letters` resends them later under their original ids.
- ``stats`` counts enqueued, sent, accepted, duplicates, rejected, failed, pending,
  retries and batches.

Callbacks run on the delivering thread (or task): keep them short, and do not call
``flush``/``close`` from them (they wait for that very thread).
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import json
import logging
import queue
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Generic, Literal, TypeVar

from api.sdk.client import AsyncUsefirstClient, UsefirstClient, backoff_delay_s
from api.sdk.errors import (
    PayloadTooLargeError,
    QueueFull,
    ReporterClosed,
    UsefirstError,
    is_transient,
)
from api.sdk.routes import Call, Routes, encode_json
from api.sdk.types import EventResult, UsageResult

log = logging.getLogger("usefirst.sdk")

BATCH_EVENTS_MAX = 50_000  # the API's limit per request
_SPLIT = -1.0  # _next_step: send the batch in two halves
C = TypeVar("C", UsefirstClient, AsyncUsefirstClient)
_USAGE_ROUTES = {"training": Routes.report_training, "retrievals": Routes.report_retrievals}
Kind = Literal["training", "retrievals"]
OnFull = Literal["block", "raise"]
_LABELS = {"training": "training", "retrievals": "retrieval"}  # for log messages
RejectedCallback = Callable[[str, dict[str, Any], EventResult], None]
FailedCallback = Callable[[str, list[dict[str, Any]], BaseException], None]


@dataclass(frozen=True)
class Chunk:
    """One retrieved chunk: the registered dataset's UUID, the chunk's id within it, an
    optional score, and an optional rank (by default its position, 1-based)."""

    dataset_id: uuid.UUID | str
    chunk_id: str
    score: float | None = None
    rank: int | None = None


ChunkLike = Chunk | Mapping[str, Any] | tuple[Any, ...]


@dataclass(frozen=True)
class ReporterStats:
    """A snapshot of a reporter's counters (events, unless named otherwise)."""

    enqueued: int = 0  # taken into the queue
    sent: int = 0  # answered by the ledger: accepted + duplicates + rejected
    accepted: int = 0
    duplicates: int = 0  # already recorded (e.g. a resend of a batch that had landed)
    rejected: int = 0  # refused by the ledger (kept in its quarantine)
    failed: int = 0  # could not be delivered (see on_failed / dead letters)
    pending: int = 0  # enqueued, neither answered nor failed yet
    retries: int = 0  # batch resends after a transient failure
    batches: int = 0  # batches answered
    last_error: str | None = None


def training_event(
    run_id: str,
    dataset_id: uuid.UUID | str,
    quantity: int,
    *,
    unit: str = "tokens",
    epochs: int = 1,
    occurred_at: datetime | None = None,
    event_id: str | None = None,
) -> dict[str, Any]:
    """A training event as the API takes it (JSON-ready, so every resend is identical)."""
    return {
        "event_id": event_id or uuid.uuid4().hex,
        "run_id": str(run_id),
        "dataset_id": str(dataset_id),
        "unit": unit,
        "quantity": quantity,
        "epochs": epochs,
        "occurred_at": _iso(occurred_at),
    }


def retrieval_event(
    query_id: str,
    chunks: Iterable[ChunkLike],
    *,
    occurred_at: datetime | None = None,
    event_id: str | None = None,
) -> dict[str, Any]:
    """A retrieval event as the API takes it. ``chunks`` in rank order: :class:`Chunk`
    objects, mappings with ``dataset_id``/``chunk_id`` (and ``score``, ``rank``), or
    ``(dataset_id, chunk_id[, score])`` tuples; a chunk without a rank gets its
    position (1-based)."""
    return {
        "event_id": event_id or uuid.uuid4().hex,
        "query_id": str(query_id),
        "occurred_at": _iso(occurred_at),
        "chunks": [_chunk(c, position) for position, c in enumerate(chunks, start=1)],
    }


def _chunk(chunk: ChunkLike, position: int) -> dict[str, Any]:
    if isinstance(chunk, Chunk):
        dataset_id, chunk_id = chunk.dataset_id, chunk.chunk_id
        score, rank = chunk.score, chunk.rank
    elif isinstance(chunk, Mapping):
        dataset_id, chunk_id = chunk["dataset_id"], chunk["chunk_id"]
        score, rank = chunk.get("score"), chunk.get("rank")
    elif isinstance(chunk, tuple) and len(chunk) in (2, 3):
        dataset_id, chunk_id = chunk[0], chunk[1]
        score, rank = (chunk[2] if len(chunk) == 3 else None), None
    else:
        raise TypeError(
            f"chunk {position} must be a Chunk, a mapping or a (dataset_id, chunk_id[, score]) "
            f"tuple, got {type(chunk).__name__}"
        )
    out: dict[str, Any] = {
        "dataset_id": str(dataset_id),
        "chunk_id": str(chunk_id),
        "rank": position if rank is None else int(rank),
    }
    if score is not None:
        out["score"] = float(score)
    return out


def _iso(occurred_at: datetime | None) -> str:
    """ISO 8601 with the offset; UTC as ``Z`` (the spelling the server's fast lane
    for retrieval batches expects; any other is accepted too, a little slower)."""
    if occurred_at is None:
        occurred_at = datetime.now(UTC)
    offset = occurred_at.utcoffset() if occurred_at.tzinfo is not None else None
    if offset is None:
        raise ValueError(
            f"occurred_at {occurred_at.isoformat()} has no time zone; pass an aware datetime"
        )
    text = occurred_at.isoformat()
    return text[:-6] + "Z" if not offset and text.endswith("+00:00") else text


@dataclass
class _Item:
    kind: Kind
    event: dict[str, Any]
    enqueued_at: float = field(default_factory=time.monotonic)


class _Marker:
    """A flush or stop request travelling through the queue behind the events before it."""

    def __init__(self, stop: bool = False) -> None:
        self.stop = stop
        self.done = threading.Event()


@dataclass
class _Options:
    model_id: str
    batch_events_max: int
    flush_interval_s: float
    queue_events_max: int
    on_full: OnFull
    block_timeout_s: float | None
    retry_max_age_s: float | None
    backoff_initial_s: float
    backoff_max_s: float
    dead_letter_path: Path | None

    def __post_init__(self) -> None:
        if not 0 < self.batch_events_max <= BATCH_EVENTS_MAX:
            raise ValueError(f"batch_events_max must be 1..{BATCH_EVENTS_MAX}")
        if self.queue_events_max < self.batch_events_max:
            raise ValueError("queue_events_max must be at least batch_events_max")
        if self.flush_interval_s <= 0:
            raise ValueError("flush_interval_s must be positive")
        if self.on_full not in ("block", "raise"):
            raise ValueError("on_full must be 'block' or 'raise'")


class _Tally:
    """Counters, callbacks and dead letters, shared by the sync and async reporters.
    Thread-safe; callbacks run on the delivering thread or task and may not raise."""

    def __init__(
        self,
        options: _Options,
        on_rejected: RejectedCallback | None,
        on_failed: FailedCallback | None,
    ) -> None:
        self._options = options
        self._on_rejected = on_rejected
        self._on_failed = on_failed
        self._lock = threading.Lock()
        self._counts: dict[str, int] = dict.fromkeys(
            ("enqueued", "sent", "accepted", "duplicates", "rejected", "failed"), 0
        )
        self._counts.update(retries=0, batches=0)
        self._last_error: str | None = None

    def snapshot(self) -> ReporterStats:
        with self._lock:
            c = self._counts
            pending = c["enqueued"] - c["sent"] - c["failed"]
            return ReporterStats(pending=pending, last_error=self._last_error, **c)

    def enqueued(self) -> None:
        with self._lock:
            self._counts["enqueued"] += 1

    def retried(self, kind: str, count: int, error: BaseException, delay_s: float) -> None:
        with self._lock:
            self._counts["retries"] += 1
            self._last_error = str(error)
        log.warning(
            "usefirst: sending %d %s events failed (%s); retrying in %.1f s with the same "
            "event ids",
            count,
            _LABELS.get(kind, kind),
            error,
            delay_s,
        )

    def answered(self, kind: str, items: Sequence[_Item], result: UsageResult) -> None:
        rejected = [r for r in result.results if r.status == "rejected"]
        with self._lock:
            c = self._counts
            c["sent"] += len(items)
            c["accepted"] += result.accepted
            c["duplicates"] += result.duplicates
            c["rejected"] += result.rejected
            c["batches"] += 1
            # An answer that does not cover every event would leave some unaccounted.
            unanswered = len(items) - len(result.results)
            if unanswered:
                c["sent"] -= unanswered
                c["failed"] += unanswered
        if rejected:
            first = rejected[0]
            log.warning(
                "usefirst: the ledger rejected %d of %d %s events (kept in its quarantine); "
                "first: event %s %s at %s: %s",
                len(rejected),
                len(items),
                _LABELS.get(kind, kind),
                first.event_id,
                first.code,
                first.field,
                first.message,
            )
        for outcome in rejected:
            if self._on_rejected is not None and 0 <= outcome.index < len(items):
                self._call(self._on_rejected, kind, items[outcome.index].event, outcome)

    def failed(self, kind: str, items: Sequence[_Item], error: BaseException) -> None:
        events = [item.event for item in items]
        with self._lock:
            self._counts["failed"] += len(items)
            self._last_error = str(error)
        where = self._dead_letters(kind, events, error)
        log.error(
            "usefirst: %d %s events of model %s could not be delivered: %s%s",
            len(events),
            _LABELS.get(kind, kind),
            self._options.model_id,
            error,
            f"; written to {where} (resend with replay_dead_letters)" if where else "",
        )
        if self._on_failed is not None:
            self._call(self._on_failed, kind, events, error)

    def _dead_letters(
        self, kind: str, events: list[dict[str, Any]], error: BaseException
    ) -> Path | None:
        path = self._options.dead_letter_path
        if path is None:
            return None
        reason = str(error)
        lines = [
            json.dumps(
                {"model_id": self._options.model_id, "kind": kind, "event": e, "reason": reason},
                separators=(",", ":"),
            )
            for e in events
        ]
        try:
            with self._lock, path.open("a", encoding="utf-8") as out:
                out.write("\n".join(lines) + "\n")
        except OSError:
            log.exception("usefirst: cannot write dead letters to %s", path)
            return None
        return path

    @staticmethod
    def _call(callback: Callable[..., None], *args: Any) -> None:
        try:
            callback(*args)
        except Exception:
            log.exception("usefirst: a reporter callback raised; continuing")


def _by_kind(items: Sequence[_Item]) -> list[tuple[Kind, list[_Item]]]:
    groups: dict[Kind, list[_Item]] = {"training": [], "retrievals": []}
    for item in items:
        groups[item.kind].append(item)
    return [(kind, group) for kind, group in groups.items() if group]


def _expired(items: Sequence[_Item], options: _Options) -> bool:
    max_age_s = options.retry_max_age_s
    return max_age_s is not None and time.monotonic() - items[0].enqueued_at >= max_age_s


class _ReporterBase(Generic[C]):
    """Options, counters and retry decisions shared by both reporters; the subclass
    sets up its queue and deliverer in ``_start``."""

    def __init__(
        self,
        client: C,
        model_id: uuid.UUID | str,
        *,
        batch_events_max: int = 1_000,
        flush_interval_s: float = 1.0,
        queue_events_max: int = 100_000,
        on_full: OnFull = "block",
        block_timeout_s: float | None = None,
        retry_max_age_s: float | None = 24 * 3600.0,
        backoff_initial_s: float = 0.5,
        backoff_max_s: float = 30.0,
        close_timeout_s: float = 30.0,
        dead_letter_path: str | Path | None = None,
        on_rejected: RejectedCallback | None = None,
        on_failed: FailedCallback | None = None,
    ) -> None:
        self._client: C = client
        self._close_timeout_s = close_timeout_s
        self._options = _Options(
            model_id=str(model_id),
            batch_events_max=batch_events_max,
            flush_interval_s=flush_interval_s,
            queue_events_max=queue_events_max,
            on_full=on_full,
            block_timeout_s=block_timeout_s,
            retry_max_age_s=retry_max_age_s,
            backoff_initial_s=backoff_initial_s,
            backoff_max_s=backoff_max_s,
            dead_letter_path=Path(dead_letter_path) if dead_letter_path is not None else None,
        )
        self._tally = _Tally(self._options, on_rejected, on_failed)
        self._closed = False
        self._start()

    def _start(self) -> None:
        raise NotImplementedError

    @property
    def model_id(self) -> str:
        return self._options.model_id

    @property
    def stats(self) -> ReporterStats:
        return self._tally.snapshot()

    def _check_open(self) -> None:
        if self._closed:
            raise ReporterClosed("this usage reporter is closed; create a new one")

    def _full(self) -> QueueFull:
        return QueueFull(
            f"the usage queue holds {self._options.queue_events_max} events (the server is "
            "slow or unreachable); raise queue_events_max or use on_full='block'"
        )

    def _call(self, kind: Kind, items: list[_Item]) -> Call[UsageResult]:
        return _USAGE_ROUTES[kind](self.model_id, [i.event for i in items])

    def _next_step(
        self, kind: Kind, items: list[_Item], error: UsefirstError, attempt: int, abandon: bool
    ) -> float | None:
        """After a failed send: the delay before resending the same batch, ``_SPLIT``
        (too large: send it in halves), or None (given up; recorded as failed)."""
        if isinstance(error, PayloadTooLargeError) and len(items) > 1:
            return _SPLIT
        options = self._options
        if not is_transient(error) or abandon:
            self._tally.failed(kind, items, error)
            return None
        if _expired(items, options):
            self._tally.failed(kind, items, _too_old(error, options))
            return None
        delay_s = backoff_delay_s(
            attempt, options.backoff_initial_s, options.backoff_max_s, error.retry_after_s
        )
        self._tally.retried(kind, len(items), error, delay_s)
        return delay_s


class UsageReporter(_ReporterBase[UsefirstClient]):
    """Report usage from any thread; a background thread delivers it in batches.

    ``client`` is a :class:`UsefirstClient` authenticated as the model's team (the
    reporter does not close it: close the reporter first). Use it as a context manager
    or call :meth:`close`; at interpreter exit an open reporter flushes for at most
    ``close_timeout_s``.
    """

    def _start(self) -> None:
        # Markers bypass the bound (they must get in even when the queue is full).
        self._queue: queue.Queue[_Item | _Marker] = queue.Queue()
        self._space = threading.BoundedSemaphore(self._options.queue_events_max)
        self._abandon = threading.Event()
        self._close_lock = threading.Lock()
        self._put_lock = threading.Lock()
        self._thread = threading.Thread(
            target=self._run, name=f"usefirst-reporter-{self.model_id[:8]}", daemon=True
        )
        self._thread.start()
        atexit.register(self._at_exit)

    def __enter__(self) -> UsageReporter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- producers ---

    def report_training(
        self,
        run_id: str,
        dataset_id: uuid.UUID | str,
        quantity: int,
        *,
        unit: str = "tokens",
        epochs: int = 1,
        occurred_at: datetime | None = None,
        event_id: str | None = None,
    ) -> str:
        """Queue a training event (``quantity`` units × ``epochs`` of ``dataset_id`` in
        run ``run_id``); returns its event id."""
        event = training_event(
            run_id,
            dataset_id,
            quantity,
            unit=unit,
            epochs=epochs,
            occurred_at=occurred_at,
            event_id=event_id,
        )
        return self._put("training", event)

    def report_retrieval(
        self,
        query_id: str,
        chunks: Iterable[ChunkLike],
        occurred_at: datetime | None = None,
        event_id: str | None = None,
    ) -> str:
        """Queue a retrieval event (``chunks`` in rank order); returns its event id."""
        event = retrieval_event(query_id, chunks, occurred_at=occurred_at, event_id=event_id)
        return self._put("retrievals", event)

    def _put(self, kind: Kind, event: dict[str, Any]) -> str:
        self._check_open()
        if self._options.on_full == "raise":
            acquired = self._space.acquire(blocking=False)
        else:
            acquired = self._space.acquire(timeout=self._options.block_timeout_s)
        if not acquired:
            raise self._full()
        # Under the lock close() takes to queue its stop marker: every event is either
        # ahead of that marker (delivered or failed by the thread) or refused here.
        with self._put_lock:
            if self._closed:
                self._space.release()
                self._check_open()
            self._tally.enqueued()
            self._queue.put(_Item(kind, event))
        return str(event["event_id"])

    # --- control ---

    def flush(self, timeout_s: float | None = None) -> bool:
        """Send everything queued so far; True once it was answered or failed, False when
        ``timeout_s`` passed first (delivery goes on in the background)."""
        if not self._thread.is_alive():
            return self._queue.empty()
        marker = _Marker()
        self._queue.put(marker)
        return marker.done.wait(timeout_s)

    def close(self, timeout_s: float | None = None) -> ReporterStats:
        """Stop taking events, deliver what is queued (retrying for at most ``timeout_s``,
        default ``close_timeout_s``), then stop. Events still undelivered then are
        failed (``on_failed``, error log, dead letters): never silently lost."""
        with self._close_lock:
            with self._put_lock:
                if not self._closed:
                    self._closed = True
                    atexit.unregister(self._at_exit)
                    self._queue.put(_Marker(stop=True))
            limit_s = self._close_timeout_s if timeout_s is None else timeout_s
            self._thread.join(limit_s)
            if self._thread.is_alive():
                self._abandon.set()
                self._thread.join(self._client.timeout_s + 5.0)
        return self.stats

    def _at_exit(self) -> None:
        self.close()

    # --- the delivering thread ---

    def _run(self) -> None:
        stopping = False
        while not stopping:
            items, markers, stopping = self._collect()
            for kind, group in _by_kind(items):
                try:
                    self._deliver(kind, group)
                except Exception as error:  # a bug must not lose the batch silently
                    log.exception("usefirst: the reporter thread failed")
                    self._tally.failed(kind, group, error)
            if items:
                self._space.release(len(items))
            for marker in markers:
                marker.done.set()
        self._fail_leftovers()

    def _collect(self) -> tuple[list[_Item], list[_Marker], bool]:
        """Wait for the next batch: up to ``batch_events_max`` events, gathered until the
        first of them has waited ``flush_interval_s`` or a flush/stop marker arrives."""
        options = self._options
        items: list[_Item] = []
        markers: list[_Marker] = []
        deadline: float | None = None
        while len(items) < options.batch_events_max:
            try:
                entry = self._queue.get_nowait()
            except queue.Empty:
                timeout = None if deadline is None else deadline - time.monotonic()
                if timeout is not None and timeout <= 0:
                    break
                try:
                    entry = self._queue.get(timeout=timeout)
                except queue.Empty:
                    break
            if isinstance(entry, _Marker):
                markers.append(entry)
                return items, markers, entry.stop
            items.append(entry)
            if deadline is None:
                deadline = entry.enqueued_at + options.flush_interval_s
        return items, markers, False

    def _deliver(self, kind: Kind, items: list[_Item]) -> None:
        attempt = 0
        while True:
            try:
                result = self._client.run(self._call(kind, items), retries=0)
            except UsefirstError as error:
                step = self._next_step(kind, items, error, attempt, self._abandon.is_set())
                if step == _SPLIT:
                    half = len(items) // 2
                    self._deliver(kind, items[:half])
                    self._deliver(kind, items[half:])
                if step is None or step == _SPLIT:
                    return
                self._abandon.wait(step)
                attempt += 1
            except Exception as error:  # not an HTTP failure: our bug or a closed client
                self._tally.failed(kind, items, error)
                return
            else:
                self._tally.answered(kind, items, result)
                return

    def _fail_leftovers(self) -> None:
        leftovers: list[_Item] = []
        while True:
            try:
                entry = self._queue.get_nowait()
            except queue.Empty:
                break
            if isinstance(entry, _Marker):
                entry.done.set()
            else:
                leftovers.append(entry)
        for kind, group in _by_kind(leftovers):
            self._tally.failed(kind, group, ReporterClosed("the reporter closed before sending"))


class AsyncUsageReporter(_ReporterBase[AsyncUsefirstClient]):
    """The asyncio reporter: ``await report_training(...)`` (waits while the queue is
    full, per ``on_full``), or the ``*_nowait`` variants, which raise ``QueueFull``. A
    task on the running loop delivers batches; use ``async with`` or ``await aclose()``
    (there is no exit hook: an event loop is gone by interpreter exit)."""

    def _start(self) -> None:
        self._items: list[_Item | _Marker] = []  # FIFO; markers bypass the bound
        self._queued_events = 0
        self._arrived = asyncio.Event()
        self._space_freed = asyncio.Event()
        self._abandon = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    async def __aenter__(self) -> AsyncUsageReporter:
        self._ensure_task()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # --- producers ---

    async def report_training(
        self,
        run_id: str,
        dataset_id: uuid.UUID | str,
        quantity: int,
        *,
        unit: str = "tokens",
        epochs: int = 1,
        occurred_at: datetime | None = None,
        event_id: str | None = None,
    ) -> str:
        """Queue a training event; returns its event id."""
        event = training_event(
            run_id,
            dataset_id,
            quantity,
            unit=unit,
            epochs=epochs,
            occurred_at=occurred_at,
            event_id=event_id,
        )
        await self._wait_for_space()
        return self._put("training", event)

    async def report_retrieval(
        self,
        query_id: str,
        chunks: Iterable[ChunkLike],
        occurred_at: datetime | None = None,
        event_id: str | None = None,
    ) -> str:
        """Queue a retrieval event (``chunks`` in rank order); returns its event id."""
        event = retrieval_event(query_id, chunks, occurred_at=occurred_at, event_id=event_id)
        await self._wait_for_space()
        return self._put("retrievals", event)

    def report_retrieval_nowait(
        self,
        query_id: str,
        chunks: Iterable[ChunkLike],
        occurred_at: datetime | None = None,
        event_id: str | None = None,
    ) -> str:
        """Like :meth:`report_retrieval` without waiting: raises ``QueueFull``. Callable
        from the reporter's event loop and, once the reporter runs (``async with``), from
        other threads too (framework callbacks run in executor threads)."""
        event = retrieval_event(query_id, chunks, occurred_at=occurred_at, event_id=event_id)
        self._check_open()
        if self._queued_events >= self._options.queue_events_max:
            raise self._full()
        if self._loop is None or _running_loop() is self._loop:
            return self._put("retrievals", event)
        self._loop.call_soon_threadsafe(self._put_or_fail, "retrievals", event)
        return str(event["event_id"])

    def _put_or_fail(self, kind: Kind, event: dict[str, Any]) -> None:
        """``_put`` from a callback scheduled by another thread: a failure cannot reach
        that thread, so it is recorded (on_failed, error log) instead."""
        try:
            self._put(kind, event)
        except Exception as error:
            self._tally.enqueued()
            self._tally.failed(kind, [_Item(kind, event)], error)

    async def _wait_for_space(self) -> None:
        self._check_open()
        options = self._options
        if self._queued_events < options.queue_events_max:
            return
        if options.on_full == "raise":
            raise self._full()
        deadline = (
            None if options.block_timeout_s is None else time.monotonic() + options.block_timeout_s
        )
        while self._queued_events >= options.queue_events_max:
            self._space_freed.clear()
            timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
            try:
                await asyncio.wait_for(self._space_freed.wait(), timeout)
            except TimeoutError:
                raise self._full() from None
            self._check_open()

    def _put(self, kind: Kind, event: dict[str, Any]) -> str:
        self._check_open()
        self._ensure_task()
        self._queued_events += 1
        self._tally.enqueued()
        self._items.append(_Item(kind, event))
        self._arrived.set()
        return str(event["event_id"])

    def _ensure_task(self) -> None:
        if self._task is None:
            self._loop = asyncio.get_running_loop()
            self._task = self._loop.create_task(
                self._run(), name=f"usefirst-reporter-{self.model_id[:8]}"
            )

    # --- control ---

    async def flush(self, timeout_s: float | None = None) -> bool:
        """Send everything queued so far; see :meth:`UsageReporter.flush`."""
        if self._task is None or self._task.done():
            return not self._items
        marker = _Marker()
        self._items.append(marker)
        self._arrived.set()
        return await _wait_marker(marker, timeout_s)

    async def aclose(self, timeout_s: float | None = None) -> ReporterStats:
        """Deliver what is queued (retrying for at most ``timeout_s``, default
        ``close_timeout_s``), then stop; leftovers are failed, never silently lost."""
        if not self._closed:
            self._closed = True
            self._space_freed.set()  # wake waiting producers: they raise ReporterClosed
            if self._task is not None:
                self._items.append(_Marker(stop=True))
                self._arrived.set()
        if self._task is not None:
            limit_s = self._close_timeout_s if timeout_s is None else timeout_s
            done, _ = await asyncio.wait({self._task}, timeout=limit_s)
            if not done:
                self._abandon.set()
                await asyncio.wait({self._task}, timeout=self._client.timeout_s + 5.0)
        return self.stats

    # --- the delivering task ---

    async def _run(self) -> None:
        stopping = False
        while not stopping:
            items, markers, stopping = await self._collect()
            for kind, group in _by_kind(items):
                try:
                    await self._deliver(kind, group)
                except Exception as error:  # a bug must not lose the batch silently
                    log.exception("usefirst: the reporter task failed")
                    self._tally.failed(kind, group, error)
            self._queued_events -= len(items)
            self._space_freed.set()
            for marker in markers:
                marker.done.set()
        self._fail_leftovers()

    async def _collect(self) -> tuple[list[_Item], list[_Marker], bool]:
        options = self._options
        items: list[_Item] = []
        deadline: float | None = None
        while len(items) < options.batch_events_max:
            if not self._items:
                timeout = None if deadline is None else deadline - time.monotonic()
                if timeout is not None and timeout <= 0:
                    break
                self._arrived.clear()
                try:
                    await asyncio.wait_for(self._arrived.wait(), timeout)
                except TimeoutError:
                    break
                continue
            entry = self._items.pop(0)
            if isinstance(entry, _Marker):
                return items, [entry], entry.stop
            items.append(entry)
            if deadline is None:
                deadline = entry.enqueued_at + options.flush_interval_s
        return items, [], False

    async def _deliver(self, kind: Kind, items: list[_Item]) -> None:
        attempt = 0
        while True:
            try:
                result = await self._client.run(self._call(kind, items), retries=0)
            except UsefirstError as error:
                step = self._next_step(kind, items, error, attempt, self._abandon.is_set())
                if step == _SPLIT:
                    half = len(items) // 2
                    await self._deliver(kind, items[:half])
                    await self._deliver(kind, items[half:])
                if step is None or step == _SPLIT:
                    return
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._abandon.wait(), step)
                attempt += 1
            except Exception as error:  # not an HTTP failure: our bug or a closed client
                self._tally.failed(kind, items, error)
                return
            else:
                self._tally.answered(kind, items, result)
                return

    def _fail_leftovers(self) -> None:
        leftovers = [e for e in self._items if isinstance(e, _Item)]
        for entry in self._items:
            if isinstance(entry, _Marker):
                entry.done.set()
        self._items.clear()
        self._queued_events -= len(leftovers)
        for kind, group in _by_kind(leftovers):
            self._tally.failed(kind, group, ReporterClosed("the reporter closed before sending"))


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


async def _wait_marker(marker: _Marker, timeout_s: float | None) -> bool:
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    while not marker.done.is_set():
        if deadline is not None and time.monotonic() >= deadline:
            return False
        await asyncio.sleep(0.01)
    return True


def _too_old(error: UsefirstError, options: _Options) -> UsefirstError:
    return UsefirstError(
        f"gave up after retrying for {options.retry_max_age_s} s (retry_max_age_s); "
        f"last error: {error.detail}",
        status=error.status,
        code="retry_max_age_exceeded",
    )


def replay_dead_letters(client: UsefirstClient, path: str | Path) -> dict[str, int]:
    """Resend the events of a dead-letter file (written by a reporter's
    ``dead_letter_path``) under their original ids, in batches; returns the summed
    counts (``accepted``, ``duplicates``, ``rejected``). Events already recorded answer
    ``duplicate``, so replaying a file twice is harmless."""
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    with Path(path).open(encoding="utf-8") as lines:
        for line in lines:
            if line.strip():
                letter = json.loads(line)
                groups.setdefault((letter["model_id"], letter["kind"]), []).append(letter["event"])
    totals = {"accepted": 0, "duplicates": 0, "rejected": 0}
    for (model_id, kind), events in groups.items():
        for start in range(0, len(events), BATCH_EVENTS_MAX):
            call = _USAGE_ROUTES[kind](model_id, events[start : start + BATCH_EVENTS_MAX])
            result = client.run(call)
            totals["accepted"] += result.accepted
            totals["duplicates"] += result.duplicates
            totals["rejected"] += result.rejected
    return totals


__all__ = [
    "AsyncUsageReporter",
    "Chunk",
    "ReporterStats",
    "UsageReporter",
    "encode_json",
    "replay_dead_letters",
    "retrieval_event",
    "training_event",
]
