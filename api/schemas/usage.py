"""Request and response models of the usage, revenue and quarantine routes.

Usage events are validated by the hand-written validators of ``ledger.usage.schemas``
(they run on the hot path and explain every failure per event); the event models here
document the body in the OpenAPI schema only.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StrictInt

from ledger.types import AMOUNT_MINOR_MAX, CHUNKS_PER_RETRIEVAL_MAX, EPOCHS_MAX, QUANTITY_MAX
from ledger.usage.schemas import BATCH_EVENTS_MAX, ID_LENGTH_MAX, TRAINING_UNITS

_ID = Field(min_length=1, max_length=ID_LENGTH_MAX, description="Printable characters.")


class ChunkIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    dataset_id: uuid.UUID
    chunk_id: str = _ID
    rank: StrictInt = Field(ge=1, description="1 = best match; the ranks of an event are 1..n.")
    score: float | None = Field(default=None, description="Optional, finite.")


class RetrievalEventIn(BaseModel):
    """One retrieval: the chunks a query returned, with their ranks."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "example": {
                "event_id": "rq-2026-03-10-000001",
                "query_id": "q-8c1f",
                "occurred_at": "2026-03-10T12:00:00Z",
                "chunks": [
                    {
                        "dataset_id": "0b5e2a4c-1d2f-4a6b-9c8d-7e6f5a4b3c2d",
                        "chunk_id": "doc-17#3",
                        "rank": 1,
                        "score": 0.91,
                    },
                    {
                        "dataset_id": "5f0c9a1b-2e3d-4c5b-8a7f-6e5d4c3b2a19",
                        "chunk_id": "faq-2",
                        "rank": 2,
                    },
                ],
            }
        },
    )
    event_id: str = Field(
        min_length=1,
        max_length=ID_LENGTH_MAX,
        description="Your id of this event; a replay with the same body is a duplicate.",
    )
    query_id: str = _ID
    occurred_at: AwareDatetime = Field(description="ISO 8601 with an offset.")
    chunks: list[ChunkIn] = Field(min_length=1, max_length=CHUNKS_PER_RETRIEVAL_MAX)


class TrainingEventIn(BaseModel):
    """One training step (or run) over a dataset: ``quantity`` units per epoch."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "example": {
                "event_id": "train-run-42-shard-7",
                "run_id": "run-42",
                "dataset_id": "0b5e2a4c-1d2f-4a6b-9c8d-7e6f5a4b3c2d",
                "unit": "tokens",
                "quantity": 1_250_000,
                "epochs": 2,
                "occurred_at": "2026-03-10T12:00:00Z",
            }
        },
    )
    event_id: str = _ID
    run_id: str = _ID
    dataset_id: uuid.UUID
    unit: Literal[TRAINING_UNITS] = Field(  # type: ignore[valid-type]
        description="The training unit of the model's agreement."
    )
    quantity: StrictInt = Field(ge=1, le=QUANTITY_MAX)
    epochs: StrictInt = Field(ge=1, le=EPOCHS_MAX)
    occurred_at: AwareDatetime


class EventResultOut(BaseModel):
    index: int = Field(description="Position of the event in the request (0-based).")
    event_id: str | None
    status: Literal["accepted", "duplicate", "rejected"]
    code: str | None = Field(default=None, description="Rejected only: a stable reason code.")
    message: str | None = Field(default=None, description="Rejected only: what to fix.")
    field: str | None = Field(
        default=None,
        description="Rejected only: the failing field, e.g. `events/7/chunks/2/rank`.",
    )


class IngestOut(BaseModel):
    """Per-event results, in request order, and counts. The request is one unit: its
    accepted events, rollups and quarantined rejects are all stored, or none."""

    model_id: uuid.UUID
    kind: Literal["training", "retrieval"]
    received: int
    accepted: int
    duplicates: int
    rejected: int
    results: list[EventResultOut]


def ingest_out(model_id: uuid.UUID, kind: str, results: list[Any]) -> dict[str, Any]:
    """The IngestOut body as plain JSON values, built without pydantic (a 50,000-event
    response is serialised on the hot path). Rejected fields get the
    ``events/<index>/`` prefix."""
    out: list[dict[str, Any]] = []
    append = out.append
    counts = {"accepted": 0, "duplicate": 0, "rejected": 0}
    for index, event_id, status, code, message, field in results:
        counts[status] += 1
        if status != "rejected":
            append({"index": index, "event_id": event_id, "status": status})
        else:
            path = f"events/{index}/{field}" if field else f"events/{index}"
            append(
                {
                    "index": index,
                    "event_id": event_id,
                    "status": status,
                    "code": code,
                    "message": message,
                    "field": path,
                }
            )
    return {
        "model_id": str(model_id),
        "kind": kind,
        "received": len(out),
        "accepted": counts["accepted"],
        "duplicates": counts["duplicate"],
        "rejected": counts["rejected"],
        "results": out,
    }


class QuarantinedOut(BaseModel):
    id: int
    model_id: uuid.UUID | None
    kind: str
    event_id: str | None
    payload: Any = Field(description="The event as received.")
    reason_code: str
    field: str | None
    message: str
    review_state: str
    received_at: datetime | None
    review_note: str | None = None
    reviewed_at: datetime | None = None
    reviewed_by: uuid.UUID | None = None


class DismissIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    note: str = Field(min_length=1, max_length=2_000, description="Why it is dismissed.")


class TrainingUsageOut(BaseModel):
    unit: str
    quantity: int = Field(description="Σ quantity × epochs.")
    events: int


class DatasetUsageOut(BaseModel):
    dataset_id: uuid.UUID
    training: list[TrainingUsageOut]
    retrieval_hits: int = Field(description="Chunks of this dataset returned, any rank.")


class ReasonOut(BaseModel):
    reason_code: str
    events: int


class UsageSummaryOut(BaseModel):
    model_id: uuid.UUID
    period: str = Field(description="YYYY-MM (UTC month).")
    period_state: str | None = Field(description="null when nothing was reported yet.")
    accepted_events: dict[str, int] = Field(description="Accepted events per kind.")
    datasets: list[DatasetUsageOut]
    rejected_events: int = Field(description="Rejected events dated in the month.")
    rejected_open: int = Field(description="Of those, still waiting for review.")
    top_rejection_reasons: list[ReasonOut]


class RevenueIn(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "example": {
                "model_id": "6a0d7b5e-3c1f-4e2a-9b8c-1d2e3f4a5b6c",
                "amount_minor": 1_250_000,
                "currency": "EUR",
                "external_ref": "inv-2026-03-0042",
                "occurred_at": "2026-03-31T18:00:00Z",
            }
        },
    )
    model_id: uuid.UUID
    amount_minor: StrictInt = Field(
        description=f"Positive, in minor units of the currency (≤ {AMOUNT_MINOR_MAX})."
    )
    currency: str = Field(description="ISO 4217, the currency of the model's agreement.")
    external_ref: str = Field(description="Your invoice or payment id; unique per model.")
    occurred_at: datetime = Field(description="ISO 8601 with an offset, in an open period.")


class RevenueOut(BaseModel):
    id: uuid.UUID
    model_id: uuid.UUID
    period_id: uuid.UUID
    amount_minor: int
    currency: str
    external_ref: str
    occurred_at: datetime
    journal_transaction_id: uuid.UUID | None
    created_at: datetime | None


BATCH_DOC = (
    f"Up to {BATCH_EVENTS_MAX} events per request (more: 413). Send a JSON array "
    "(`Content-Type: application/json`) or NDJSON, one event per line "
    "(`Content-Type: application/x-ndjson`). Every event gets a result in request order: "
    "`accepted`, `duplicate` (its event id was already used with the same body: nothing "
    "changes) or `rejected` with a stable `code`, a `message` and the failing `field` "
    "(`events/<index>/…`); rejected events are kept in the quarantine for review. The "
    "request is all or nothing: its accepted events, rollups and quarantined rejects are "
    "stored together or not at all. Malformed JSON in an array body is a 400; a malformed "
    "NDJSON line rejects only that event (code `malformed_json`, naming the line). A key "
    "repeated inside an event rejects the event (`duplicate_key`). With an "
    "`Idempotency-Key`, a retry returns the original response."
)
