"""The double-entry journal: accounts, transactions and their entries.

Entries are append-only (a trigger rejects UPDATE, DELETE and TRUNCATE) and each
transaction balances per currency (a deferred constraint trigger checks the sum of
signed amounts is zero at commit). ``amount_minor`` is signed: debits positive,
credits negative. Balances are derived from entries, never stored.
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
    String,
    Text,
    UniqueConstraint,
)
from sqlmodel import Field, SQLModel

from ledger.types import bigint_pk, hex64_col, jsonb_col, tstz, uuid_pk

ACCOUNT_KINDS = ("asset", "liability", "income", "expense", "equity")


class JournalAccount(SQLModel, table=True):
    __tablename__ = "journal_account"
    __table_args__ = (
        UniqueConstraint("code", "currency", name="uq_journal_account_code_currency"),
        CheckConstraint(
            "kind IN ('asset', 'liability', 'income', 'expense', 'equity')",
            name="ck_journal_account_kind",
        ),
    )

    id: uuid.UUID = Field(default_factory=uuid.uuid4, sa_column=uuid_pk())
    code: str = Field(
        sa_column=Column(String(200), nullable=False)
    )  # e.g. payee:0xabc…:royalty_payable
    kind: str = Field(sa_column=Column(String(16), nullable=False))
    currency: str = Field(sa_column=Column(String(3), nullable=False))
    created_at: datetime | None = Field(default=None, sa_column=tstz(server_now=True))


class JournalTransaction(SQLModel, table=True):
    __tablename__ = "journal_transaction"

    id: uuid.UUID = Field(default_factory=uuid.uuid4, sa_column=uuid_pk())
    idempotency_key: str = Field(sa_column=Column(String(200), nullable=False, unique=True))
    request_hash: str = Field(sa_column=hex64_col())
    kind: str = Field(
        sa_column=Column(String(32), nullable=False)
    )  # revenue_recognition, royalty_accrual, …
    description: str = Field(sa_column=Column(Text, nullable=False))
    reference: dict[str, Any] | None = Field(default=None, sa_column=jsonb_col())
    posted_at: datetime | None = Field(default=None, sa_column=tstz(server_now=True))


class JournalEntry(SQLModel, table=True):
    __tablename__ = "journal_entry"
    __table_args__ = (CheckConstraint("amount_minor <> 0", name="ck_journal_entry_nonzero"),)

    id: int | None = Field(default=None, sa_column=bigint_pk())
    transaction_id: uuid.UUID = Field(
        sa_column=Column(ForeignKey("journal_transaction.id"), nullable=False, index=True)
    )
    account_id: uuid.UUID = Field(
        sa_column=Column(ForeignKey("journal_account.id"), nullable=False, index=True)
    )
    amount_minor: int = Field(sa_column=Column(BigInteger, nullable=False))  # + debit, − credit
    currency: str = Field(sa_column=Column(String(3), nullable=False))
