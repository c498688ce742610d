"""``/v1/jobs``: background job state (close, anchor, exports)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel

from api import jobs
from api.deps import PrincipalDep, SessionDep
from api.pagination import Page, check_limit, decode_cursor, encode_cursor
from ledger.errors import NotFound

router = APIRouter(tags=["jobs"])


class JobOut(BaseModel):
    id: str
    kind: str
    state: str
    params: dict[str, Any]
    progress: dict[str, Any]
    result: dict[str, Any] | None
    error: str | None
    created_at: datetime | None
    updated_at: datetime | None


def _sees_all(role: str) -> bool:
    return role in ("finance", "admin")


@router.get("/jobs/{job_id}", response_model=JobOut, summary="State of a background job")
def get_job(job_id: str, session: SessionDep, principal: PrincipalDep) -> JobOut:
    job = session.get(jobs.Job, job_id)
    if job is None or (not _sees_all(principal.role) and job.account_id != principal.account_id):
        raise NotFound(f"job {job_id} does not exist", field="job_id")
    return JobOut.model_validate(job, from_attributes=True)


@router.get("/jobs", response_model=Page[JobOut], summary="Recent jobs (yours; all for finance)")
def list_jobs(
    session: SessionDep, principal: PrincipalDep, cursor: str | None = None, limit: int = 50
) -> Page[JobOut]:
    check_limit(limit)
    account = None if _sees_all(principal.role) else principal.account_id
    rows = jobs.list_jobs(session, account, limit=limit + 1, before=decode_cursor(cursor))
    items = [JobOut.model_validate(j, from_attributes=True) for j in rows[:limit]]
    next_cursor = encode_cursor(rows[limit - 1].id) if len(rows) > limit else None
    return Page[JobOut](items=items, next_cursor=next_cursor)
