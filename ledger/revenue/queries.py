"""Read-side queries over revenue events."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import tuple_
from sqlmodel import Session, col, select

from ledger.revenue.models import RevenueEvent


def revenue_by_ref(session: Session, model_id: uuid.UUID, external_ref: str) -> RevenueEvent | None:
    """The revenue event recorded under ``external_ref`` for the model, if any."""
    session.flush()
    return session.exec(
        select(RevenueEvent).where(
            col(RevenueEvent.model_id) == model_id, col(RevenueEvent.external_ref) == external_ref
        )
    ).one_or_none()


def revenue_page(
    session: Session,
    model_id: uuid.UUID,
    *,
    after: tuple[datetime, uuid.UUID] | None = None,
    limit: int = 50,
) -> list[RevenueEvent]:
    """A model's revenue events ordered by ``(occurred_at, id)``, after ``after``."""
    session.flush()
    query = (
        select(RevenueEvent)
        .where(col(RevenueEvent.model_id) == model_id)
        .order_by(col(RevenueEvent.occurred_at), col(RevenueEvent.id))
        .limit(limit)
    )
    if after is not None:
        query = query.where(
            tuple_(col(RevenueEvent.occurred_at), col(RevenueEvent.id)) > tuple_(*after)
        )
    return list(session.exec(query))
