"""Operational tables that are not money: worker heartbeats."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Column, DateTime, func
from sqlmodel import Field, SQLModel

from ledger.types import bigint_pk


class WorkerHeartbeat(SQLModel, table=True):
    __tablename__ = "worker_heartbeat"

    id: int | None = Field(default=None, sa_column=bigint_pk())
    nonce: str = Field(max_length=64, unique=True)
    worker_pid: int
    hostname: str = Field(max_length=255)
    created_at: datetime | None = Field(
        default=None,
        sa_column=Column(DateTime(timezone=True), server_default=func.now(), nullable=False),
    )
