"""Celery tasks. Each takes ids, reloads what it needs, and is safe to rerun."""

from __future__ import annotations

import os
import socket
import uuid
from typing import Any

import psycopg
from sqlalchemy import text
from sqlalchemy.exc import OperationalError

from api import jobs
from api.celery_app import celery_app
from ledger.db import session_scope
from ledger.errors import DomainError

# Errors worth retrying: the database or the chain was briefly unreachable.
TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (OperationalError, psycopg.OperationalError)
RETRY = {
    "autoretry_for": TRANSIENT_ERRORS,
    "retry_backoff": 2,
    "retry_backoff_max": 60,
    "retry_jitter": True,
    "max_retries": 10,
}


@celery_app.task(name="usefirst.ping", acks_late=True)
def ping(nonce: str) -> dict[str, Any]:
    """Record a heartbeat row for ``nonce`` (idempotent) and say who ran it."""
    pid = os.getpid()
    host = socket.gethostname()
    with session_scope() as session:
        session.execute(
            text(
                "INSERT INTO worker_heartbeat (nonce, worker_pid, hostname) "
                "VALUES (:nonce, :pid, :host) ON CONFLICT (nonce) DO NOTHING"
            ),
            {"nonce": nonce, "pid": pid, "host": host},
        )
    return {"nonce": nonce, "worker_pid": pid, "hostname": host}


@celery_app.task(name="usefirst.close_period", acks_late=True, **RETRY)
def close_period(period_id: str, job_id: str | None = None, anchor: bool = True) -> dict[str, Any]:
    """Close a period (open → closing → closed); then, if asked, anchor it.

    Idempotent: a rerun after a crash finishes the close or returns the stored
    statement; the journal posting has a fixed idempotency key.
    """
    from ledger.periods.close import begin_close, finish_close

    pid = uuid.UUID(period_id)
    jobs.mark(job_id, state="running", progress={"step": "closing"}, attempts=1)
    try:
        with session_scope() as session:
            begin_close(session, pid)
        with session_scope() as session:
            outcome = finish_close(session, pid)
    except DomainError as exc:
        jobs.mark(job_id, state="failed", error=f"{exc.code}: {exc.message}")
        raise
    result = {
        "period_id": period_id,
        "state": outcome.state,
        "statement_hash": outcome.statement_hash,
        "lines": outcome.line_count,
        "pool_minor": outcome.pool_minor,
        "payable_total_minor": outcome.payable_total_minor,
        "no_accrual_reason": outcome.no_accrual_reason,
    }
    if anchor:
        jobs.mark(job_id, progress={"step": "anchoring", "close": result})
        anchor_period.delay(period_id, job_id=job_id)
    else:
        jobs.mark(job_id, state="succeeded", progress={"step": "closed"}, result=result)
    return result


@celery_app.task(name="usefirst.anchor_period", acks_late=True, **RETRY)
def anchor_period(period_id: str, job_id: str | None = None) -> dict[str, Any]:
    """Prepare, publish and confirm the settlement of a closed period (idempotent)."""
    from ledger.settlements import service as settlements

    jobs.mark(job_id, state="running", progress={"step": "anchoring"})
    try:
        outcome = settlements.anchor_period(uuid.UUID(period_id))
    except DomainError as exc:
        jobs.mark(job_id, state="failed", error=f"{exc.code}: {exc.message}")
        raise
    result = (
        outcome if isinstance(outcome, dict) else {"period_id": period_id, "outcome": str(outcome)}
    )
    jobs.mark(job_id, state="succeeded", progress={"step": "anchored"}, result=result)
    return result
