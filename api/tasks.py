"""Celery tasks. Each takes ids, reloads what it needs, and is safe to rerun."""

from __future__ import annotations

import os
import socket
import time
import uuid
from typing import Any

import psycopg
from sqlalchemy import text
from sqlalchemy.exc import OperationalError

from api import jobs
from api.celery_app import celery_app
from ledger.db import session_scope
from ledger.faults import fault_point

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
    jobs.mark(job_id, state="running", progress={"step": "closing"})
    try:
        with session_scope() as session:
            begin_close(session, pid)
        fault_point("close_after_begin")
        with session_scope() as session:
            outcome = finish_close(session, pid)
    except Exception as exc:
        _fail_unless_transient(job_id, exc)
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


def _fail_unless_transient(job_id: str | None, exc: BaseException) -> None:
    """Mark the job failed for an error a retry cannot fix (a domain error, no deployment,
    a bug); a transient one (``TRANSIENT_ERRORS``, retried by Celery) leaves it running."""
    if isinstance(exc, TRANSIENT_ERRORS):
        return
    code = getattr(exc, "code", None) or type(exc).__name__
    message = getattr(exc, "message", None) or str(exc)
    jobs.mark(job_id, state="failed", error=f"{code}: {message}")


def _jsonable(value: Any) -> Any:
    """A dataclass outcome as JSON-friendly data (UUIDs and big ints as strings)."""
    import dataclasses

    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        value = dataclasses.asdict(value)
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) > 2**53:
        return str(value)
    return value


def _chain_transient() -> tuple[type[BaseException], ...]:
    import requests

    from contracts.errors import ChainUnavailable, ConfirmationTimeout

    # A node that stops answering mid-call surfaces from web3 as the HTTP client's own
    # connection error or timeout once the provider's retries are spent.
    return (ChainUnavailable, ConfirmationTimeout, requests.ConnectionError, requests.Timeout)


@celery_app.task(name="usefirst.anchor_period", bind=True, acks_late=True, **RETRY)
def anchor_period(
    self: Any, period_id: str, job_id: str | None = None, reanchor: bool = False
) -> dict[str, Any]:
    """Prepare, publish and confirm the settlement of a closed period (``reanchor``: the
    next attempt of a settlement the guardian revoked; never implied by a retry).

    Idempotent and restartable: the publish tx hash is committed before waiting, and
    a rerun checks the chain instead of publishing twice.
    """
    from ledger.settlements import service as settlements

    jobs.mark(job_id, state="running", progress={"step": "anchoring"})

    def progress(step: str, message: str) -> None:
        jobs.mark(job_id, progress={"step": step, "message": message})

    try:
        outcome = settlements.anchor_period(
            uuid.UUID(period_id), progress=progress, reanchor=reanchor
        )
    except _chain_transient() as exc:
        jobs.mark(job_id, progress={"step": "waiting for the chain", "message": str(exc)})
        raise self.retry(exc=exc, countdown=min(60, 2 ** (self.request.retries + 1))) from exc
    except Exception as exc:
        _fail_unless_transient(job_id, exc)
        raise
    result = _jsonable(outcome)
    jobs.mark(
        job_id, state="succeeded", progress={"step": result.get("period_state")}, result=result
    )
    return dict(result)


@celery_app.task(name="usefirst.index_claims", acks_late=True, **RETRY)
def index_claims() -> dict[str, Any]:
    """Periodic: record new ``Claimed`` events, post payouts, mark paid periods."""
    from ledger.settlements import service as settlements

    return dict(_jsonable(settlements.index_claims()))


@celery_app.task(name="usefirst.reconcile", acks_late=True, **RETRY)
def reconcile() -> dict[str, Any]:
    """Periodic: compare ledger and chain; differences become findings, never errors."""
    from ledger.settlements import service as settlements

    report = settlements.reconcile()
    return dict(_jsonable(report))


class _ProgressMarks:
    """An export's ``progress(done, total)`` as marks on its job row, at most one per
    ``interval_s`` (the row's ``updated_at`` also tells the sweep the job is alive)."""

    def __init__(self, job_id: str, interval_s: float = 2.0) -> None:
        self.job_id = job_id
        self.interval_s = interval_s
        self._last = time.monotonic()

    def __call__(self, done: int, total: int) -> None:
        now = time.monotonic()
        if now - self._last >= self.interval_s:
            self._last = now
            jobs.mark(self.job_id, progress={"step": "writing", "done": done, "total": total})


@celery_app.task(name="usefirst.generate_export", acks_late=True, **RETRY)
def generate_export(job_id: str, **_params: Any) -> dict[str, Any]:
    """Write the file of export job ``job_id`` to ``<data_dir>/exports/<job_id>.<suffix>``.

    The job row is reloaded (``_params`` are the copy the sweep resends; the row wins).
    Idempotent: runs of one job hold an advisory lock, a finished job whose file exists is
    returned as it is, and the file is written under a temporary name and renamed when
    complete, so a rerun after a crash replaces leftovers and leaves exactly one file.
    """
    from ledger.reports import exports
    from ledger.settings import get_settings

    settings = get_settings()
    with session_scope() as session:
        kind = jobs.get_job(session, job_id).kind
    if kind != "export":  # not ours to mark failed
        raise ValueError(f"job {job_id} is a {kind} job, not an export")
    try:
        with session_scope() as session:
            exports.lock_export_job(session, job_id)
            job = jobs.get_job(session, job_id)
            if job.state == "succeeded" and job.result is not None:
                done = exports.stored_path(settings, job_id, job.result["format"])
                if done.is_file():
                    return dict(job.result)
            jobs.mark(job_id, state="running", progress={"step": "selecting"})
            selected = exports.select_export(session, exports.ExportRequest.from_params(job.params))
            target = exports.stored_path(settings, job_id, selected.format)
            exports.remove_partial_files(target)
            jobs.mark(job_id, progress={"step": "writing", "done": 0})
            written = exports.write_export_file(session, selected, target, _ProgressMarks(job_id))
    except Exception as exc:
        _fail_unless_transient(job_id, exc)
        raise
    result = {
        "download_url": f"/v1/exports/{job_id}/download",
        "filename": selected.filename,
        "media_type": selected.media_type,
        "kind": selected.kind,
        "format": selected.format,
        "statements": len(selected.statements),
        "rows": written.rows,
        "bytes": written.bytes_written,
        "sha256": written.sha256,
    }
    jobs.mark(job_id, state="succeeded", progress={"step": "done"}, result=result)
    return result


# Which task resumes a job of each kind (job params are the task's keyword arguments).
RESUMABLE = {
    "close_period": "usefirst.close_period",
    "anchor_period": "usefirst.anchor_period",
    "export": "usefirst.generate_export",
}
ATTEMPTS_MAX = 10


def start_period_job(
    session: Any, kind: str, period_id: uuid.UUID, params: dict[str, Any], account_id: Any
) -> Any:
    """Create the job row of a period workflow (``close_period``/``anchor_period``),
    commit it, and enqueue its task with the job id as the task id.

    The row is committed first: a worker may pick the task up at once and must find it.
    """
    job = jobs.create_job(session, kind, {"period_id": str(period_id), **params}, account_id)
    session.commit()
    celery_app.send_task(
        RESUMABLE[kind],
        kwargs={"period_id": str(period_id), "job_id": job.id, **params},
        task_id=job.id,
    )
    return job


def start_export_job(session: Any, params: dict[str, Any], account_id: Any) -> Any:
    """Create the job row of an export (``params``: a checked
    :meth:`~ledger.reports.exports.SelectedExport.params`), commit it, and enqueue
    ``usefirst.generate_export`` with the job id as the task id."""
    job = jobs.create_job(session, "export", params, account_id)
    session.commit()
    celery_app.send_task(RESUMABLE["export"], kwargs={"job_id": job.id}, task_id=job.id)
    return job


def resume_stale_jobs(stale_after_s: float | None = None) -> list[str]:
    """Re-enqueue jobs whose worker vanished (their row went quiet while queued/running).

    With kombu's SQL transport a message taken by a worker that is SIGKILLed is gone,
    so the job row is what remembers unfinished work. Tasks are idempotent and take
    locks, so resuming a job that was merely slow is harmless.
    """
    from datetime import timedelta

    resumed: list[str] = []
    with session_scope() as session:
        threshold = jobs.STALE_AFTER if stale_after_s is None else timedelta(seconds=stale_after_s)
        for job in jobs.stale_jobs(session, threshold):
            task_name = RESUMABLE.get(job.kind)
            if task_name is None:
                continue
            if job.attempts >= ATTEMPTS_MAX:
                job.state, job.error = "failed", f"gave up after {job.attempts} attempts"
                session.add(job)
                continue
            job.attempts += 1
            job.progress = {**job.progress, "resumed": job.attempts}
            job.updated_at = jobs.utcnow()
            session.add(job)
            resumed.append(job.id)
            params = {k: v for k, v in job.params.items() if k != "kind"}
            celery_app.send_task(task_name, kwargs={**params, "job_id": job.id})
    return resumed


@celery_app.task(name="usefirst.sweep_jobs")
def sweep_jobs() -> dict[str, Any]:
    """Periodic: resume orphaned jobs (see :func:`resume_stale_jobs`)."""
    return {"resumed": resume_stale_jobs()}
