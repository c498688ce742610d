"""Stored rights signatures (confirmations and revocations) and signer nonces."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import (
    CheckConstraint,
    Column,
    ForeignKey,
    Integer,
    LargeBinary,
    Numeric,
    String,
    UniqueConstraint,
)
from sqlmodel import Field, SQLModel

from ledger.types import address_col, bigint_pk, tstz


class RightsSignature(SQLModel, table=True):
    """An accepted EIP-712 signature. ``(signer, nonce)`` is unique: a nonce is used once."""

    __tablename__ = "rights_signature"
    __table_args__ = (
        UniqueConstraint("signer", "nonce", name="uq_rights_signature_signer_nonce"),
        CheckConstraint("kind IN ('confirmation', 'revocation')", name="ck_rights_signature_kind"),
    )

    id: int | None = Field(default=None, sa_column=bigint_pk())
    dataset_id: uuid.UUID = Field(
        sa_column=Column(ForeignKey("dataset.id"), nullable=False, index=True)
    )
    terms_version: int = Field(sa_column=Column(Integer, nullable=False))
    kind: str = Field(sa_column=Column(String(16), nullable=False))
    signer: str = Field(sa_column=address_col())
    nonce: int = Field(sa_column=Column(Numeric(78, 0), nullable=False))
    signature: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    digest: str = Field(sa_column=Column(String(66), nullable=False))  # 0x EIP-712 digest
    domain_chain_id: int = Field(sa_column=Column(Numeric(78, 0), nullable=False))
    domain_verifying_contract: str = Field(sa_column=address_col())
    accepted_at: datetime | None = Field(default=None, sa_column=tstz(server_now=True))


class SignerNonce(SQLModel, table=True):
    """The next nonce a signer must use (mirrors OpenZeppelin ``Nonces`` on chain)."""

    __tablename__ = "signer_nonce"

    signer: str = Field(sa_column=address_col(primary_key=True))
    next_nonce: int = Field(default=0, sa_column=Column(Numeric(78, 0), nullable=False))
