"""A worker SIGKILLed in the middle of a close: the job is resumed and finishes once."""

from __future__ import annotations

import os
import time
import uuid
from datetime import UTC, datetime

from sqlalchemy import Engine, text
from sqlmodel import Session

from api import jobs
from api.embedded import worker
from ledger.revenue.service import record_revenue
from ledger.settings import Settings
from ledger.usage.service import ingest_retrievals
from tests.ledger.factories import make_dataset, make_model

OCT = datetime(2026, 10, 20, 8, 0, tzinfo=UTC)


def _wait(predicate, timeout_s: float = 90) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.3)
    raise AssertionError("condition not met in time")


def test_close_job_survives_a_worker_killed_mid_close(
    db_engine: Engine, celery_worker: Settings
) -> None:
    from api.tasks import close_period, resume_stale_jobs

    with Session(db_engine, expire_on_commit=False) as session:
        model = make_model(session)
        dataset = make_dataset(session)
        session.commit()
        event = {
            "event_id": uuid.uuid4().hex,
            "query_id": "q",
            "occurred_at": OCT.isoformat(),
            "chunks": [{"dataset_id": str(dataset.id), "chunk_id": "c", "rank": 1}],
        }
        ingest_retrievals(session, model.id, [event])
        record_revenue(session, model.id, 7_777, "EUR", "inv", OCT)
        period_id = session.execute(
            text("SELECT id FROM period WHERE model_id = :m"), {"m": model.id}
        ).scalar_one()
        job = jobs.create_job(
            session, "close_period", {"period_id": str(period_id), "anchor": False}, None
        )
        session.commit()

    # A worker on its own queue that dies right after `open → closing` is committed.
    os.environ["USEFIRST_FAULT"] = "close_after_begin"
    try:
        worker.start(celery_worker, name="faulty", queues="faulty")
    finally:
        del os.environ["USEFIRST_FAULT"]
    try:
        close_period.apply_async(
            kwargs={"period_id": str(period_id), "job_id": job.id, "anchor": False},
            task_id=job.id,
            queue="faulty",
        )

        def state() -> str:
            with Session(db_engine) as s:
                return str(
                    s.execute(
                        text("SELECT state FROM period WHERE id = :p"), {"p": period_id}
                    ).scalar_one()
                )

        _wait(lambda: state() == "closing")
        time.sleep(1)  # the faulty worker's child has exited by now; the close stays half done
    finally:
        worker.stop(celery_worker, "faulty")
    assert state() == "closing"

    # The job row went quiet: the sweep resumes it on the healthy worker.
    assert job.id in resume_stale_jobs(stale_after_s=0)
    _wait(lambda: state() == "closed")
    with Session(db_engine) as session:
        accruals = session.execute(
            text(
                "SELECT count(*) FROM journal_transaction WHERE kind = 'royalty_accrual' "
                "AND reference->>'period_id' = :p"
            ),
            {"p": str(period_id)},
        ).scalar_one()
    assert accruals == 1

    def job_state() -> str:
        with Session(db_engine) as s:
            found = s.get(jobs.Job, job.id)
            return found.state if found else "missing"

    _wait(lambda: job_state() == "succeeded")
