"""Column helpers shared by the ledger tables: UTC timestamps, hashes, addresses, money.

Money is always an integer number of minor units (``*_minor``); rates are integer
basis points (``*_bps``). Nothing here ever holds a float.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import BigInteger, Column, DateTime, Numeric, String, func
from sqlalchemy.dialects.postgresql import JSONB, UUID

BPS_DENOMINATOR = 10_000

# Explicit limits (TigerBeetle style): every quantity has a ceiling we test against.
QUANTITY_MAX = 10**14  # units in one training event
EPOCHS_MAX = 10_000
CHUNKS_PER_RETRIEVAL_MAX = 100
AMOUNT_MINOR_MAX = 10**15  # one revenue event, in minor units


def utcnow() -> datetime:
    return datetime.now(UTC)


def new_uuid() -> uuid.UUID:
    return uuid.uuid4()


def uuid_pk() -> Any:
    return Column(UUID(as_uuid=True), primary_key=True, default=uuid.uuid4)


def uuid_col(*, nullable: bool = False, index: bool = False, **kw: Any) -> Any:
    return Column(UUID(as_uuid=True), nullable=nullable, index=index, **kw)


def tstz(*, nullable: bool = False, server_now: bool = False, **kw: Any) -> Any:
    if server_now:
        return Column(DateTime(timezone=True), nullable=nullable, server_default=func.now(), **kw)
    return Column(DateTime(timezone=True), nullable=nullable, **kw)


def address_col(*, nullable: bool = False, **kw: Any) -> Any:
    return Column(String(42), nullable=nullable, **kw)


def hex64_col(*, nullable: bool = False, **kw: Any) -> Any:
    return Column(String(64), nullable=nullable, **kw)


def minor_col(*, nullable: bool = False, **kw: Any) -> Any:
    return Column(BigInteger, nullable=nullable, **kw)


def big_quantity_col(**kw: Any) -> Any:
    # Sums of quantities can exceed 64 bits; NUMERIC(38,0) stays exact.
    return Column(Numeric(38, 0), nullable=False, **kw)


def jsonb_col(*, nullable: bool = True, **kw: Any) -> Any:
    return Column(JSONB, nullable=nullable, **kw)


def bigint_pk() -> Any:
    # Event and entry tables grow without bound: 64-bit identity keys.
    from sqlalchemy import Identity

    return Column(BigInteger, Identity(), primary_key=True)
