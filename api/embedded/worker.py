"""The Celery worker, a real process consuming from the configured broker."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass

from api.embedded.process import (
    ServiceRecord,
    SetupError,
    load_live_record,
    stop_process_group,
    tail,
)
from ledger.settings import Settings

NAME = "worker"
READY_MARKER = "ready."


@dataclass
class WorkerStatus:
    running: bool
    pid: int | None
    broker: str
    version: str
    stale_record_removed: bool = False


def celery_version() -> str:
    import celery

    return f"celery {celery.__version__}"


def _redact(url: str) -> str:
    from sqlalchemy.engine import make_url

    try:
        if "://" in url and url.split("://", 1)[0].startswith("sqla+"):
            return "sqla+" + make_url(url[5:]).render_as_string(hide_password=True)
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return url.split("@")[-1]


def _data_dir_tag(settings: Settings) -> str:
    """A short tag naming the data directory, so two checkouts' workers differ."""
    import hashlib

    return hashlib.sha256(str(settings.data_dir.resolve()).encode()).hexdigest()[:8]


def status(settings: Settings, name: str = NAME) -> WorkerStatus:
    record, stale = load_live_record(settings.run_dir, name)
    return WorkerStatus(
        running=record is not None,
        pid=record.pid if record else None,
        broker=_redact(settings.effective_broker_url),
        version=celery_version(),
        stale_record_removed=stale,
    )


def start(settings: Settings, name: str = NAME, queues: str | None = None) -> WorkerStatus:
    current = status(settings, name)
    if current.running:
        return current
    settings.log_dir.mkdir(parents=True, exist_ok=True)
    log_file = settings.log_dir / f"{name}.log"
    log_file.write_text("")
    env = dict(os.environ)
    env["USEFIRST_DATA_DIR"] = str(settings.data_dir.resolve())
    command = [
        sys.executable,
        "-m",
        "celery",
        "-A",
        "api.celery_app",
        "worker",
        "--loglevel",
        "INFO",
        "--concurrency",
        str(settings.worker_concurrency),
        "--hostname",
        f"{name}-{_data_dir_tag(settings)}@%h",
    ]
    if queues:
        command += ["--queues", queues]
    if settings.worker_beat and name == NAME:
        # One scheduler per deployment: only the default worker embeds beat.
        schedule = settings.run_dir / "celerybeat-schedule"
        settings.run_dir.mkdir(parents=True, exist_ok=True)
        command += ["--beat", "--schedule", str(schedule)]
    with log_file.open("ab") as log:
        proc = subprocess.Popen(
            command,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            start_new_session=True,
            cwd=str(settings.node_root),
        )
    record = ServiceRecord(
        name=name,
        pid=proc.pid,
        marker=f"{name}-{_data_dir_tag(settings)}@",
        started_at=time.time(),
        info={"log": str(log_file)},
    )
    record.save(settings.run_dir)
    deadline = time.monotonic() + settings.service_start_timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            record.remove(settings.run_dir)
            raise SetupError(
                f"the Celery worker exited at start (log: {log_file}: {tail(log_file)})"
            )
        if READY_MARKER in log_file.read_text(errors="replace"):
            return status(settings, name)
        time.sleep(0.2)
    stop_process_group(proc.pid)
    record.remove(settings.run_dir)
    raise SetupError(
        f"the Celery worker was not ready within {settings.service_start_timeout_s}s "
        f"(log: {log_file}: {tail(log_file)}); check CELERY_BROKER_URL"
    )


def stop(settings: Settings, name: str = NAME) -> bool:
    record, _ = load_live_record(settings.run_dir, name)
    if record is None:
        return False
    stop_process_group(record.pid, timeout_s=20, leader_first_s=15)
    record.remove(settings.run_dir)
    return True
