"""Models (or RAG applications) and their versioned royalty agreements."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import CheckConstraint, Column, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlmodel import Field, SQLModel

from ledger.types import minor_col, tstz, uuid_pk


class Model(SQLModel, table=True):
    __tablename__ = "model"

    id: uuid.UUID = Field(default_factory=uuid.uuid4, sa_column=uuid_pk())
    account_id: uuid.UUID = Field(
        sa_column=Column(ForeignKey("account.id"), nullable=False, index=True)
    )
    name: str = Field(sa_column=Column(String(200), nullable=False))
    description: str = Field(default="", sa_column=Column(Text, nullable=False, server_default=""))
    kind: str = Field(
        default="model", sa_column=Column(String(16), nullable=False)
    )  # model | rag_app
    created_at: datetime | None = Field(default=None, sa_column=tstz(server_now=True))


class Agreement(SQLModel, table=True):
    """One version of a model's royalty agreement; a period uses the version in force
    at its start (the highest version whose ``effective_from`` <= period start)."""

    __tablename__ = "agreement"
    __table_args__ = (
        UniqueConstraint("model_id", "version", name="uq_agreement_model_version"),
        CheckConstraint("royalty_rate_bps BETWEEN 0 AND 10000", name="ck_agreement_rate"),
        CheckConstraint("training_share_bps BETWEEN 0 AND 10000", name="ck_agreement_split"),
        CheckConstraint("min_payout_minor >= 0", name="ck_agreement_min_payout"),
        CheckConstraint(
            "training_unit IN ('tokens', 'samples', 'bytes')", name="ck_agreement_unit"
        ),
    )

    id: uuid.UUID = Field(default_factory=uuid.uuid4, sa_column=uuid_pk())
    model_id: uuid.UUID = Field(
        sa_column=Column(ForeignKey("model.id"), nullable=False, index=True)
    )
    version: int = Field(sa_column=Column(Integer, nullable=False))
    royalty_rate_bps: int = Field(sa_column=Column(Integer, nullable=False))
    # Share of the royalty pool for training use; retrieval gets 10,000 minus this.
    training_share_bps: int = Field(sa_column=Column(Integer, nullable=False))
    min_payout_minor: int = Field(sa_column=minor_col())
    currency: str = Field(sa_column=Column(String(3), nullable=False))
    currency_exponent: int = Field(sa_column=Column(Integer, nullable=False))  # ISO 4217 minor unit
    training_unit: str = Field(default="tokens", sa_column=Column(String(8), nullable=False))
    retrieval_policy: str = Field(
        default="uniform/v1", sa_column=Column(String(32), nullable=False)
    )
    effective_from: datetime = Field(sa_column=tstz())
    created_at: datetime | None = Field(default=None, sa_column=tstz(server_now=True))
