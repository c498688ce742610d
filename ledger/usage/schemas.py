"""Usage events as clients send them: shape validation and per-event results.

The validators are hand-written rather than pydantic models because they run on
the hot path (tens of thousands of retrieval events per second): each turns one
raw mapping (parsed JSON, or Python values) into a normalised tuple plus a body
hash, or raises :class:`EventRejected` naming the field, a stable code and a fix.
They check shape only; what needs the database (datasets, confirmations,
agreements, periods, existing events) is checked set-based in ``ingest.py``.

Field paths are relative to the event (``chunks/2/rank``); an API layer prefixes
the event's position in the request (``events/7/chunks/2/rank``).
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from hashlib import sha256
from math import isfinite as _isfinite
from typing import Any, Final, Literal, NamedTuple

from ledger.types import CHUNKS_PER_RETRIEVAL_MAX, EPOCHS_MAX, QUANTITY_MAX

ID_LENGTH_MAX: Final = 200  # event, run, query and chunk ids (column width)
BATCH_EVENTS_MAX: Final = 50_000  # events per ingest call (one HTTP request)
TRAINING_UNITS: Final = ("tokens", "samples", "bytes")

Status = Literal["accepted", "duplicate", "rejected"]

_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)
_MISSING: Any = object()
_TRAINING_FIELDS: Final = frozenset(
    ("event_id", "run_id", "dataset_id", "unit", "quantity", "epochs", "occurred_at")
)
_RETRIEVAL_FIELDS: Final = frozenset(("event_id", "query_id", "occurred_at", "chunks"))
_CHUNK_FIELDS: Final = frozenset(("dataset_id", "chunk_id", "rank", "score"))


class EventRejected(Exception):
    """One event fails validation: ``field`` path, stable ``code``, human ``message``."""

    def __init__(self, field: str, code: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.code = code
        self.message = message


class DuplicateKeys(dict[str, Any]):
    """A JSON object in which ``duplicate_key`` appeared more than once (the last value
    won). Decoders (``ledger.usage.wire``) build it so validation rejects the event
    naming the key instead of silently using one of the values."""

    duplicate_key: str = ""


class EventResult(NamedTuple):
    """The outcome of one event of a batch, in input order (``index``). A tuple, not a
    dataclass: a 50,000-event batch builds 50,000 of them."""

    index: int  # type: ignore[assignment]  # shadows tuple.index, by design
    event_id: str | None
    status: Status
    code: str | None = None
    message: str | None = None
    field: str | None = None

    def as_dict(self) -> dict[str, Any]:
        if self.status != "rejected":
            return {"index": self.index, "event_id": self.event_id, "status": self.status}
        return {
            "index": self.index,
            "event_id": self.event_id,
            "status": self.status,
            "code": self.code,
            "message": self.message,
            "field": self.field,
        }


@dataclass(frozen=True)
class IngestResult:
    """Per-event results of one batch plus counts."""

    kind: Literal["training", "retrieval"]
    results: list[EventResult]

    @property
    def accepted(self) -> int:
        return sum(1 for r in self.results if r.status == "accepted")

    @property
    def duplicates(self) -> int:
        return sum(1 for r in self.results if r.status == "duplicate")

    @property
    def rejected(self) -> int:
        return sum(1 for r in self.results if r.status == "rejected")

    def as_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "accepted": self.accepted,
            "duplicates": self.duplicates,
            "rejected": self.rejected,
            "results": [r.as_dict() for r in self.results],
        }


class TrainingEvent(NamedTuple):
    """A training event that passed shape validation."""

    event_id: str
    run_id: str
    dataset_id: str  # canonical lower-case UUID text
    unit: str
    quantity: int
    epochs: int
    occurred_at: datetime
    body_hash: str


class RetrievalEvent(NamedTuple):
    """A retrieval event that passed shape validation, its chunks as columns in rank
    order: the chunk of rank r is ``dataset_ids[r-1]``, ``chunk_ids[r-1]``,
    ``scores[r-1]``. ``scores`` is None when no chunk has a score; ``positions`` maps
    rank r-1 to the chunk's index in the request, None when they were sent in rank
    order (for field paths like ``chunks/3/dataset_id``)."""

    event_id: str
    query_id: str
    occurred_at: datetime
    dataset_ids: list[str]  # canonical lower-case UUID text
    chunk_ids: list[str]
    scores: list[float | None] | None
    positions: list[int] | None

    def position(self, rank: int) -> int:
        """Index in the request's ``chunks`` list of the chunk of ``rank``."""
        return rank - 1 if self.positions is None else self.positions[rank - 1]


# The training body hash covers the canonical body: fields joined by US (0x1f). Ids
# are printable, so they never contain the separator; times are microseconds since
# the epoch, so one instant written with two offsets is one body.
_US = "\x1f"


def parse_training(raw: object) -> TrainingEvent:
    """Validate one raw training event; raises :class:`EventRejected`."""
    if type(raw) is not dict:
        _object(raw, "")
    assert isinstance(raw, Mapping)
    get = raw.get
    event_id = _id(get("event_id", _MISSING), "event_id")
    run_id = _id(get("run_id", _MISSING), "run_id")
    dataset_id = _dataset_id(get("dataset_id", _MISSING), "dataset_id")
    unit = get("unit", _MISSING)
    if unit not in TRAINING_UNITS:
        _require(unit, "unit")
        raise EventRejected(
            "unit", "invalid_unit", f"unit must be one of {', '.join(TRAINING_UNITS)}, got {unit!r}"
        )
    quantity = _positive_int(get("quantity", _MISSING), "quantity", QUANTITY_MAX)
    epochs = _positive_int(get("epochs", _MISSING), "epochs", EPOCHS_MAX)
    occurred_at = _time(get("occurred_at", _MISSING), "occurred_at")
    if len(raw) != len(_TRAINING_FIELDS):
        _unknown_field(raw, _TRAINING_FIELDS, "")
    instant_us = (occurred_at - _EPOCH) // _MICROSECOND
    body = _US.join(
        (event_id, run_id, dataset_id, unit, str(quantity), str(epochs), str(instant_us))
    )
    return TrainingEvent(
        event_id,
        run_id,
        dataset_id,
        unit,
        quantity,
        epochs,
        occurred_at,
        sha256(body.encode()).hexdigest(),
    )


def parse_retrieval(raw: object) -> RetrievalEvent:
    """Validate one raw retrieval event; raises :class:`EventRejected`.

    Ranks must be exactly 1..n for n chunks (no gaps, no duplicates, any order).
    """
    if type(raw) is not dict:
        _object(raw, "")
    assert isinstance(raw, Mapping)
    get = raw.get
    event_id = _id(get("event_id", _MISSING), "event_id")
    query_id = _id(get("query_id", _MISSING), "query_id")
    occurred_at = _time(get("occurred_at", _MISSING), "occurred_at")
    chunks_raw = get("chunks", _MISSING)
    if type(chunks_raw) is not list:
        _require(chunks_raw, "chunks")
        if not isinstance(chunks_raw, list | tuple):
            raise EventRejected("chunks", "invalid_type", "chunks must be a list of objects")
    count = len(chunks_raw)
    if not 0 < count <= CHUNKS_PER_RETRIEVAL_MAX:
        raise EventRejected(
            "chunks",
            "too_many_chunks" if count else "no_chunks",
            f"a retrieval reports 1 to {CHUNKS_PER_RETRIEVAL_MAX} chunks, got {count}",
        )
    if len(raw) != len(_RETRIEVAL_FIELDS):
        _unknown_field(raw, _RETRIEVAL_FIELDS, "")
    # The hottest loop of ingestion, for chunks sent in rank order with valid fields:
    # every check is inlined, and anything unusual (another order, a bad field) hands
    # the event to _retrieval_chunks, which checks in the same order and explains.
    dataset_ids: list[str] = []
    chunk_ids: list[str] = []
    scores: list[float | None] = []
    scored = False
    known = _KNOWN_DATASET_IDS
    for position, chunk in enumerate(chunks_raw):
        if type(chunk) is not dict:
            break
        cget = chunk.get
        rank = cget("rank")
        if rank != position + 1 or type(rank) is not int:
            break
        dataset_id = cget("dataset_id")
        canonical = known.get(dataset_id) if type(dataset_id) is str else None
        if canonical is None:
            break
        chunk_id = cget("chunk_id")
        if (
            type(chunk_id) is not str
            or not 0 < len(chunk_id) <= ID_LENGTH_MAX
            or not chunk_id.isprintable()
        ):
            break
        score = cget("score")
        if score is None:
            if len(chunk) != 3 + ("score" in chunk):
                break
        elif type(score) is not float or not _isfinite(score) or len(chunk) != 4:
            break
        else:
            scored = True
        dataset_ids.append(canonical)
        chunk_ids.append(chunk_id)
        scores.append(score)
    else:
        return RetrievalEvent(
            event_id,
            query_id,
            occurred_at,
            dataset_ids,
            chunk_ids,
            scores if scored else None,
            None,
        )
    return _retrieval_chunks(event_id, query_id, occurred_at, chunks_raw)


def _retrieval_chunks(
    event_id: str, query_id: str, occurred_at: datetime, chunks_raw: list[Any]
) -> RetrievalEvent:
    """The general chunk check: any rank order; raises the precise error."""
    count = len(chunks_raw)
    by_rank: list[Any] = [None] * count  # (position, dataset_id, chunk_id, score) or None
    for position, chunk in enumerate(chunks_raw):
        if type(chunk) is not dict:
            _object(chunk, f"chunks/{position}")
        rank = chunk.get("rank", _MISSING)
        if type(rank) is not int or not 0 < rank <= count or by_rank[rank - 1] is not None:
            _bad_rank(rank, f"chunks/{position}/rank", count)
        dataset_id = _dataset_id(chunk.get("dataset_id", _MISSING), f"chunks/{position}/dataset_id")
        chunk_id = _id(chunk.get("chunk_id", _MISSING), f"chunks/{position}/chunk_id")
        score = chunk.get("score")
        if score is not None:
            if type(score) is not float:
                score = _score(score, f"chunks/{position}/score")
            if not _isfinite(score):
                raise EventRejected(
                    f"chunks/{position}/score", "invalid_value", "score must be finite"
                )
        if len(chunk) != 3 + ("score" in chunk):
            _unknown_field(chunk, _CHUNK_FIELDS, f"chunks/{position}/")
        by_rank[rank - 1] = (position, dataset_id, chunk_id, score)
    # n distinct ranks within 1..n: every slot is filled.
    positions = [c[0] for c in by_rank]
    scores = [c[3] for c in by_rank]
    return RetrievalEvent(
        event_id,
        query_id,
        occurred_at,
        [c[1] for c in by_rank],
        [c[2] for c in by_rank],
        scores if any(s is not None for s in scores) else None,
        None if positions == list(range(count)) else positions,
    )


def differing_training_fields(a: TrainingEvent, b: TrainingEvent) -> list[str]:
    """Names of the body fields in which two training events with one id differ."""
    return [name for name in TrainingEvent._fields[1:7] if getattr(a, name) != getattr(b, name)]


def same_retrieval(a: RetrievalEvent, b: RetrievalEvent) -> bool:
    """Whether two retrieval events with one id have the same body."""
    return a[1:6] == b[1:6]


def differing_retrieval_fields(a: RetrievalEvent, b: RetrievalEvent) -> list[str]:
    """Names of the body fields in which two retrieval events with one id differ."""
    out = [name for name in ("query_id", "occurred_at") if getattr(a, name) != getattr(b, name)]
    if a[3:6] != b[3:6]:
        out.append("chunks")
    return out


def conflict_message(event_id: str, differing: list[str], where: str) -> str:
    what = ", ".join(differing) if differing else "its body"
    return (
        f"event {event_id!r} {where} with a different body (differs in: {what}); an event id "
        "names one event forever: send a replay unchanged, or new usage under a new event id"
    )


def _require(value: object, field: str) -> None:
    if value is _MISSING:
        raise EventRejected(field, "missing_field", f"{field.rsplit('/', 1)[-1]} is required")


def _id(value: object, field: str) -> str:
    if type(value) is not str or not 0 < len(value) <= ID_LENGTH_MAX or not value.isprintable():
        _require(value, field)
        raise EventRejected(
            field,
            "invalid_value",
            f"{field.rsplit('/', 1)[-1]} must be a string of 1 to {ID_LENGTH_MAX} printable "
            f"characters, got {_show(value)}",
        )
    return value


# Canonical ids of the dataset ids seen lately, for the hot loop (a batch names few
# datasets many times). Bounded: cleared when it grows past _KNOWN_DATASET_IDS_MAX.
_KNOWN_DATASET_IDS: dict[str, str] = {}
_KNOWN_DATASET_IDS_MAX: Final = 100_000


def canonical_dataset_id(value: str) -> str | None:
    """Lower-case UUID text, or None when ``value`` is not a UUID."""
    canonical = _KNOWN_DATASET_IDS.get(value)
    if canonical is None and len(value) == 36 and _UUID.fullmatch(value):
        if len(_KNOWN_DATASET_IDS) >= _KNOWN_DATASET_IDS_MAX:
            _KNOWN_DATASET_IDS.clear()
        canonical = _KNOWN_DATASET_IDS[value] = value.lower()
    return canonical


def _object(value: object, field: str) -> None:
    """Accept a mapping that is not a plain dict (Python callers); raise the precise
    error for anything else, or for an object that repeated a key."""
    if isinstance(value, DuplicateKeys):
        key = value.duplicate_key
        raise EventRejected(
            f"{field}/{key}" if field else key,
            "duplicate_key",
            f"key {key!r} appears more than once in this object; send each field once",
        )
    if not isinstance(value, Mapping):
        message = "a chunk must be an object" if field else "an event must be a JSON object"
        raise EventRejected(field, "invalid_type", message)


def _dataset_id(value: object, field: str) -> str:
    if type(value) is str:
        canonical = canonical_dataset_id(value)
        if canonical is not None:
            return canonical
    elif isinstance(value, uuid.UUID):
        return str(value)
    _require(value, field)
    raise EventRejected(
        field,
        "invalid_value",
        f"dataset_id must be a dataset UUID like 0b5e…-…, got {_show(value)}",
    )


def _bad_rank(rank: object, field: str, count: int) -> None:
    """Raise the precise error for a rank that is not a free slot of 1..count."""
    if type(rank) is not int:
        _require(rank, field)
        raise EventRejected(field, "invalid_type", f"rank must be an integer, got {_show(rank)}")
    if rank < 1:
        raise EventRejected(
            field, "rank_out_of_range", f"ranks start at 1 (the best match), got {rank}"
        )
    if rank > count:
        raise EventRejected(
            field,
            "rank_gap",
            f"{count} chunks must have ranks 1..{count} without gaps, got rank {rank}",
        )
    raise EventRejected(
        field,
        "rank_duplicate",
        f"rank {rank} appears twice; each chunk has its own rank 1..{count}",
    )


def _score(value: object, field: str) -> float:
    """A non-float score: an int becomes a float; anything else is refused."""
    if type(value) is int:
        try:
            return float(value)
        except OverflowError:
            pass
        raise EventRejected(field, "invalid_value", "score must be a finite number")
    raise EventRejected(field, "invalid_type", f"score must be a number, got {_show(value)}")


def _positive_int(value: object, field: str, maximum: int) -> int:
    if type(value) is not int:
        _require(value, field)
        raise EventRejected(
            field, "invalid_type", f"{field} must be an integer, got {_show(value)}"
        )
    if not 0 < value <= maximum:
        raise EventRejected(
            field,
            f"{field}_out_of_range",
            f"{field} must be a positive integer ≤ {maximum}, got {value}",
        )
    return value


def _time(value: object, field: str) -> datetime:
    """The timezone-aware time, between the years 2 and 9998 (so it converts to any
    offset and to PostgreSQL's range)."""
    if type(value) is str:
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            raise EventRejected(
                field,
                "invalid_datetime",
                f"{field} must be an ISO 8601 time with an offset like 2026-11-23T10:00:00Z, "
                f"got {_show(value)}",
            ) from None
    elif isinstance(value, datetime):
        parsed = value
    else:
        _require(value, field)
        raise EventRejected(
            field, "invalid_type", f"{field} must be an ISO 8601 string, got {_show(value)}"
        )
    if parsed.tzinfo is None or parsed.utcoffset() is None:
        raise EventRejected(
            field,
            "naive_datetime",
            f"{field} {parsed.isoformat()} has no time zone; add an offset "
            "(e.g. 2026-11-23T10:00:00Z)",
        )
    if not 1 < parsed.year < 9999:
        raise EventRejected(
            field, "invalid_datetime", f"{field} {parsed.isoformat()} is out of range"
        )
    return parsed


def _unknown_field(raw: Mapping[Any, Any], known: frozenset[str], prefix: str) -> None:
    unknown = sorted(str(k) for k in raw if k not in known)
    if unknown:
        raise EventRejected(
            f"{prefix}{unknown[0]}",
            "unknown_field",
            f"unknown field {unknown[0]!r}; allowed fields are {', '.join(sorted(known))}",
        )


def _show(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."
