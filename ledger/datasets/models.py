"""Datasets, their file manifests, co-owners per terms version, and disputes.

A dataset's *terms* are everything the co-owners sign: content root, licence and
terms hash, allowed uses, validity window and the co-owner shares. Every change
of terms bumps ``terms_version``; signatures bind to one version, so a change
invalidates earlier signatures.
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
    SmallInteger,
    String,
    Text,
)
from sqlmodel import Field, SQLModel

from ledger.types import address_col, bigint_pk, hex64_col, jsonb_col, tstz, uuid_pk

DATASET_STATES = ("pending_signatures", "confirmed", "disputed", "revoked", "rejected")


class Dataset(SQLModel, table=True):
    __tablename__ = "dataset"
    __table_args__ = (
        CheckConstraint(
            "status IN ('pending_signatures', 'confirmed', 'disputed', 'revoked', 'rejected')",
            name="ck_dataset_status",
        ),
        CheckConstraint("allowed_uses BETWEEN 1 AND 3", name="ck_dataset_allowed_uses"),
        CheckConstraint(
            "valid_until IS NULL OR valid_until > valid_from", name="ck_dataset_validity"
        ),
    )

    id: uuid.UUID = Field(default_factory=uuid.uuid4, sa_column=uuid_pk())
    name: str = Field(sa_column=Column(String(200), nullable=False))
    description: str = Field(default="", sa_column=Column(Text, nullable=False, server_default=""))
    registrant_owner_id: uuid.UUID = Field(
        sa_column=Column(ForeignKey("owner.id"), nullable=False, index=True)
    )
    licence: str = Field(sa_column=Column(String(200), nullable=False))  # SPDX id or LicenseRef-…
    terms_document_sha256: str | None = Field(default=None, sa_column=hex64_col(nullable=True))
    terms_hash: str = Field(sa_column=hex64_col())  # the EIP-712 termsHash (sha256, hex)
    allowed_uses: int = Field(sa_column=Column(SmallInteger, nullable=False))  # 1 train, 2 rag
    valid_from: datetime = Field(sa_column=tstz())
    valid_until: datetime | None = Field(default=None, sa_column=tstz(nullable=True))
    content_root: str = Field(sa_column=hex64_col(index=True))
    file_count: int = Field(sa_column=Column(Integer, nullable=False))
    total_bytes: int = Field(sa_column=Column(BigInteger, nullable=False))
    terms_version: int = Field(default=1, sa_column=Column(Integer, nullable=False))
    status: str = Field(
        default="pending_signatures", sa_column=Column(String(24), nullable=False, index=True)
    )
    confirmed_at: datetime | None = Field(default=None, sa_column=tstz(nullable=True))
    revoked_at: datetime | None = Field(default=None, sa_column=tstz(nullable=True))
    croissant: dict[str, Any] | None = Field(default=None, sa_column=jsonb_col())
    created_at: datetime | None = Field(default=None, sa_column=tstz(server_now=True))
    updated_at: datetime | None = Field(default=None, sa_column=tstz(server_now=True))


class DatasetFile(SQLModel, table=True):
    """One line of the content manifest: path, size, SHA-256."""

    __tablename__ = "dataset_file"

    dataset_id: uuid.UUID = Field(
        sa_column=Column(ForeignKey("dataset.id", ondelete="CASCADE"), primary_key=True)
    )
    path: str = Field(sa_column=Column(Text, primary_key=True))
    size_bytes: int = Field(sa_column=Column(BigInteger, nullable=False))
    sha256: str = Field(sa_column=hex64_col())


class DatasetCoOwner(SQLModel, table=True):
    """A co-owner's share for one terms version. Shares of a version sum to 10,000 bps
    (checked by a deferred constraint trigger at commit, and by the service)."""

    __tablename__ = "dataset_co_owner"
    __table_args__ = (
        CheckConstraint("share_bps > 0 AND share_bps <= 10000", name="ck_co_owner_share"),
    )

    dataset_id: uuid.UUID = Field(
        sa_column=Column(ForeignKey("dataset.id", ondelete="CASCADE"), primary_key=True)
    )
    terms_version: int = Field(sa_column=Column(Integer, primary_key=True))
    address: str = Field(sa_column=address_col(primary_key=True))
    owner_id: uuid.UUID = Field(sa_column=Column(ForeignKey("owner.id"), nullable=False))
    share_bps: int = Field(sa_column=Column(Integer, nullable=False))


class DatasetConfirmation(SQLModel, table=True):
    """An interval during which the dataset counted: every co-owner had signed the
    terms of ``terms_version`` and nobody had revoked. Usage is valid only at times
    inside such an interval (``confirmed_until`` NULL = still open)."""

    __tablename__ = "dataset_confirmation"

    id: int | None = Field(default=None, sa_column=bigint_pk())
    dataset_id: uuid.UUID = Field(
        sa_column=Column(ForeignKey("dataset.id"), nullable=False, index=True)
    )
    terms_version: int = Field(sa_column=Column(Integer, nullable=False))
    allowed_uses: int = Field(sa_column=Column(SmallInteger, nullable=False))
    confirmed_from: datetime = Field(sa_column=tstz())
    confirmed_until: datetime | None = Field(default=None, sa_column=tstz(nullable=True))
    ended_reason: str | None = Field(default=None, sa_column=Column(String(32), nullable=True))


class Dispute(SQLModel, table=True):
    """A content root registered by a different owner set; finance resolves it."""

    __tablename__ = "dispute"
    __table_args__ = (CheckConstraint("status IN ('open', 'resolved')", name="ck_dispute_status"),)

    id: uuid.UUID = Field(default_factory=uuid.uuid4, sa_column=uuid_pk())
    dataset_id: uuid.UUID = Field(
        sa_column=Column(ForeignKey("dataset.id"), nullable=False, index=True)
    )
    conflicting_dataset_id: uuid.UUID = Field(
        sa_column=Column(ForeignKey("dataset.id"), nullable=False)
    )
    content_root: str = Field(sa_column=hex64_col())
    status: str = Field(default="open", sa_column=Column(String(16), nullable=False))
    resolution: str | None = Field(default=None, sa_column=Column(String(32), nullable=True))
    resolution_note: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    opened_at: datetime | None = Field(default=None, sa_column=tstz(server_now=True))
    resolved_at: datetime | None = Field(default=None, sa_column=tstz(nullable=True))
    resolved_by: str | None = Field(default=None, sa_column=address_col(nullable=True))


class DatasetTerms(SQLModel, table=True):
    """The terms of one version, kept for good: what each confirmation signed.

    ``dataset`` holds the current terms; this table keeps every version (including the
    current one) so an old signature can always be re-verified and a signature over
    superseded terms is recognised as stale rather than merely invalid. Co-owners and
    shares of a version live in ``dataset_co_owner``.
    """

    __tablename__ = "dataset_terms"

    dataset_id: uuid.UUID = Field(
        sa_column=Column(ForeignKey("dataset.id", ondelete="CASCADE"), primary_key=True)
    )
    terms_version: int = Field(sa_column=Column(Integer, primary_key=True))
    content_root: str = Field(sa_column=hex64_col())
    licence: str = Field(sa_column=Column(String(200), nullable=False))
    terms_document_sha256: str | None = Field(default=None, sa_column=hex64_col(nullable=True))
    terms_hash: str = Field(sa_column=hex64_col())
    allowed_uses: int = Field(sa_column=Column(SmallInteger, nullable=False))
    valid_from: datetime = Field(sa_column=tstz())
    valid_until: datetime | None = Field(default=None, sa_column=tstz(nullable=True))
    file_count: int = Field(sa_column=Column(Integer, nullable=False))
    total_bytes: int = Field(sa_column=Column(BigInteger, nullable=False))
    created_at: datetime | None = Field(default=None, sa_column=tstz(server_now=True))
