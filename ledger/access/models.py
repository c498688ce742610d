"""API keys and idempotency records.

An API key is shown once at creation: ``uf_<prefix>_<secret>``. We store the
prefix (it identifies the key in logs) and the SHA-256 of the whole key; the
secret has 192 bits of entropy, so a fast hash is enough.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import Column, ForeignKey, Integer, String, UniqueConstraint
from sqlmodel import Field, SQLModel

from ledger.types import hex64_col, jsonb_col, tstz, uuid_pk


class ApiKey(SQLModel, table=True):
    __tablename__ = "api_key"

    id: uuid.UUID = Field(default_factory=uuid.uuid4, sa_column=uuid_pk())
    account_id: uuid.UUID = Field(
        sa_column=Column(ForeignKey("account.id"), nullable=False, index=True)
    )
    prefix: str = Field(sa_column=Column(String(16), nullable=False, unique=True))
    key_sha256: str = Field(sa_column=hex64_col(unique=True))
    label: str = Field(default="", sa_column=Column(String(200), nullable=False, server_default=""))
    created_at: datetime | None = Field(default=None, sa_column=tstz(server_now=True))
    revoked_at: datetime | None = Field(default=None, sa_column=tstz(nullable=True))
    last_used_at: datetime | None = Field(default=None, sa_column=tstz(nullable=True))


class IdempotencyRecord(SQLModel, table=True):
    """The stored response of a POST made with an ``Idempotency-Key``: a replay with
    the same body returns it; the same key with another body is a 409."""

    __tablename__ = "idempotency_record"
    __table_args__ = (
        UniqueConstraint("account_id", "method", "path", "key", name="uq_idempotency_scope"),
    )

    id: uuid.UUID = Field(default_factory=uuid.uuid4, sa_column=uuid_pk())
    account_id: uuid.UUID = Field(sa_column=Column(ForeignKey("account.id"), nullable=False))
    method: str = Field(sa_column=Column(String(8), nullable=False))
    path: str = Field(sa_column=Column(String(500), nullable=False))
    key: str = Field(sa_column=Column(String(200), nullable=False))
    request_sha256: str = Field(sa_column=hex64_col())
    status_code: int = Field(sa_column=Column(Integer, nullable=False))
    response_body: dict[str, Any] | list[Any] | None = Field(default=None, sa_column=jsonb_col())
    created_at: datetime | None = Field(default=None, sa_column=tstz(server_now=True))
