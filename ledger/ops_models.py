"""Operational tables that are not money: worker heartbeats and background jobs."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import Column, DateTime, ForeignKey, Integer, String, Text, func
from sqlmodel import Field, SQLModel

from ledger.types import bigint_pk, jsonb_col, tstz


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


class Job(SQLModel, table=True):
    """A background job as users see it (``GET /v1/jobs/{id}``, ``usefirst jobs``).

    The id is the Celery task id. Tasks update ``state``/``progress`` as they go; the
    row is the source of truth for who may see the job and what it produced.
    """

    __tablename__ = "job"

    id: str = Field(sa_column=Column(String(64), primary_key=True))
    kind: str = Field(sa_column=Column(String(48), nullable=False, index=True))
    account_id: uuid.UUID | None = Field(
        default=None, sa_column=Column(ForeignKey("account.id"), nullable=True, index=True)
    )
    params: dict[str, Any] = Field(default_factory=dict, sa_column=jsonb_col(nullable=False))
    state: str = Field(default="queued", sa_column=Column(String(16), nullable=False))
    progress: dict[str, Any] = Field(default_factory=dict, sa_column=jsonb_col(nullable=False))
    result: dict[str, Any] | None = Field(default=None, sa_column=jsonb_col())
    error: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    attempts: int = Field(default=0, sa_column=Column(Integer, nullable=False, server_default="0"))
    created_at: datetime | None = Field(default=None, sa_column=tstz(server_now=True))
    updated_at: datetime | None = Field(default=None, sa_column=tstz(server_now=True))
