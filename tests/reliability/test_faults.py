"""Fault injection against the real processes (issue 8, crash safety points).

**The chain node stops mid-publish.** Each test runs its own anvil (the embedded launcher,
with a state file, on a free port and its own chain id, so the session's chain and the
in-process nonce caches are never shared) and its own contracts. The publish transaction
is sent with automine off, so it waits in anvil's mempool; anvil is then stopped with
SIGTERM (it dumps its state file) and restarted on the same port from that file. Anvil
keeps mined blocks across the restart but not its mempool, which gives the two cases:

- the transaction was mined before the node stopped (mined explicitly with ``evm_mine``);
  the publisher had died right after committing the hash (fault point
  ``after_publish_sent``), so the rerun finds the publication on chain and records it;
- the transaction never made it into the chain; a real Celery worker was waiting for its
  receipt, fails cleanly while the node is down (the job row says it waits for the chain,
  the task retries) and, once the node is back, publishes anew.

Either way: one ``SettlementPublished`` event, the contract funded once, the funding posted
once in the journal, the period anchored and reconciliation clean.

**The database connection drops mid-ingest.** A real API server ingests one large retrieval
batch; a connection of the test holds the server's transaction after it has written rows,
and every connection of the server is terminated (``pg_terminate_backend``). The request
fails with a 503 problem and stores nothing, the server's pool recovers, and the client's
retry (same key and body, or the SDK's own resend) counts every event once.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
from eth_account import Account
from sqlalchemy import Engine, text
from sqlmodel import Session

from api import jobs
from api.embedded import anvil, worker
from api.sdk import UsefirstClient
from contracts.client import UsefirstChain, settlement_id_for
from ledger.journal import queries as journal_queries
from ledger.settings import Settings
from ledger.settlements import postings
from ledger.settlements.models import Settlement
from ledger.settlements.service import anchor_period, prepare_settlement, reconcile
from ledger.usage.service import ingest_retrievals
from tests.api.conftest import ApiPrincipal
from tests.api.conftest import principal as principal
from tests.api.support import REPO_ROOT, LiveServer, Team, free_port, team_with_model
from tests.ledger import factories
from tests.ledger.factories_settlement import ClosedPeriod, closed_period

WAIT_S = 120.0
FAULT_QUEUE = "faults"
T = TypeVar("T")
Make = Callable[..., ApiPrincipal]


def wait_for(predicate: Callable[[], bool], what: str, timeout_s: float = WAIT_S) -> None:
    """Poll ``predicate`` until it holds; fail naming ``what`` after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")


# --- the chain node stops mid-publish ---------------------------------------------------------


@dataclass
class PrivateChain:
    """An anvil of this test's own (state file, port, chain id) and its contracts."""

    settings: Settings
    chain: UsefirstChain

    @property
    def url(self) -> str:
        return self.settings.effective_eth_rpc_url

    def rpc(self, method: str, *params: object) -> Any:
        return anvil.rpc(self.url, method, list(params))

    def stop(self) -> None:
        """SIGTERM, so anvil dumps its state file before exiting."""
        assert anvil.stop(self.settings)

    def persisted(self, tx_hash: str) -> bool:
        """Whether the state file anvil dumped holds ``tx_hash`` (call while it is stopped)."""
        return tx_hash.removeprefix("0x").lower() in self.settings.anvil_state_file.read_text()

    def start(self) -> None:
        """The same port and state file: clients see the same node come back."""
        anvil.start(self.settings)

    def environment(self) -> dict[str, str]:
        """What a process (CLI, worker) needs to use this chain and its deployment."""
        return {
            "USEFIRST_DATA_DIR": str(self.settings.data_dir),
            "USEFIRST_ANVIL_PORT": str(self.settings.anvil_port),
            "USEFIRST_ANVIL_CHAIN_ID": str(self.settings.anvil_chain_id),
            "USEFIRST_CHAIN_CHALLENGE_WINDOW_S": "0",
            # Fail fast while the node is down (the callers retry).
            "USEFIRST_CHAIN_RPC_RETRIES": "2",
            "USEFIRST_CHAIN_RPC_BACKOFF_S": "0.1",
        }


@pytest.fixture
def private_chain(database: Settings, tmp_path: Path) -> Iterator[PrivateChain]:
    port = free_port()
    settings = database.model_copy(
        update={
            "data_dir": tmp_path / "private",
            "eth_rpc_url": None,
            "anvil_port": port,
            # A chain id of its own: Transactor caches nonces per (chain id, sender) for the
            # whole process, and this chain starts from nonce 0 unlike the session's.
            "anvil_chain_id": 1_000_000 + port,
            # Only the SIGTERM dump persists the chain: the restart proves that it does.
            "anvil_state_interval_s": 3_600,
            "chain_challenge_window_s": 0,
            "chain_rpc_retries": 2,
            "chain_rpc_backoff_s": 0.1,
        }
    )
    anvil.start(settings)
    try:
        yield PrivateChain(settings, UsefirstChain.connect(settings, deploy=True))
    finally:
        anvil.stop(settings)


def prepare_and_fund(engine: Engine, private: PrivateChain, closed: ClosedPeriod) -> Settlement:
    """The prepared settlement, with the settler already holding and approving its total:
    the only transaction left to send is the publication itself."""
    chain = private.chain
    with Session(engine, expire_on_commit=False) as session:
        settlement = prepare_settlement(session, closed.period_id, chain=chain)
        session.commit()
    assert settlement is not None
    total_units = int(settlement.total_units)
    chain.mint_test_tokens(chain.keys.settler.address, total_units)
    approve = chain.token().functions.approve(chain.settlement.address, total_units)
    chain.transactor.send(chain.keys.settler, approve)
    return settlement


def load_settlement(engine: Engine, period_id: uuid.UUID) -> Settlement:
    with Session(engine, expire_on_commit=False) as session:
        found = session.execute(
            text("SELECT id FROM settlement WHERE period_id = :p"), {"p": period_id}
        ).scalar_one()
        settlement = session.get(Settlement, found)
        assert settlement is not None
        return settlement


def period_state(engine: Engine, period_id: uuid.UUID) -> str:
    with Session(engine) as session:
        return str(
            session.execute(
                text("SELECT state FROM period WHERE id = :p"), {"p": period_id}
            ).scalar_one()
        )


def fundings(engine: Engine, settlement_id: uuid.UUID) -> int:
    with Session(engine) as session:
        return int(
            session.execute(
                text(
                    "SELECT count(*) FROM journal_transaction WHERE kind = 'settlement_funding' "
                    "AND reference->>'settlement_id' = :s"
                ),
                {"s": str(settlement_id)},
            ).scalar_one()
        )


def assert_untouched_while_down(engine: Engine, closed: ClosedPeriod, sent_tx: str) -> None:
    """No partial state: the settlement is still ``sent`` with the hash the publisher
    committed, the period still ``closed``, nothing funded in the journal."""
    settlement = load_settlement(engine, closed.period_id)
    assert settlement.state == "sent"
    assert settlement.publish_tx_hash == sent_tx
    assert settlement.publish_block is None
    assert period_state(engine, closed.period_id) == "closed"
    assert fundings(engine, settlement.id) == 0


def assert_published_once(engine: Engine, private: PrivateChain, closed: ClosedPeriod) -> None:
    """One publication on chain, funded once, funding posted once, anchored, reconciled."""
    chain = private.chain
    settlement = load_settlement(engine, closed.period_id)
    total_units = int(settlement.total_units)
    total_minor = sum(closed.payable.values())
    assert total_units == total_minor * int(settlement.units_per_minor)
    key = settlement_id_for(closed.model_id, closed.period_id)
    published = chain.settlement.events.SettlementPublished().get_logs(
        from_block=0, argument_filters={"settlementId": key}
    )
    assert len(published) == 1
    assert "0x" + bytes(published[0]["transactionHash"]).hex() == settlement.publish_tx_hash
    record = chain.get_settlement(key)
    assert record is not None
    assert record.total_units == record.remaining_units == total_units
    # The fresh contract holds exactly this settlement's funds: it was funded once.
    assert chain.token_balance(chain.settlement.address) == total_units

    assert settlement.state == "confirmed"
    assert settlement.publish_block == published[0]["blockNumber"]
    assert period_state(engine, closed.period_id) == "anchored"
    assert fundings(engine, settlement.id) == 1
    with Session(engine) as session:
        escrow = postings.escrow_account(settlement.settlement_key)
        assert journal_queries.balance(session, escrow, closed.currency) == -total_minor
        for address in closed.payable:
            payable = postings.payable_account(address)
            assert journal_queries.balance(session, payable, closed.currency) == 0

    report = reconcile(chain=chain, settings=private.settings)
    assert report.settlements_checked == 1
    assert report.clean, report.findings
    # Anchoring once more sends nothing and changes nothing.
    block = chain.w3.eth.block_number
    again = anchor_period(closed.period_id, chain=chain, settings=private.settings)
    assert again.period_state == "anchored" and chain.w3.eth.block_number == block
    assert fundings(engine, settlement.id) == 1


def run_cli(
    private: PrivateChain, *args: str, fault: str | None = None
) -> subprocess.CompletedProcess[str]:
    environment = {**os.environ, **private.environment()}
    environment.pop("ETH_RPC_URL", None)
    if fault is not None:
        environment["USEFIRST_FAULT"] = fault
    return subprocess.run(
        [sys.executable, "-m", "api.cli", *args],
        cwd=REPO_ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=WAIT_S,
        check=False,
    )


def test_a_publication_mined_before_anvil_stopped_is_recorded_once_after_its_restart(
    db_engine: Engine, private_chain: PrivateChain
) -> None:
    private = private_chain
    closed = closed_period(db_engine, {Account.create().address: 1, Account.create().address: 3})
    prepare_and_fund(db_engine, private, closed)
    private.rpc("evm_setAutomine", False)

    # The publisher sends the publication, commits its hash and dies before any receipt.
    crashed = run_cli(private, "anchor", str(closed.period_id), fault="after_publish_sent")
    assert crashed.returncode == 137, crashed.stdout + crashed.stderr
    sent_tx = load_settlement(db_engine, closed.period_id).publish_tx_hash
    assert sent_tx is not None
    pending = private.rpc("eth_getTransactionByHash", sent_tx)
    assert pending is not None and pending["blockNumber"] is None
    assert_untouched_while_down(db_engine, closed, sent_tx)

    # The node mines it, then stops (SIGTERM: the state file is written, with the block).
    private.rpc("evm_mine")
    assert private.rpc("eth_getTransactionReceipt", sent_tx)["status"] == "0x1"
    private.stop()
    assert private.persisted(sent_tx)

    # Anchoring while the node is down fails cleanly, naming the node, and writes nothing.
    down = run_cli(private, "anchor", str(closed.period_id))
    assert down.returncode == 2, down.stdout + down.stderr
    assert "chain_unavailable" in down.stderr and private.url in down.stderr
    assert "Traceback" not in down.stderr
    assert_untouched_while_down(db_engine, closed, sent_tx)

    # Back on the same port from its state file: the mined publication survived, and the
    # rerun records it instead of sending anything.
    private.start()
    assert private.rpc("eth_getTransactionReceipt", sent_tx)["status"] == "0x1"
    block = private.chain.w3.eth.block_number
    rerun = anchor_period(closed.period_id, chain=private.chain, settings=private.settings)
    assert rerun.period_state == "anchored" and rerun.publish_tx_hash == sent_tx
    assert private.chain.w3.eth.block_number == block
    assert_published_once(db_engine, private, closed)
    assert load_settlement(db_engine, closed.period_id).publish_tx_hash == sent_tx


@pytest.fixture
def fault_worker(
    private_chain: PrivateChain, monkeypatch: pytest.MonkeyPatch
) -> Iterator[PrivateChain]:
    """A real Celery worker on its own queue, configured for the private chain. One process
    (concurrency 1), so a retry runs where the first attempt ran and inherits its state."""
    settings = private_chain.settings.model_copy(update={"worker_concurrency": 1})
    with monkeypatch.context() as patched:
        for name, value in private_chain.environment().items():
            patched.setenv(name, value)
        patched.delenv("ETH_RPC_URL", raising=False)
        worker.start(settings, name="faults", queues=FAULT_QUEUE)
    try:
        yield private_chain
    finally:
        worker.stop(settings, "faults")


def job_row(engine: Engine, job_id: str) -> jobs.Job:
    with Session(engine, expire_on_commit=False) as session:
        job = session.get(jobs.Job, job_id)
        assert job is not None
        return job


def test_a_publication_lost_with_anvils_mempool_is_sent_again_once_by_the_retried_job(
    db_engine: Engine, fault_worker: PrivateChain
) -> None:
    from api.tasks import anchor_period as anchor_task

    private = fault_worker
    closed = closed_period(db_engine, {Account.create().address: 2, Account.create().address: 5})
    prepare_and_fund(db_engine, private, closed)
    private.rpc("evm_setAutomine", False)
    with Session(db_engine, expire_on_commit=False) as session:
        job = jobs.create_job(session, "anchor_period", {"period_id": str(closed.period_id)}, None)
        session.commit()
    try:
        anchor_task.apply_async(
            kwargs={"period_id": str(closed.period_id), "job_id": job.id},
            task_id=job.id,
            queue=FAULT_QUEUE,
        )
        # The worker sent the publication and waits for its receipt; the node stops with the
        # transaction still in its mempool, which a restart does not keep.
        wait_for(
            lambda: load_settlement(db_engine, closed.period_id).publish_tx_hash is not None,
            "the publish transaction to be sent",
        )
        lost_tx = load_settlement(db_engine, closed.period_id).publish_tx_hash
        assert lost_tx is not None
        assert private.rpc("eth_getTransactionByHash", lost_tx)["blockNumber"] is None
        private.stop()
        assert not private.persisted(lost_tx)  # anvil does not keep its mempool

        # A clean, retryable failure: the job is running and says it waits for the chain.
        wait_for(
            lambda: job_row(db_engine, job.id).progress.get("step") == "waiting for the chain",
            "the job to wait for the chain",
        )
        waiting = job_row(db_engine, job.id)
        assert waiting.state == "running" and waiting.error is None, waiting
        assert_untouched_while_down(db_engine, closed, lost_tx)

        private.start()
        wait_for(
            lambda: job_row(db_engine, job.id).state in ("succeeded", "failed"),
            "the job to finish",
        )
        finished = job_row(db_engine, job.id)
        assert finished.state == "succeeded", finished
        assert finished.result is not None and finished.result["period_state"] == "anchored"
        assert_published_once(db_engine, private, closed)
    finally:
        if job_row(db_engine, job.id).state not in ("succeeded", "failed"):
            # Never leave a job for a later sweep to resume on the session's worker.
            jobs.mark(job.id, state="failed", error="abandoned by the fault test")


# --- the database connection drops mid-ingest -------------------------------------------------
#
# A real API server (uvicorn subprocess) ingests one large retrieval batch. A separate admin
# connection makes the server's transaction wait at a chosen point, after it has written
# rows: a row lock on a usage rollup the batch increments (the events are COPY-ed, the rollup
# upsert waits), or an uncommitted idempotency record with the request's key (events,
# rollups and quarantine rows are written, the last INSERT before the commit waits). Once
# pg_stat_activity shows the server's backend waiting on the admin, every backend of the
# server (application_name set through PGAPPNAME) is terminated with pg_terminate_backend.

INGEST_APP = "usefirst-fault-ingest"
INGEST_EVENTS = 20_000
SDK_EVENTS = 5_000
REJECT_EVERY = 100  # in the batch with rejects, every 100th event cites a train-only dataset
AT = datetime(2026, 6, 10, 8, 0, tzinfo=UTC)
PROBLEM = "application/problem+json"


@pytest.fixture(scope="module")
def ingest_server(database: Settings) -> Iterator[LiveServer]:
    """One uvicorn process for the module: each test also proves it survived the last."""
    with pytest.MonkeyPatch.context() as patched:
        # libpq reads PGAPPNAME: the server's connections are recognisable in pg_stat_activity.
        patched.setenv("PGAPPNAME", INGEST_APP)
        server = LiveServer().start()
    try:
        yield server
    finally:
        server.stop()


@dataclass
class Batch:
    team: Team
    events: list[dict[str, Any]]

    @property
    def model_id(self) -> uuid.UUID:
        return self.team.model_id

    def rejected(self) -> list[dict[str, Any]]:
        train_only = str(self.team.datasets[1])
        return [e for e in self.events if any(c["dataset_id"] == train_only for c in e["chunks"])]

    def accepted(self) -> list[dict[str, Any]]:
        rejected = {e["event_id"] for e in self.rejected()}
        return [e for e in self.events if e["event_id"] not in rejected]


def make_batch(
    principal: Make, engine: Engine, *, with_rejects: bool, count: int = INGEST_EVENTS
) -> Batch:
    """A model team, a dataset open to retrieval and a train-only one, one seed event (its
    rollup row is what the admin can lock) and ``count`` events of 1-3 chunks."""
    team = team_with_model(principal, engine, allowed_uses=(factories.BOTH, factories.TRAIN))
    rag, train_only = (str(d) for d in team.datasets)
    with Session(engine) as session:
        ingest_retrievals(session, team.model_id, [retrieval_event("seed", [rag])])
        session.commit()
    events = []
    for i in range(count):
        datasets = [rag] * (1 + i % 3)
        if with_rejects and i % REJECT_EVERY == 0:
            datasets[-1] = train_only
        events.append(retrieval_event(f"e{i:06d}-{uuid.uuid4().hex[:8]}", datasets, i))
    return Batch(team, events)


def retrieval_event(event_id: str, datasets: list[str], offset_s: int = 0) -> dict[str, Any]:
    return {
        "event_id": event_id,
        "query_id": f"q-{event_id}",
        "occurred_at": (AT + timedelta(seconds=offset_s)).isoformat(),
        "chunks": [
            {"dataset_id": d, "chunk_id": f"{event_id}-{rank}", "rank": rank}
            for rank, d in enumerate(datasets, start=1)
        ],
    }


@dataclass(frozen=True)
class Stored:
    """What the database holds for a model: the outcome the tests compare."""

    events: int
    distinct_event_ids: int
    rollups: dict[tuple[str, int, int], int]  # (dataset, list length, rank) → hits
    quarantined: list[tuple[str, str]]  # (event id, reason code)
    idempotency_records: int


def stored(engine: Engine, batch: Batch, key: str | None) -> Stored:
    params = {"m": batch.model_id, "a": batch.team.team.account_id, "k": key or ""}
    with Session(engine) as session:
        events, distinct = session.execute(
            text(
                "SELECT count(*), count(DISTINCT event_id) FROM usage_retrieval_event "
                "WHERE model_id = :m"
            ),
            params,
        ).one()
        rollups = session.execute(
            text(
                "SELECT dataset_id, list_length, rank, event_count FROM usage_rollup "
                "WHERE model_id = :m AND kind = 'rag'"
            ),
            params,
        ).all()
        quarantined = session.execute(
            text("SELECT event_id, reason_code FROM usage_quarantine WHERE model_id = :m"),
            params,
        ).all()
        records = session.execute(
            text("SELECT count(*) FROM idempotency_record WHERE account_id = :a AND key = :k"),
            params,
        ).scalar_one()
    return Stored(
        events=int(events),
        distinct_event_ids=int(distinct),
        rollups={(str(r.dataset_id), r.list_length, r.rank): int(r.event_count) for r in rollups},
        quarantined=sorted((str(q.event_id), str(q.reason_code)) for q in quarantined),
        idempotency_records=int(records),
    )


def expected_rollups(events: list[dict[str, Any]]) -> dict[tuple[str, int, int], int]:
    hits: Counter[tuple[str, int, int]] = Counter()
    for event in events:
        for chunk in event["chunks"]:
            hits[(chunk["dataset_id"], len(event["chunks"]), chunk["rank"])] += 1
    return dict(hits)


def seed_only(batch: Batch) -> Stored:
    """The state before the batch: the seed event and its rollup, nothing else."""
    return Stored(
        events=1,
        distinct_event_ids=1,
        rollups={(str(batch.team.datasets[0]), 1, 1): 1},
        quarantined=[],
        idempotency_records=0,
    )


def assert_counted_once(engine: Engine, batch: Batch, key: str | None) -> None:
    seed = retrieval_event("seed", [str(batch.team.datasets[0])])
    accepted = batch.accepted()
    assert stored(engine, batch, key) == Stored(
        events=1 + len(accepted),
        distinct_event_ids=1 + len(accepted),
        rollups=expected_rollups([seed, *accepted]),
        quarantined=sorted((e["event_id"], "use_not_allowed") for e in batch.rejected()),
        idempotency_records=0 if key is None else 1,
    )


class Admin:
    """Connections of the test's own: one holds the server at a point (a transaction left
    open), the other watches and cuts the server off (autocommit: statistics views are a
    snapshot per transaction)."""

    def __init__(self, engine: Engine) -> None:
        self.connection = engine.connect()
        self.pid = int(self.connection.execute(text("SELECT pg_backend_pid()")).scalar_one())
        self.monitor = engine.connect().execution_options(isolation_level="AUTOCOMMIT")

    def lock_rollup(self, batch: Batch) -> None:
        """Row-lock the seed's rollup row: the batch's rollup upsert waits for it."""
        locked = self.connection.execute(
            text(
                "SELECT 1 FROM usage_rollup WHERE model_id = :m AND kind = 'rag' "
                "AND dataset_id = :d AND list_length = 1 AND rank = 1 FOR UPDATE"
            ),
            {"m": batch.model_id, "d": batch.team.datasets[0]},
        ).all()
        assert len(locked) == 1

    def hold_idempotency_key(self, batch: Batch, key: str) -> None:
        """An uncommitted record with the request's key: the server's own INSERT of it, the
        last write before its commit, waits on the unique index."""
        self.connection.execute(
            text(
                "INSERT INTO idempotency_record (id, account_id, method, path, key, "
                "request_sha256, status_code, response_body) VALUES (gen_random_uuid(), :a, "
                "'POST', '/v1/usage/retrievals', :k, :h, 200, '{}'::jsonb)"
            ),
            {"a": batch.team.team.account_id, "k": key, "h": "0" * 64},
        )

    def statement_waiting_on_me(self) -> str | None:
        """The statement of the server's backend that waits for this admin, if any."""
        waiting = self.monitor.execute(
            text(
                "SELECT query FROM pg_stat_activity WHERE application_name = :app "
                "AND :me = ANY(pg_blocking_pids(pid))"
            ),
            {"app": INGEST_APP, "me": self.pid},
        ).first()
        return None if waiting is None else str(waiting.query)

    def terminate_server_connections(self) -> int:
        """pg_terminate_backend on every backend of the server, busy or pooled."""
        terminated = self.monitor.execute(
            text(
                "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE application_name = :app"
            ),
            {"app": INGEST_APP},
        ).scalar_one()
        return int(terminated)

    def release(self) -> None:
        """End the hold (the transaction rolls back) and close both connections."""
        self.connection.close()
        self.monitor.close()


def cut_off_mid_ingest(
    engine: Engine, hold: Callable[[Admin], None], waiting_in: str, send: Callable[[], T]
) -> T:
    """Run ``send`` in a thread; once the server's statement ``waiting_in`` waits on the
    admin's hold, terminate all of the server's database connections, release the hold, and
    return what ``send`` returned."""
    admin = Admin(engine)
    with ThreadPoolExecutor(max_workers=1) as pool:
        try:
            hold(admin)
            sending = pool.submit(send)
            wait_for(
                lambda: admin.statement_waiting_on_me() is not None or sending.done(),
                "the server to wait on the admin connection",
            )
            assert not sending.done(), "the request finished before it reached the hold"
            assert waiting_in in (admin.statement_waiting_on_me() or "")
            assert admin.terminate_server_connections() >= 1
        finally:
            # Before the pool waits for the request: a held request would wait forever.
            admin.release()
        return sending.result(timeout=WAIT_S)


def post_batch(server: LiveServer, batch: Batch, key: str) -> httpx.Response:
    return httpx.post(
        f"{server.url}/v1/usage/retrievals",
        params={"model_id": str(batch.model_id)},
        json=batch.events,
        headers={**batch.team.team.headers, "Idempotency-Key": key},
        timeout=WAIT_S,
    )


def assert_server_recovered(server: LiveServer, batch: Batch) -> None:
    """More parallel requests than the pool keeps connections: every one succeeds, so the
    pool replaced each connection the database had terminated."""

    def summary() -> int:
        return httpx.get(
            f"{server.url}/v1/usage/summary",
            params={"model_id": str(batch.model_id), "period": "2026-06"},
            headers=batch.team.team.headers,
            timeout=WAIT_S,
        ).status_code

    with ThreadPoolExecutor(max_workers=16) as pool:
        assert list(pool.map(lambda _: summary(), range(16))) == [200] * 16


@pytest.mark.parametrize(
    ("with_rejects", "hold_at"),
    [(False, "usage_rollup"), (True, "idempotency_record")],
    ids=["fast-path-cut-after-copy", "with-rejects-cut-before-commit"],
)
def test_a_connection_dropped_mid_ingest_fails_cleanly_and_the_retry_counts_once(
    ingest_server: LiveServer,
    principal: Make,
    db_engine: Engine,
    with_rejects: bool,
    hold_at: str,
) -> None:
    batch = make_batch(principal, db_engine, with_rejects=with_rejects)
    key = f"fault-{uuid.uuid4().hex}"

    def hold(admin: Admin) -> None:
        if hold_at == "usage_rollup":
            admin.lock_rollup(batch)
        else:
            admin.hold_idempotency_key(batch, key)

    failed = cut_off_mid_ingest(
        db_engine, hold, f"INSERT INTO {hold_at}", lambda: post_batch(ingest_server, batch, key)
    )

    # A clean, retryable 503 problem, and nothing of the batch is stored.
    assert failed.status_code == 503, failed.text[:500]
    assert failed.headers["content-type"].startswith(PROBLEM), failed.headers
    assert failed.headers["retry-after"] == "1"
    assert failed.json()["code"] == "database_unavailable"
    assert stored(db_engine, batch, key) == seed_only(batch)
    assert_server_recovered(ingest_server, batch)

    # The client retries with the same key and body: every event counts once.
    retried = post_batch(ingest_server, batch, key)
    assert retried.status_code == 200, retried.text[:500]
    assert "Idempotent-Replayed" not in retried.headers
    outcome = retried.json()
    assert outcome["accepted"] == len(batch.accepted())
    assert (
        outcome["rejected"]
        == len(batch.rejected())
        == (INGEST_EVENTS // REJECT_EVERY if with_rejects else 0)
    )
    assert outcome["duplicates"] == 0
    assert_counted_once(db_engine, batch, key)

    # Once more: the stored answer, and nothing changes.
    replayed = post_batch(ingest_server, batch, key)
    assert replayed.status_code == 200 and replayed.headers["Idempotent-Replayed"] == "true"
    assert replayed.json() == outcome
    assert_counted_once(db_engine, batch, key)


def test_the_sdk_retries_a_batch_whose_connection_dropped_and_it_counts_once(
    ingest_server: LiveServer, principal: Make, db_engine: Engine
) -> None:
    batch = make_batch(principal, db_engine, with_rejects=True, count=SDK_EVENTS)
    # The SDK sends usage without an Idempotency-Key by default: the event ids make its
    # automatic resend of a failed batch count once.
    with UsefirstClient(ingest_server.url, batch.team.team.key, retries=3) as client:
        result = cut_off_mid_ingest(
            db_engine,
            lambda admin: admin.lock_rollup(batch),
            "INSERT INTO usage_rollup",
            lambda: client.report_retrievals(batch.model_id, batch.events),
        )
    # The resend found nothing of the first attempt: every event is new, none a duplicate.
    assert result.accepted == len(batch.accepted())
    assert result.rejected == len(batch.rejected())
    assert result.duplicates == 0
    assert_counted_once(db_engine, batch, None)
