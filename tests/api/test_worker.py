"""A Celery task runs in a real worker process and writes to the real database."""

from __future__ import annotations

import os
import uuid

from sqlalchemy import Engine, text

from ledger.settings import Settings


def test_task_runs_in_a_separate_worker_process(celery_worker: Settings, db_engine: Engine) -> None:
    from api.tasks import ping

    nonce = uuid.uuid4().hex
    result = ping.delay(nonce).get(timeout=60)
    assert result["nonce"] == nonce
    assert result["worker_pid"] != os.getpid()
    with db_engine.connect() as conn:
        row = conn.execute(
            text("SELECT worker_pid FROM worker_heartbeat WHERE nonce = :n"), {"n": nonce}
        ).one()
    assert row.worker_pid == result["worker_pid"]


def test_rerunning_a_task_is_idempotent(celery_worker: Settings, db_engine: Engine) -> None:
    from api.tasks import ping

    nonce = uuid.uuid4().hex
    ping.delay(nonce).get(timeout=60)
    ping.delay(nonce).get(timeout=60)
    with db_engine.connect() as conn:
        count = conn.execute(
            text("SELECT count(*) FROM worker_heartbeat WHERE nonce = :n"), {"n": nonce}
        ).scalar_one()
    assert count == 1


def test_a_task_failing_for_good_marks_its_job_failed_and_a_transient_error_does_not(
    database: Settings, db_engine: Engine
) -> None:
    """A job must never stay ``running`` forever because its task raised something other
    than a domain error (no deployment record, a bug), nor be failed by an error Celery is
    about to retry (a dropped database connection)."""
    import psycopg
    from sqlmodel import Session

    from api import jobs
    from api.tasks import _fail_unless_transient
    from contracts.errors import DeploymentError

    with Session(db_engine) as session:
        permanent = jobs.create_job(session, "anchor_period", {"period_id": "p"}, None)
        transient = jobs.create_job(session, "anchor_period", {"period_id": "p"}, None)
        session.commit()
        permanent_id, transient_id = permanent.id, transient.id
    for job_id in (permanent_id, transient_id):
        jobs.mark(job_id, state="running")

    _fail_unless_transient(permanent_id, DeploymentError("no deployment record for chain 1"))
    _fail_unless_transient(transient_id, psycopg.OperationalError("server closed the connection"))

    with Session(db_engine) as session:
        failed = jobs.get_job(session, permanent_id)
        waiting = jobs.get_job(session, transient_id)
        assert failed.state == "failed"
        assert failed.error == "chain_deployment: no deployment record for chain 1"
        assert (waiting.state, waiting.error) == ("running", None)
