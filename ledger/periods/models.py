"""Accounting periods per model: UTC calendar months, ``[starts_at, ends_at)``.

States: ``open → closing → closed → anchored → paid``, plus ``anchored → closed`` when the
guardian revoked the settlement on chain and the ledger reversed its funding
(``ledger.settlements.revocations``). Only an open period accepts usage and revenue.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Column,
    ForeignKey,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
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
    no_accrual_reason: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    revenue_minor: int | None = Field(default=None, sa_column=Column(BigInteger, nullable=True))
    pool_minor: int | None = Field(default=None, sa_column=Column(BigInteger, nullable=True))
    created_at: datetime | None = Field(default=None, sa_column=tstz(server_now=True))
    closing_started_at: datetime | None = Field(default=None, sa_column=tstz(nullable=True))
    closed_at: datetime | None = Field(default=None, sa_column=tstz(nullable=True))
    anchored_at: datetime | None = Field(default=None, sa_column=tstz(nullable=True))
    paid_at: datetime | None = Field(default=None, sa_column=tstz(nullable=True))


class PeriodStatement(SQLModel, table=True):
    """The canonical statement JSON of a closed period, byte for byte (its SHA-256 is
    ``period.statement_hash`` and, after anchoring, the on-chain statement hash)."""

    __tablename__ = "period_statement"

    period_id: uuid.UUID = Field(sa_column=Column(ForeignKey("period.id"), primary_key=True))
    canonical_json: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    sha256: str = Field(sa_column=hex64_col())
    created_at: datetime | None = Field(default=None, sa_column=tstz(server_now=True))


class StatementLine(SQLModel, table=True):
    """One payee's line of a closed period's statement (a copy of the canonical JSON,
    indexed for per-owner queries, exports and the Merkle tree)."""

    __tablename__ = "statement_line"
    __table_args__ = (CheckConstraint("payable_minor >= 0", name="ck_statement_line_payable"),)

    period_id: uuid.UUID = Field(sa_column=Column(ForeignKey("period.id"), primary_key=True))
    address: str = Field(sa_column=Column(String(42), primary_key=True))
    accrued_minor: int = Field(sa_column=Column(BigInteger, nullable=False))
    carry_in_minor: int = Field(sa_column=Column(BigInteger, nullable=False))
    adjustment_minor: int = Field(sa_column=Column(BigInteger, nullable=False))
    payable_minor: int = Field(sa_column=Column(BigInteger, nullable=False))
    carried_forward_minor: int = Field(sa_column=Column(BigInteger, nullable=False))
    breakdown: list[dict[str, Any]] = Field(sa_column=jsonb_col(nullable=False))


class PeriodAdjustment(SQLModel, table=True):
    """A correction for a closed period, booked into a later open period of the same
    model as a signed amount for one payee, with its reason. Closed statements are
    never edited."""

    __tablename__ = "period_adjustment"
    __table_args__ = (
        CheckConstraint("amount_minor <> 0", name="ck_adjustment_nonzero"),
        UniqueConstraint("period_id", "reference", name="uq_adjustment_reference"),
    )

    id: uuid.UUID = Field(default_factory=uuid.uuid4, sa_column=uuid_pk())
    period_id: uuid.UUID = Field(
        sa_column=Column(ForeignKey("period.id"), nullable=False, index=True)
    )
    corrects_period_id: uuid.UUID | None = Field(
        default=None, sa_column=Column(ForeignKey("period.id"), nullable=True)
    )
    address: str = Field(sa_column=Column(String(42), nullable=False))
    amount_minor: int = Field(sa_column=Column(BigInteger, nullable=False))
    reason: str = Field(sa_column=Column(Text, nullable=False))
    reference: str = Field(sa_column=Column(String(200), nullable=False))
    created_at: datetime | None = Field(default=None, sa_column=tstz(server_now=True))
