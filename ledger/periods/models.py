"""Accounting periods per model: UTC calendar months, ``[starts_at, ends_at)``.

States: ``open → closing → closed → anchored → paid``. Only an open period
accepts usage and revenue.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import CheckConstraint, Column, ForeignKey, String, Text, UniqueConstraint
from sqlmodel import Field, SQLModel

from ledger.types import hex64_col, jsonb_col, tstz, uuid_pk

PERIOD_STATES = ("open", "closing", "closed", "anchored", "paid")


class Period(SQLModel, table=True):
    __tablename__ = "period"
    __table_args__ = (
        UniqueConstraint("model_id", "starts_at", name="uq_period_model_start"),
        CheckConstraint(
            "state IN ('open', 'closing', 'closed', 'anchored', 'paid')", name="ck_period_state"
        ),
        CheckConstraint("ends_at > starts_at", name="ck_period_bounds"),
    )

    id: uuid.UUID = Field(default_factory=uuid.uuid4, sa_column=uuid_pk())
    model_id: uuid.UUID = Field(
        sa_column=Column(ForeignKey("model.id"), nullable=False, index=True)
    )
    key: str = Field(sa_column=Column(String(16), nullable=False))  # e.g. "2026-11"
    starts_at: datetime = Field(sa_column=tstz())
    ends_at: datetime = Field(sa_column=tstz())
    state: str = Field(default="open", sa_column=Column(String(16), nullable=False))
    agreement_id: uuid.UUID | None = Field(
        default=None, sa_column=Column(ForeignKey("agreement.id"), nullable=True)
    )
    statement_hash: str | None = Field(default=None, sa_column=hex64_col(nullable=True))
    statement: dict[str, Any] | None = Field(default=None, sa_column=jsonb_col())
    no_accrual_reason: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    created_at: datetime | None = Field(default=None, sa_column=tstz(server_now=True))
    closing_started_at: datetime | None = Field(default=None, sa_column=tstz(nullable=True))
    closed_at: datetime | None = Field(default=None, sa_column=tstz(nullable=True))
    anchored_at: datetime | None = Field(default=None, sa_column=tstz(nullable=True))
    paid_at: datetime | None = Field(default=None, sa_column=tstz(nullable=True))
