"""Background jobs as users see them: one ``job`` row per workflow.

The row is the source of truth (not the broker): tasks mark progress on it, and a
periodic sweep re-enqueues jobs whose worker vanished (a SIGKILLed worker's
message is gone with kombu's SQL transport, which has no redelivery). Every task
is idempotent, so running a job twice finishes it without doubling anything.
"""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

from sqlalchemy import select, update
from sqlmodel import Session, col

from ledger import tables  # noqa: F401  (Job's foreign keys name other domains' tables)
from ledger.db import session_scope
from ledger.errors import NotFound
from ledger.ops_models import Job

__all__ = ["Job", "create_job", "get_job", "list_jobs", "mark", "stale_jobs", "utcnow"]
from ledger.types import utcnow

JOB_STATES = ("queued", "running", "succeeded", "failed")
# A running job whose row was not touched for this long is presumed orphaned.
STALE_AFTER = timedelta(minutes=5)


def create_job(
    session: Session, kind: str, params: dict[str, Any], account_id: uuid.UUID | None
) -> Job:
    job = Job(id=uuid.uuid4().hex, kind=kind, params=params, account_id=account_id)
    session.add(job)
    session.flush()
    return job


def get_job(session: Session, job_id: str) -> Job:
    job = session.get(Job, job_id)
    if job is None:
        raise NotFound(f"job {job_id} does not exist", field="job_id")
    return job


def list_jobs(
    session: Session, account_id: uuid.UUID | None, limit: int = 50, before: str | None = None
) -> list[Job]:
    query = select(Job).order_by(col(Job.created_at).desc(), col(Job.id).desc()).limit(limit)
    if account_id is not None:
        query = query.where(col(Job.account_id) == account_id)
    if before is not None:
        anchor = session.get(Job, before)
        if anchor is not None and anchor.created_at is not None:
            query = query.where(col(Job.created_at) < anchor.created_at)
    return list(session.execute(query).scalars())


def mark(job_id: str | None, **fields: Any) -> None:
    """Update a job row in its own transaction (progress must survive a task crash)."""
    if job_id is None:
        return
    fields["updated_at"] = utcnow()
    with session_scope() as session:
        session.execute(update(Job).where(col(Job.id) == job_id).values(**fields))


def stale_jobs(session: Session, stale_after: timedelta = STALE_AFTER) -> list[Job]:
    """Queued or running jobs whose row was not touched for ``stale_after``."""
    cutoff = utcnow() - stale_after
    return list(
        session.execute(
            select(Job).where(
                col(Job.state).in_(("queued", "running")), col(Job.updated_at) < cutoff
            )
        ).scalars()
    )
