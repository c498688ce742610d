"""Celery tasks. Each takes ids, reloads what it needs, and is safe to rerun."""

from __future__ import annotations

import os
import socket
from typing import Any

from sqlalchemy import text

from api.celery_app import celery_app
from ledger.db import session_scope


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
