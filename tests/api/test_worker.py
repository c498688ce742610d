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
