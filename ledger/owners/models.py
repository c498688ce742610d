"""Accounts (who logs in) and owners (who holds rights and gets paid)."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import CheckConstraint, Column, String
from sqlmodel import Field, SQLModel

from ledger.types import address_col, tstz, uuid_col, uuid_pk

ACCOUNT_ROLES = ("owner", "model_team", "finance", "admin")


class Account(SQLModel, table=True):
    """A principal: a data owner organisation, a model team, finance or an admin."""

    __tablename__ = "account"
    __table_args__ = (
        CheckConstraint(
            "role IN ('owner', 'model_team', 'finance', 'admin')", name="ck_account_role"
        ),
    )

    id: uuid.UUID = Field(default_factory=uuid.uuid4, sa_column=uuid_pk())
    role: str = Field(sa_column=Column(String(16), nullable=False))
    display_name: str = Field(sa_column=Column(String(200), nullable=False))
    contact: str | None = Field(default=None, sa_column=Column(String(320), nullable=True))
    created_at: datetime | None = Field(default=None, sa_column=tstz(server_now=True))
    disabled_at: datetime | None = Field(default=None, sa_column=tstz(nullable=True))


class Owner(SQLModel, table=True):
    """A party that can hold rights: an EVM address used for signatures and payouts.

    ``account_id`` links the owner to the account that manages it; a co-owner named
    on a dataset may not have an account yet.
    """

    __tablename__ = "owner"

    id: uuid.UUID = Field(default_factory=uuid.uuid4, sa_column=uuid_pk())
    address: str = Field(sa_column=address_col(unique=True))  # EIP-55 checksummed
    display_name: str = Field(sa_column=Column(String(200), nullable=False))
    contact: str | None = Field(default=None, sa_column=Column(String(320), nullable=True))
    account_id: uuid.UUID | None = Field(
        default=None, sa_column=uuid_col(nullable=True, index=True)
    )
    created_at: datetime | None = Field(default=None, sa_column=tstz(server_now=True))
