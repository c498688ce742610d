"""A worker SIGKILLed in the middle of a close, or of indexing claims: the work is resumed
and finishes once."""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
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


@contextmanager
def _worker_dying_at(settings: Settings, point: str) -> Iterator[str]:
    """A worker of its own, on its own queue (yielded), started with ``USEFIRST_FAULT=point``;
    stopped on leaving. :func:`_died_at` waits until one of its processes exited there."""
    queue = f"faulty-{point}"
    os.environ["USEFIRST_FAULT"] = point
    try:
        worker.start(settings, name=queue, queues=queue)
    finally:
        del os.environ["USEFIRST_FAULT"]
    try:
        yield queue
    finally:
        worker.stop(settings, queue)


def _died_at(settings: Settings, point: str) -> None:
    log = settings.log_dir / f"faulty-{point}.log"
    _wait(lambda: f"fault injection: exiting at {point}" in log.read_text())


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

    def state() -> str:
        with Session(db_engine) as s:
            return str(
                s.execute(
                    text("SELECT state FROM period WHERE id = :p"), {"p": period_id}
                ).scalar_one()
            )

    # A worker that dies right after `open → closing` is committed.
    with _worker_dying_at(celery_worker, "close_after_begin") as queue:
        close_period.apply_async(
            kwargs={"period_id": str(period_id), "job_id": job.id, "anchor": False},
            task_id=job.id,
            queue=queue,
        )
        _died_at(celery_worker, "close_after_begin")
    assert state() == "closing"  # the close stays half done

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


def test_claims_indexed_by_a_worker_killed_before_its_commit_are_recorded_once(
    db_engine: Engine, services: Settings
) -> None:
    from eth_account import Account
    from sqlmodel import select

    from api.tasks import index_claims
    from contracts.client import UsefirstChain
    from contracts.merkle import StandardMerkleTree
    from ledger.settlements.models import Settlement
    from ledger.settlements.service import anchor_period
    from tests.ledger.factories_settlement import closed_period

    # The workers' own deployment (the session's data directory): claims open at once.
    chain = UsefirstChain.connect(services, deploy=True)
    weights = {Account.create().address: weight for weight in (1, 2, 3)}
    closed = closed_period(db_engine, weights, at=OCT)
    anchor_period(closed.period_id, chain=chain, settings=chain.settings)
    with Session(db_engine, expire_on_commit=False) as session:
        settlement = session.exec(
            select(Settlement).where(Settlement.period_id == closed.period_id)
        ).one()
    tree = StandardMerkleTree.load(settlement.tree_dump)
    key = bytes.fromhex(settlement.settlement_key[2:])
    for account, amount in tree.values:
        chain.claim(key, account, amount, tree.get_proof(tree.index_of(account)))

    def recorded() -> tuple[int, int, str]:
        with Session(db_engine) as s:
            claims = s.execute(
                text("SELECT count(*) FROM settlement_claim WHERE settlement_id = :s"),
                {"s": settlement.id},
            ).scalar_one()
            payouts = s.execute(
                text(
                    "SELECT count(*) FROM journal_transaction WHERE kind = 'royalty_payout'"
                    " AND reference->>'settlement_id' = :s"
                ),
                {"s": str(settlement.id)},
            ).scalar_one()
            state = s.execute(
                text("SELECT state FROM period WHERE id = :p"), {"p": closed.period_id}
            ).scalar_one()
        return int(claims), int(payouts), str(state)

    # A worker that dies after writing the claims, payouts and cursor, before the commit.
    with _worker_dying_at(services, "index_before_commit") as queue:
        index_claims.apply_async(queue=queue)
        _died_at(services, "index_before_commit")
    assert recorded() == (0, 0, "anchored")  # nothing of the dead run was committed

    # The next run (the beat's, here on the healthy worker) records every claim once.
    index_claims.apply_async().get(timeout=120)
    assert recorded() == (3, 3, "paid")
    index_claims.apply_async().get(timeout=120)
    assert recorded() == (3, 3, "paid")


def test_an_anchor_job_whose_worker_died_after_sending_publishes_once(
    db_engine: Engine, services: Settings
) -> None:
    from eth_account import Account

    from api.tasks import anchor_period, resume_stale_jobs
    from contracts.client import UsefirstChain, settlement_id_for
    from tests.ledger.factories_settlement import closed_period

    chain = UsefirstChain.connect(services, deploy=True)
    closed = closed_period(db_engine, {Account.create().address: w for w in (1, 4)}, at=OCT)
    key = settlement_id_for(closed.model_id, closed.period_id)

    def published() -> int:
        return len(
            chain.settlement.events.SettlementPublished().get_logs(
                from_block=0, argument_filters={"settlementId": key}
            )
        )

    def period_state() -> str:
        with Session(db_engine) as s:
            return str(
                s.execute(
                    text("SELECT state FROM period WHERE id = :p"), {"p": closed.period_id}
                ).scalar_one()
            )

    # A worker that dies right after sending the publication (before recording its receipt).
    with _worker_dying_at(services, "after_publish_sent") as queue:
        with Session(db_engine) as session:
            job = jobs.create_job(
                session, "anchor_period", {"period_id": str(closed.period_id)}, None
            )
            session.commit()
            job_id = job.id
        anchor_period.apply_async(
            kwargs={"period_id": str(closed.period_id), "job_id": job_id},
            task_id=job_id,
            queue=queue,
        )
        _died_at(services, "after_publish_sent")
    assert period_state() == "closed"  # sent, not recorded as anchored

    # The sweep resumes the quiet job on the healthy worker: it finds the sent transaction
    # on chain instead of publishing again.
    assert job_id in resume_stale_jobs(stale_after_s=0)
    _wait(lambda: period_state() == "anchored")
    assert published() == 1
    with Session(db_engine) as session:
        fundings = session.execute(
            text(
                "SELECT count(*) FROM journal_transaction WHERE kind = 'settlement_funding'"
                " AND reference->>'period_id' = :p"
            ),
            {"p": str(closed.period_id)},
        ).scalar_one()
        assert fundings == 1
        assert jobs.get_job(session, job_id).state == "succeeded"
