"""Settlement revocations: attempts, the revocation record, the revocation cursor

Revision ID: 0009_settlement_revocations
Revises: 0008_retrieval_arrays
Create Date: 2026-11-24

A guardian may revoke a published settlement during its challenge window (issue #9). The
ledger follows: the funding is reversed by a new journal transaction, the settlement is
marked revoked and the period returns to ``closed``. The contract never accepts a revoked id
again, so a re-anchor publishes under the next attempt's id:

- ``settlement.attempt`` (0 for every existing row: attempt 0 keeps the id
  ``settlement_id_for(model, period)`` it always had);
- ``settlement_revocation``: one row per revoked attempt, unique by its on-chain id, with the
  revoking event and the funding/reversal journal transactions;
- ``chain_cursor.revocations_last_block``: how far ``SettlementRevoked`` events are applied.
  NULL on existing cursors, so the first indexer run after this migration reads revocations
  from the contract's deployment block (revocations that happened before the upgrade are
  applied once).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009_settlement_revocations"
down_revision: str | None = "0008_retrieval_arrays"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "settlement", sa.Column("attempt", sa.Integer(), server_default="0", nullable=False)
    )
    op.add_column(
        "chain_cursor", sa.Column("revocations_last_block", sa.BigInteger(), nullable=True)
    )
    op.create_table(
        "settlement_revocation",
        sa.Column("id", sa.BigInteger(), sa.Identity(), nullable=False),
        sa.Column("settlement_id", sa.UUID(), nullable=False),
        sa.Column("period_id", sa.UUID(), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("chain_id", sa.BigInteger(), nullable=False),
        sa.Column("contract_address", sa.String(length=42), nullable=False),
        sa.Column("settlement_key", sa.String(length=66), nullable=False),
        sa.Column("merkle_root", sa.String(length=66), nullable=False),
        sa.Column("total_units", sa.Numeric(precision=78, scale=0), nullable=False),
        sa.Column("publish_tx_hash", sa.String(length=66), nullable=True),
        sa.Column("state_before", sa.String(length=16), nullable=False),
        sa.Column("refunded_units", sa.Numeric(precision=78, scale=0), nullable=True),
        sa.Column("tx_hash", sa.String(length=66), nullable=True),
        sa.Column("log_index", sa.Integer(), nullable=True),
        sa.Column("block_number", sa.BigInteger(), nullable=True),
        sa.Column("funding_transaction_id", sa.UUID(), nullable=True),
        sa.Column("reversal_transaction_id", sa.UUID(), nullable=True),
        sa.Column(
            "recorded_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(["settlement_id"], ["settlement.id"]),
        sa.ForeignKeyConstraint(["period_id"], ["period.id"]),
        sa.ForeignKeyConstraint(["funding_transaction_id"], ["journal_transaction.id"]),
        sa.ForeignKeyConstraint(["reversal_transaction_id"], ["journal_transaction.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint(
            "chain_id", "contract_address", "settlement_key", name="uq_revocation_key"
        ),
        sa.UniqueConstraint("settlement_id", "attempt", name="uq_revocation_attempt"),
    )
    op.create_index(
        op.f("ix_settlement_revocation_settlement_id"),
        "settlement_revocation",
        ["settlement_id"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_index(
        op.f("ix_settlement_revocation_settlement_id"), table_name="settlement_revocation"
    )
    op.drop_table("settlement_revocation")
    op.drop_column("chain_cursor", "revocations_last_block")
    op.drop_column("settlement", "attempt")
