"""Scale-out: several Celery worker processes close and anchor periods of different models
in parallel, and every period is closed, journaled and published on chain exactly once.

Everything is real: a private ``redis-server`` (installed by ``make redis``) or the
session's default broker (kombu's SQL transport on the test PostgreSQL), worker processes
started by ``api.embedded.worker`` (the launcher ``usefirst up`` uses), the session's
database and anvil. Jobs are enqueued by a separate process through the product path
(``api.tasks.start_period_job``, what ``POST /v1/periods/{id}/close`` calls), each period
twice, as two close requests without a shared ``Idempotency-Key`` would.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

import pytest
from celery import Celery
from sqlalchemy import Engine, text
from sqlmodel import Session

from api.celery_app import celery_app
from api.embedded import worker
from api.embedded.apiserver import free_port
from api.embedded.process import stop_process_group, tail
from contracts.client import UsefirstChain, settlement_id_for
from ledger.revenue.service import record_revenue
from ledger.settings import Settings
from ledger.usage.service import ingest_retrievals
from tests.ledger.factories import make_dataset, make_model

AUG = datetime(2026, 8, 14, 9, 0, tzinfo=UTC)
MODELS = 6
ENQUEUES_PER_PERIOD = 2
JOBS_TIMEOUT_S = 150.0

# Run by a separate process, like an API process configured with the same broker: one
# close-and-anchor job per period id given, each enqueued ENQUEUES_PER_PERIOD times in a row.
ENQUEUE_SCRIPT = """
import json, sys, uuid
import ledger.tables  # every table mapped, as in an API process
from api.tasks import start_period_job
from ledger.db import session_scope
period_ids, times = json.loads(sys.argv[1]), int(sys.argv[2])
job_ids = []
for period_id in period_ids:
    for _ in range(times):
        with session_scope() as session:
            job = start_period_job(
                session, "close_period", uuid.UUID(period_id), {"anchor": True}, None
            )
            job_ids.append(job.id)
print(json.dumps(job_ids))
"""


# --- a private Redis -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A throwaway ``redis-server`` on a free loopback port, no persistence; stopped after."""
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.fail(
            "redis-server is not installed: the scale-out test needs it for the Redis broker; "
            "run `make redis` (apt-get install -y redis-server) and rerun"
        )
    try:
        import redis
    except ImportError:
        pytest.fail(
            "the `redis` Python client is missing (kombu's Redis transport needs it); "
            "run `.venv/bin/pip install -e '.[dev]'`"
        )
    data_dir = tmp_path_factory.mktemp("redis")
    port = free_port()
    log_file = data_dir / "redis.log"
    proc = subprocess.Popen(
        [
            binary,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(data_dir),
            "--logfile",
            str(log_file),
        ],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"redis://127.0.0.1:{port}/0"
    try:
        client = redis.Redis.from_url(url, socket_timeout=1)
        deadline = time.monotonic() + 20
        while True:
            if proc.poll() is not None:
                pytest.fail(f"redis-server exited at start ({log_file}: {tail(log_file)})")
            with contextlib.suppress(redis.ConnectionError):
                if client.ping():
                    break
            if time.monotonic() > deadline:
                pytest.fail(f"redis-server did not answer PING on {url} ({tail(log_file)})")
            time.sleep(0.1)
        client.close()
        yield url
    finally:
        stop_process_group(proc.pid)


# --- workers, jobs, results ----------------------------------------------------------------


@contextlib.contextmanager
def _workers(settings: Settings, names: list[str], broker_url: str | None) -> Iterator[None]:
    """Start ``names`` as real worker processes (one pool process each) on ``broker_url``
    (None: the session's configured broker), in parallel; stop them all afterwards."""
    one_each = settings.model_copy(update={"worker_concurrency": 1})
    for name in names:
        worker.stop(settings, name)  # a leftover of an aborted run could sit on another broker
    saved = os.environ.get("CELERY_BROKER_URL")
    if broker_url is not None:
        os.environ["CELERY_BROKER_URL"] = broker_url  # the worker's environment is ours
    try:
        with ThreadPoolExecutor(len(names)) as pool:
            list(pool.map(lambda name: worker.start(one_each, name=name), names))
    finally:
        if saved is None:
            os.environ.pop("CELERY_BROKER_URL", None)
        else:
            os.environ["CELERY_BROKER_URL"] = saved
    try:
        yield
    finally:
        with ThreadPoolExecutor(len(names)) as pool:
            list(pool.map(lambda name: worker.stop(settings, name), names))


def _models_with_open_periods(engine: Engine, count: int) -> list[tuple[uuid.UUID, uuid.UUID]]:
    """``count`` models, each with retrieval usage of two datasets (one co-owned) and revenue
    in August 2026; returns ``(model_id, period_id)`` of each one's open period."""
    out = []
    with Session(engine, expire_on_commit=False) as session:
        for index in range(count):
            model = make_model(session)
            single, shared = make_dataset(session), make_dataset(session, co_owners=2)
            session.commit()
            events = [
                {
                    "event_id": uuid.uuid4().hex,
                    "query_id": f"q{i}",
                    "occurred_at": AUG.isoformat(),
                    "chunks": [
                        {"dataset_id": str(first.id), "chunk_id": f"c{i}", "rank": 1},
                        {"dataset_id": str(second.id), "chunk_id": f"d{i}", "rank": 2},
                    ],
                }
                for i, (first, second) in enumerate(
                    [(single, shared)] * (3 + index) + [(shared, single)] * 2
                )
            ]
            result = ingest_retrievals(session, model.id, events)
            assert all(r.status == "accepted" for r in result.results), result.results
            record_revenue(session, model.id, 100_000 + 7_919 * index, "EUR", "invoice", AUG)
            session.commit()
            period_id = session.execute(
                text("SELECT id FROM period WHERE model_id = :m AND key = '2026-08'"),
                {"m": model.id},
            ).scalar_one()
            out.append((model.id, period_id))
    return out


def _enqueue(period_ids: list[uuid.UUID], broker_url: str | None) -> list[str]:
    env = dict(os.environ)
    if broker_url is not None:
        env["CELERY_BROKER_URL"] = broker_url
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            ENQUEUE_SCRIPT,
            json.dumps([str(p) for p in period_ids]),
            str(ENQUEUES_PER_PERIOD),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    job_ids: list[str] = json.loads(done.stdout)
    return job_ids


def _wait_for_jobs(
    engine: Engine, job_ids: list[str], settings: Settings, names: list[str]
) -> dict[str, tuple[str, str | None]]:
    """Wait until every job is succeeded or failed; ``{job id: (state, error)}``."""
    deadline = time.monotonic() + JOBS_TIMEOUT_S
    while True:
        with Session(engine) as session:
            rows = session.execute(
                text("SELECT id, state, error FROM job WHERE id = ANY(:ids)"), {"ids": job_ids}
            ).all()
        states = {row.id: (row.state, row.error) for row in rows}
        if len(states) == len(job_ids) and all(
            state in ("succeeded", "failed") for state, _ in states.values()
        ):
            return states
        if time.monotonic() > deadline:
            logs = {name: tail(settings.log_dir / f"{name}.log", 8) for name in names}
            raise AssertionError(f"jobs unfinished after {JOBS_TIMEOUT_S}s: {states}; logs {logs}")
        time.sleep(0.3)


def _task_runs(
    settings: Settings, broker_url: str | None, task_ids: list[str]
) -> dict[str, tuple[str, str | None]]:
    """``{task id: (Celery status, hostname of the worker that ran it)}`` from the result
    backend the workers wrote to (Redis with a Redis broker, else the database)."""
    configured = (
        settings
        if broker_url is None
        else settings.model_copy(update={"celery_broker_url": broker_url})
    )
    app = Celery(
        "usefirst-scale-out-results",
        broker=configured.effective_broker_url,
        backend=configured.effective_result_backend,
    )
    app.conf.update(
        result_extended=True,
        accept_content=["json"],
        result_serializer="json",
        database_table_names=celery_app.conf.database_table_names,
    )
    try:
        results = {task_id: app.AsyncResult(task_id) for task_id in task_ids}
        return {task_id: (r.status, r.worker) for task_id, r in results.items()}
    finally:
        app.close()


# --- the test ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def chain(chain_settings: Settings, database: Settings) -> UsefirstChain:
    """The contracts of the session's chain, recorded in the session's data directory, which
    is where the workers (same settings) look for them."""
    return UsefirstChain.connect(chain_settings, deploy=True)


@pytest.mark.parametrize("broker", ["redis", "default"])
def test_workers_close_and_anchor_periods_of_many_models_each_exactly_once(
    broker: str,
    request: pytest.FixtureRequest,
    db_engine: Engine,
    database: Settings,
    chain: UsefirstChain,
) -> None:
    if broker == "redis":
        # Three workers on a private Redis (result backend: the same Redis).
        broker_url: str | None = request.getfixturevalue("redis_url")
        names = ["scale-redis-1", "scale-redis-2", "scale-redis-3"]
    else:
        # The session's default worker (kombu's SQL transport on PostgreSQL unless
        # CELERY_BROKER_URL says otherwise) plus one more on the same broker.
        broker_url = None
        request.getfixturevalue("celery_worker")
        names = ["scale-default-2"]
    all_names = names if broker == "redis" else [worker.NAME, *names]

    periods = _models_with_open_periods(db_engine, MODELS)
    with _workers(database, names, broker_url):
        job_ids = _enqueue([period_id for _, period_id in periods], broker_url)
        assert len(job_ids) == MODELS * ENQUEUES_PER_PERIOD
        jobs = _wait_for_jobs(db_engine, job_ids, database, all_names)
        runs = _task_runs(database, broker_url, job_ids)

    # No job failed; every close task (task id = job id) succeeded.
    assert {job_id: state for job_id, (state, _) in jobs.items()} == dict.fromkeys(
        job_ids, "succeeded"
    ), jobs
    assert {status for status, _ in runs.values()} == {"SUCCESS"}, runs
    # The work was spread: close tasks ran on more than one worker process, all ours.
    hostnames = {hostname for _, hostname in runs.values()}
    assert None not in hostnames, runs
    ran_on = {hostname.split("@")[0].rsplit("-", 1)[0] for hostname in hostnames if hostname}
    assert len(hostnames) >= 2, f"every close ran on {hostnames}"
    assert ran_on <= set(all_names), (ran_on, all_names)

    with Session(db_engine) as session:
        for model_id, period_id in periods:
            state = session.execute(
                text("SELECT state FROM period WHERE id = :p"), {"p": period_id}
            ).scalar_one()
            assert state == "anchored", (period_id, state)
            # One statement, with its lines.
            statements = session.execute(
                text("SELECT count(*) FROM period_statement WHERE period_id = :p"),
                {"p": period_id},
            ).scalar_one()
            lines = session.execute(
                text("SELECT count(*) FROM statement_line WHERE period_id = :p"),
                {"p": period_id},
            ).scalar_one()
            assert (statements, lines) == (1, 3), period_id  # three payees: 1 + 2 co-owners
            # One close posting (balanced) and one funding posting, under their fixed keys.
            postings = session.execute(
                text(
                    "SELECT t.kind, t.idempotency_key, count(e.*) AS entries, "
                    "       sum(e.amount_minor) AS balance "
                    "FROM journal_transaction t JOIN journal_entry e ON e.transaction_id = t.id "
                    "WHERE t.reference->>'period_id' = :p AND t.kind <> 'revenue_recognition' "
                    "GROUP BY t.id ORDER BY t.kind"
                ),
                {"p": str(period_id)},
            ).all()
            settlement = session.execute(
                text(
                    "SELECT id, settlement_key, state, publish_tx_hash, total_units "
                    "FROM settlement WHERE period_id = :p"
                ),
                {"p": period_id},
            ).one()  # exactly one settlement row
            assert [(p.kind, p.idempotency_key) for p in postings] == [
                ("royalty_accrual", f"period:{period_id}:close"),
                ("settlement_funding", f"settlement:{settlement.id}:funding"),
            ], postings
            assert all(p.entries > 0 and p.balance == 0 for p in postings), postings
            assert settlement.state == "confirmed"
            # Both jobs of the period report that one settlement and publication.
            reported = session.execute(
                text(
                    "SELECT result->>'settlement_key' AS key, result->>'publish_tx_hash' AS tx "
                    "FROM job WHERE id = ANY(:ids) AND params->>'period_id' = :p"
                ),
                {"ids": job_ids, "p": str(period_id)},
            ).all()
            assert [tuple(row) for row in reported] == [
                (settlement.settlement_key, settlement.publish_tx_hash)
            ] * ENQUEUES_PER_PERIOD, reported
            # One publication on chain for this period's settlement id.
            key = settlement_id_for(model_id, period_id)
            assert settlement.settlement_key == "0x" + key.hex()
            logs = chain.settlement.events.SettlementPublished().get_logs(
                from_block=chain.deployment.from_block, argument_filters={"settlementId": key}
            )
            assert len(logs) == 1, (period_id, logs)
            assert "0x" + logs[0]["transactionHash"].hex().removeprefix("0x") == (
                settlement.publish_tx_hash
            )
            record = chain.get_settlement(key)
            assert record is not None
            assert record.total_units == int(settlement.total_units) > 0
