"""What the ledger knows about the chain: settlements it published, claims it
indexed, revocations it followed, the indexer's cursor, and reconciliation findings.

The publish transaction hash is recorded *before* waiting for its receipt, so a
process restarted after a crash checks the chain instead of publishing twice.

A period has one ``settlement`` row, its **current attempt**. A guardian may revoke a
publication during its challenge window; the contract never accepts that id again, so a
re-anchor publishes the same statement under the next attempt's id
(``ids.settlement_key_for``) in the same row, and every revoked attempt stays on record as a
``settlement_revocation`` row (migration 0009).
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
    # 0 for the first publication of the period's statement, n after n revocations.
    attempt: int = Field(default=0, sa_column=Column(Integer, nullable=False, server_default="0"))
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


class SettlementRevocation(SQLModel, table=True):
    """One revoked attempt of a settlement, recorded once (unique by its on-chain id).

    Written by ``revocations.apply_revocation`` in the transaction that reverses the funding
    (when it had been posted), marks the settlement revoked and returns the period to
    ``closed``. The revoking transaction is known when the ``SettlementRevoked`` event was
    read (the indexer, or anchoring when the node serves the logs); a revocation observed from
    the contract's state alone gets it from the indexer later.
    """

    __tablename__ = "settlement_revocation"
    __table_args__ = (
        UniqueConstraint(
            "chain_id", "contract_address", "settlement_key", name="uq_revocation_key"
        ),
        UniqueConstraint("settlement_id", "attempt", name="uq_revocation_attempt"),
    )

    id: int | None = Field(default=None, sa_column=bigint_pk())
    settlement_id: uuid.UUID = Field(
        sa_column=Column(ForeignKey("settlement.id"), nullable=False, index=True)
    )
    period_id: uuid.UUID = Field(sa_column=Column(ForeignKey("period.id"), nullable=False))
    attempt: int = Field(sa_column=Column(Integer, nullable=False))
    chain_id: int = Field(sa_column=Column(BigInteger, nullable=False))
    contract_address: str = Field(sa_column=Column(String(42), nullable=False))
    settlement_key: str = Field(sa_column=Column(String(66), nullable=False))  # bytes32 hex
    merkle_root: str = Field(sa_column=Column(String(66), nullable=False))
    total_units: int = Field(sa_column=Column(Numeric(78, 0), nullable=False))
    publish_tx_hash: str | None = Field(default=None, sa_column=Column(String(66), nullable=True))
    # The settlement's state when the revocation was applied (sent or confirmed, usually).
    state_before: str = Field(sa_column=Column(String(16), nullable=False))
    # From the SettlementRevoked event, when it was read.
    refunded_units: int | None = Field(
        default=None, sa_column=Column(Numeric(78, 0), nullable=True)
    )
    tx_hash: str | None = Field(default=None, sa_column=Column(String(66), nullable=True))
    log_index: int | None = Field(default=None, sa_column=Column(Integer, nullable=True))
    block_number: int | None = Field(default=None, sa_column=Column(BigInteger, nullable=True))
    funding_transaction_id: uuid.UUID | None = Field(
        default=None, sa_column=Column(ForeignKey("journal_transaction.id"), nullable=True)
    )
    reversal_transaction_id: uuid.UUID | None = Field(
        default=None, sa_column=Column(ForeignKey("journal_transaction.id"), nullable=True)
    )
    recorded_at: datetime | None = Field(default=None, sa_column=tstz(server_now=True))


class ChainCursor(SQLModel, table=True):
    """The last block the indexer processed, per chain and contract."""

    __tablename__ = "chain_cursor"

    chain_id: int = Field(sa_column=Column(BigInteger, primary_key=True))
    contract_address: str = Field(sa_column=Column(String(42), primary_key=True))
    # ``Claimed`` events up to here are indexed.
    last_block: int = Field(sa_column=Column(BigInteger, nullable=False))
    # ``SettlementRevoked`` events up to here are applied; NULL on cursors written before
    # migration 0009, whose next run reads revocations from the contract's deployment block.
    revocations_last_block: int | None = Field(
        default=None, sa_column=Column(BigInteger, nullable=True)
    )
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
