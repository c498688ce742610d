"""Read-side queries over usage: rollups and the quarantine."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from sqlalchemy import select, text
from sqlmodel import Session

from ledger.usage.models import QuarantinedEvent


@dataclass(frozen=True, slots=True)
class RollupRow:
    """One rollup row; ``quantity`` is Σ quantity×epochs (train) or hits (rag)."""

    period_key: str
    dataset_id: uuid.UUID
    kind: str
    unit: str
    list_length: int
    rank: int
    quantity: int
    event_count: int


def rollups(
    session: Session, model_id: uuid.UUID, period_id: uuid.UUID | None = None
) -> list[RollupRow]:
    """The rollups of a model (optionally one period), in key order."""
    session.flush()
    rows = session.execute(
        text(
            """
            SELECT p.key, r.dataset_id, r.kind, r.unit, r.list_length, r.rank, r.quantity,
                   r.event_count
              FROM usage_rollup r JOIN period p ON p.id = r.period_id
             WHERE r.model_id = :model AND (CAST(:period AS uuid) IS NULL OR r.period_id = :period)
             ORDER BY p.starts_at, r.dataset_id, r.kind, r.unit, r.list_length, r.rank
            """
        ),
        {"model": model_id, "period": period_id},
    ).all()
    return [
        RollupRow(
            row.key,
            row.dataset_id,
            row.kind,
            row.unit,
            row.list_length,
            row.rank,
            int(row.quantity),
            int(row.event_count),
        )
        for row in rows
    ]


def quarantined(
    session: Session, model_id: uuid.UUID, *, limit: int = 100, review_state: str = "open"
) -> list[QuarantinedEvent]:
    """Rejected events of a model awaiting review, oldest first."""
    session.flush()
    return list(
        session.execute(
            select(QuarantinedEvent)
            .where(
                QuarantinedEvent.model_id == model_id,  # type: ignore[arg-type]
                QuarantinedEvent.review_state == review_state,  # type: ignore[arg-type]
            )
            .order_by(QuarantinedEvent.id)  # type: ignore[arg-type]
            .limit(limit)
        ).scalars()
    )
