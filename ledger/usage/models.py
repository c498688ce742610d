"""Declared usage: training events, retrieval events with their chunks, rollups and
the quarantine of rejected events.

Raw events are kept for audit (a retrieval's chunks as arrays on its row);
attribution reads only ``usage_rollup``, which the
ingestion path updates in the same transaction as it inserts accepted events.
Rollup keys are policy-independent: training rows sum ``quantity × epochs`` per
unit; retrieval rows count hits per ``(list_length, rank)``, so any retrieval
credit policy can be applied exactly afterwards.
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
    Index,
    Integer,
    SmallInteger,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.dialects.postgresql import ARRAY, DOUBLE_PRECISION
from sqlalchemy.dialects.postgresql import UUID as PG_UUID
from sqlmodel import Field, SQLModel

from ledger.types import big_quantity_col, bigint_pk, hex64_col, jsonb_col, tstz, uuid_col


class TrainingEvent(SQLModel, table=True):
    __tablename__ = "usage_training_event"
    __table_args__ = (
        UniqueConstraint("model_id", "event_id", name="uq_training_model_event"),
        CheckConstraint("quantity > 0", name="ck_training_quantity"),
        CheckConstraint("epochs > 0", name="ck_training_epochs"),
    )

    id: int | None = Field(default=None, sa_column=bigint_pk())
    model_id: uuid.UUID = Field(sa_column=Column(ForeignKey("model.id"), nullable=False))
    event_id: str = Field(sa_column=Column(String(200), nullable=False))
    run_id: str = Field(sa_column=Column(String(200), nullable=False))
    dataset_id: uuid.UUID = Field(
        sa_column=Column(ForeignKey("dataset.id"), nullable=False, index=True)
    )
    unit: str = Field(sa_column=Column(String(8), nullable=False))
    quantity: int = Field(sa_column=Column(BigInteger, nullable=False))
    epochs: int = Field(sa_column=Column(Integer, nullable=False))
    occurred_at: datetime = Field(sa_column=tstz())
    period_id: uuid.UUID = Field(
        sa_column=Column(ForeignKey("period.id"), nullable=False, index=True)
    )
    body_hash: str = Field(sa_column=hex64_col())
    ingested_at: datetime | None = Field(default=None, sa_column=tstz(server_now=True))


class RetrievalEvent(SQLModel, table=True):
    """One retrieval with its chunks as arrays in rank order: chunk ``r`` (1-based) is
    ``dataset_ids[r]``, ``chunk_ids[r]``, ``chunk_scores[r]`` (``chunk_scores`` is NULL
    when no chunk had a score). No foreign keys and no surrogate id (migration 0008):
    only the ingestion path writes these rows, after checking the model and locking the
    period, and usage rows are never updated or deleted."""

    __tablename__ = "usage_retrieval_event"
    __table_args__ = (
        CheckConstraint("chunk_count > 0", name="ck_retrieval_chunks"),
        CheckConstraint(
            "cardinality(dataset_ids) = chunk_count AND cardinality(chunk_ids) = chunk_count "
            "AND (chunk_scores IS NULL OR cardinality(chunk_scores) = chunk_count)",
            name="ck_retrieval_arrays",
        ),
    )

    model_id: uuid.UUID = Field(sa_column=uuid_col(primary_key=True))
    event_id: str = Field(sa_column=Column(String(200), primary_key=True))
    query_id: str = Field(sa_column=Column(String(200), nullable=False))
    occurred_at: datetime = Field(sa_column=tstz())
    period_id: uuid.UUID = Field(sa_column=uuid_col())
    chunk_count: int = Field(sa_column=Column(SmallInteger, nullable=False))
    dataset_ids: list[uuid.UUID] = Field(
        sa_column=Column(ARRAY(PG_UUID(as_uuid=True)), nullable=False)
    )
    chunk_ids: list[str] = Field(sa_column=Column(ARRAY(Text), nullable=False))
    chunk_scores: list[float | None] | None = Field(
        default=None, sa_column=Column(ARRAY(DOUBLE_PRECISION), nullable=True)
    )
    ingested_at: datetime | None = Field(default=None, sa_column=tstz(server_now=True))


class UsageRollup(SQLModel, table=True):
    """Per model, period, dataset and use: ``quantity`` is Σ quantity×epochs for
    ``kind='train'`` (per unit, ``list_length = rank = 0``), or the number of hits at
    ``rank`` in queries returning ``list_length`` chunks for ``kind='rag'``."""

    __tablename__ = "usage_rollup"
    __table_args__ = (CheckConstraint("kind IN ('train', 'rag')", name="ck_rollup_kind"),)

    model_id: uuid.UUID = Field(sa_column=Column(ForeignKey("model.id"), primary_key=True))
    period_id: uuid.UUID = Field(sa_column=Column(ForeignKey("period.id"), primary_key=True))
    dataset_id: uuid.UUID = Field(sa_column=Column(ForeignKey("dataset.id"), primary_key=True))
    kind: str = Field(sa_column=Column(String(8), primary_key=True))
    unit: str = Field(sa_column=Column(String(8), primary_key=True))  # tokens|samples|bytes|hits
    list_length: int = Field(sa_column=Column(SmallInteger, primary_key=True))
    rank: int = Field(sa_column=Column(SmallInteger, primary_key=True))
    quantity: int = Field(sa_column=big_quantity_col())
    event_count: int = Field(sa_column=Column(BigInteger, nullable=False))


class QuarantinedEvent(SQLModel, table=True):
    """A rejected usage event, kept with its reason for review (never dropped)."""

    __tablename__ = "usage_quarantine"
    __table_args__ = (
        Index("ix_usage_quarantine_model_event", "model_id", "event_id"),
        CheckConstraint("kind IN ('training', 'retrieval')", name="ck_quarantine_kind"),
        CheckConstraint(
            "review_state IN ('open', 'dismissed', 'resubmitted')", name="ck_quarantine_review"
        ),
    )

    id: int | None = Field(default=None, sa_column=bigint_pk())
    model_id: uuid.UUID | None = Field(default=None, sa_column=uuid_col(nullable=True, index=True))
    kind: str = Field(sa_column=Column(String(16), nullable=False))
    event_id: str | None = Field(default=None, sa_column=Column(String(200), nullable=True))
    payload: dict[str, Any] = Field(sa_column=jsonb_col(nullable=False))
    reason_code: str = Field(sa_column=Column(String(48), nullable=False, index=True))
    field: str | None = Field(default=None, sa_column=Column(String(200), nullable=True))
    message: str = Field(sa_column=Column(Text, nullable=False))
    review_state: str = Field(default="open", sa_column=Column(String(16), nullable=False))
    received_at: datetime | None = Field(default=None, sa_column=tstz(server_now=True))
    review_note: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    reviewed_at: datetime | None = Field(default=None, sa_column=tstz(nullable=True))
    reviewed_by: uuid.UUID | None = Field(
        default=None, sa_column=Column(ForeignKey("account.id"), nullable=True)
    )
