"""What the ledger knows about the chain: settlements it published, claims it
indexed, the indexer's cursor, and reconciliation findings.

The publish transaction hash is recorded *before* waiting for its receipt, so a
process restarted after a crash checks the chain instead of publishing twice.
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
    Integer,
    Numeric,
    String,
    Text,
    UniqueConstraint,
)
from sqlmodel import Field, SQLModel

from ledger.types import bigint_pk, jsonb_col, tstz, uuid_pk

SETTLEMENT_STATES = ("prepared", "sent", "confirmed", "revoked")


class Settlement(SQLModel, table=True):
    __tablename__ = "settlement"
    __table_args__ = (
        CheckConstraint(
            "state IN ('prepared', 'sent', 'confirmed', 'revoked')", name="ck_settlement_state"
        ),
    )

    id: uuid.UUID = Field(default_factory=uuid.uuid4, sa_column=uuid_pk())
    period_id: uuid.UUID = Field(
        sa_column=Column(ForeignKey("period.id"), nullable=False, unique=True)
    )
    chain_id: int = Field(sa_column=Column(BigInteger, nullable=False))
    contract_address: str = Field(sa_column=Column(String(42), nullable=False))
    token_address: str = Field(sa_column=Column(String(42), nullable=False))
    settlement_key: str = Field(
        sa_column=Column(String(66), nullable=False, unique=True)
    )  # bytes32 hex
    merkle_root: str = Field(sa_column=Column(String(66), nullable=False))
    statement_hash: str = Field(sa_column=Column(String(66), nullable=False))
    total_units: int = Field(sa_column=Column(Numeric(78, 0), nullable=False))  # token base units
    units_per_minor: int = Field(sa_column=Column(Numeric(78, 0), nullable=False))
    line_count: int = Field(sa_column=Column(Integer, nullable=False))
    tree_dump: dict[str, Any] = Field(sa_column=jsonb_col(nullable=False))
    state: str = Field(default="prepared", sa_column=Column(String(16), nullable=False))
    approve_tx_hash: str | None = Field(default=None, sa_column=Column(String(66), nullable=True))
    publish_tx_hash: str | None = Field(default=None, sa_column=Column(String(66), nullable=True))
    publish_block: int | None = Field(default=None, sa_column=Column(BigInteger, nullable=True))
    claimed_units: int = Field(
        default=0, sa_column=Column(Numeric(78, 0), nullable=False, server_default="0")
    )
    created_at: datetime | None = Field(default=None, sa_column=tstz(server_now=True))
    confirmed_at: datetime | None = Field(default=None, sa_column=tstz(nullable=True))


class SettlementClaim(SQLModel, table=True):
    """A ``Claimed`` event read from the chain (one per line at most)."""

    __tablename__ = "settlement_claim"
    __table_args__ = (
        UniqueConstraint("settlement_id", "account", name="uq_claim_line"),
        UniqueConstraint("tx_hash", "log_index", name="uq_claim_log"),
    )

    id: int | None = Field(default=None, sa_column=bigint_pk())
    settlement_id: uuid.UUID = Field(
        sa_column=Column(ForeignKey("settlement.id"), nullable=False, index=True)
    )
    account: str = Field(sa_column=Column(String(42), nullable=False))
    amount_units: int = Field(sa_column=Column(Numeric(78, 0), nullable=False))
    tx_hash: str = Field(sa_column=Column(String(66), nullable=False))
    log_index: int = Field(sa_column=Column(Integer, nullable=False))
    block_number: int = Field(sa_column=Column(BigInteger, nullable=False))
    journal_transaction_id: uuid.UUID | None = Field(
        default=None, sa_column=Column(ForeignKey("journal_transaction.id"), nullable=True)
    )
    indexed_at: datetime | None = Field(default=None, sa_column=tstz(server_now=True))


class ChainCursor(SQLModel, table=True):
    """The last block the indexer processed, per chain and contract."""

    __tablename__ = "chain_cursor"

    chain_id: int = Field(sa_column=Column(BigInteger, primary_key=True))
    contract_address: str = Field(sa_column=Column(String(42), primary_key=True))
    last_block: int = Field(sa_column=Column(BigInteger, nullable=False))
    updated_at: datetime | None = Field(default=None, sa_column=tstz(server_now=True))


class ReconciliationFinding(SQLModel, table=True):
    """A difference between ledger and chain, reported (never a crash)."""

    __tablename__ = "reconciliation_finding"

    id: int | None = Field(default=None, sa_column=bigint_pk())
    run_id: uuid.UUID = Field(
        sa_column=Column(ForeignKey("reconciliation_run.id"), nullable=False, index=True)
    )
    settlement_id: uuid.UUID | None = Field(
        default=None, sa_column=Column(ForeignKey("settlement.id"), nullable=True)
    )
    kind: str = Field(
        sa_column=Column(String(32), nullable=False)
    )  # root_mismatch, total_mismatch, …
    detail: str = Field(sa_column=Column(Text, nullable=False))
    ledger_value: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    chain_value: str | None = Field(default=None, sa_column=Column(Text, nullable=True))


class ReconciliationRun(SQLModel, table=True):
    __tablename__ = "reconciliation_run"

    id: uuid.UUID = Field(default_factory=uuid.uuid4, sa_column=uuid_pk())
    chain_id: int = Field(sa_column=Column(BigInteger, nullable=False))
    started_at: datetime | None = Field(default=None, sa_column=tstz(server_now=True))
    finished_at: datetime | None = Field(default=None, sa_column=tstz(nullable=True))
    settlements_checked: int = Field(
        default=0, sa_column=Column(Integer, nullable=False, server_default="0")
    )
    findings_count: int = Field(
        default=0, sa_column=Column(Integer, nullable=False, server_default="0")
    )
