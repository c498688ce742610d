"""Revenue a model earned in a period, in minor units of the agreement's currency."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import CheckConstraint, Column, ForeignKey, String, UniqueConstraint
from sqlmodel import Field, SQLModel

from ledger.types import hex64_col, minor_col, tstz, uuid_pk


class RevenueEvent(SQLModel, table=True):
    __tablename__ = "revenue_event"
    __table_args__ = (
        UniqueConstraint("model_id", "external_ref", name="uq_revenue_model_ref"),
        CheckConstraint("amount_minor > 0", name="ck_revenue_positive"),
    )

    id: uuid.UUID = Field(default_factory=uuid.uuid4, sa_column=uuid_pk())
    model_id: uuid.UUID = Field(
        sa_column=Column(ForeignKey("model.id"), nullable=False, index=True)
    )
    period_id: uuid.UUID = Field(
        sa_column=Column(ForeignKey("period.id"), nullable=False, index=True)
    )
    amount_minor: int = Field(sa_column=minor_col())
    currency: str = Field(sa_column=Column(String(3), nullable=False))
    external_ref: str = Field(sa_column=Column(String(200), nullable=False))
    occurred_at: datetime = Field(sa_column=tstz())
    request_hash: str = Field(sa_column=hex64_col())  # replay with another body → conflict
    journal_transaction_id: uuid.UUID | None = Field(
        default=None, sa_column=Column(ForeignKey("journal_transaction.id"), nullable=True)
    )
    created_at: datetime | None = Field(default=None, sa_column=tstz(server_now=True))
