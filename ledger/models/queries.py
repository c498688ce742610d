"""Reads for models and agreements, keyset-paginated (``after`` = last sort key seen)."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import select, tuple_
from sqlmodel import Session, col

from ledger.models.models import Agreement, Model


def models_page(
    session: Session,
    *,
    account_id: uuid.UUID | None,
    after: tuple[datetime, uuid.UUID] | None,
    limit: int,
) -> list[Model]:
    """Models oldest first; of one model-team account, or all (``account_id`` None)."""
    query = select(Model).order_by(col(Model.created_at), col(Model.id))
    if account_id is not None:
        query = query.where(col(Model.account_id) == account_id)
    if after is not None:
        query = query.where(tuple_(col(Model.created_at), col(Model.id)) > tuple_(*after))
    return list(session.execute(query.limit(limit)).scalars())


def agreements_page(
    session: Session, model_id: uuid.UUID, *, after: int | None, limit: int
) -> list[Agreement]:
    """The model's agreement versions, oldest first."""
    query = (
        select(Agreement)
        .where(col(Agreement.model_id) == model_id)
        .order_by(col(Agreement.version))
    )
    if after is not None:
        query = query.where(col(Agreement.version) > after)
    return list(session.execute(query.limit(limit)).scalars())
