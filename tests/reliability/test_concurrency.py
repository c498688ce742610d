"""Races between real processes: double close, duplicate batches, close vs ingestion.

Each contender is a separate Python process with its own database connection, so
the races are real (a test inside one transaction could never see them).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import Engine, text
from sqlmodel import Session

import attribution as attr
from ledger.periods import close as closing
from ledger.periods.models import Period
from ledger.revenue.service import record_revenue
from ledger.settings import Settings
from ledger.usage.service import ingest_retrievals
from tests.ledger.factories import make_dataset, make_model

OCT = datetime(2026, 10, 12, 8, 0, tzinfo=UTC)

INGEST_SCRIPT = """
import json, sys, uuid
from ledger.db import session_scope
from ledger.usage.service import ingest_retrievals
model_id, path = uuid.UUID(sys.argv[1]), sys.argv[2]
batches = json.load(open(path))
out = []
for batch in batches:
    try:
        with session_scope() as session:
            result = ingest_retrievals(session, model_id, batch)
        out.append([r.status + ":" + (r.code or "") for r in result.results])
    except Exception as exc:  # a serialisation failure would be retried by a client
        out.append(["error:" + type(exc).__name__] * len(batch))
print(json.dumps(out))
"""


def _start(args: list[str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=dict(os.environ),
    )


def _model_and_dataset(engine: Engine) -> tuple[uuid.UUID, uuid.UUID]:
    with Session(engine, expire_on_commit=False) as session:
        model = make_model(session)
        dataset = make_dataset(session)
        session.commit()
        return model.id, dataset.id


def _events(dataset_id: uuid.UUID, count: int) -> list[dict[str, object]]:
    return [
        {
            "event_id": uuid.uuid4().hex,
            "query_id": f"q{i}",
            "occurred_at": OCT.isoformat(),
            "chunks": [{"dataset_id": str(dataset_id), "chunk_id": f"c{i}", "rank": 1}],
        }
        for i in range(count)
    ]


def _period_id(engine: Engine, model_id: uuid.UUID) -> uuid.UUID:
    with Session(engine) as session:
        return session.execute(
            text("SELECT id FROM period WHERE model_id = :m AND key = '2026-10'"), {"m": model_id}
        ).scalar_one()


def test_two_processes_closing_one_period_produce_one_statement(
    db_engine: Engine, database: Settings
) -> None:
    model_id, dataset_id = _model_and_dataset(db_engine)
    with Session(db_engine) as session:
        ingest_retrievals(session, model_id, _events(dataset_id, 20))
        record_revenue(session, model_id, 99_999, "EUR", "inv", OCT)
        session.commit()
    period_id = _period_id(db_engine, model_id)
    procs = [
        _start(["-m", "api.cli", "period", "close", str(period_id), "--json"]) for _ in range(2)
    ]
    outputs = [p.communicate(timeout=120) for p in procs]
    for proc, (_, err) in zip(procs, outputs, strict=True):
        assert proc.returncode == 0, err
    results = [json.loads(out) for out, _ in outputs]
    assert results[0]["statement_hash"] == results[1]["statement_hash"]
    assert sorted(r["already_closed"] for r in results) == [False, True]
    with Session(db_engine) as session:
        accruals = session.execute(
            text(
                "SELECT count(*) FROM journal_transaction WHERE kind = 'royalty_accrual' "
                "AND reference->>'period_id' = :p"
            ),
            {"p": str(period_id)},
        ).scalar_one()
        lines = session.execute(
            text("SELECT count(*) FROM statement_line WHERE period_id = :p"), {"p": period_id}
        ).scalar_one()
    assert accruals == 1
    assert lines == 1


def test_the_same_batch_from_two_processes_counts_once(
    db_engine: Engine, database: Settings, tmp_path: Path
) -> None:
    model_id, dataset_id = _model_and_dataset(db_engine)
    batch = _events(dataset_id, 500)
    path = tmp_path / "batches.json"
    path.write_text(json.dumps([batch]))
    procs = [_start(["-c", INGEST_SCRIPT, str(model_id), str(path)]) for _ in range(2)]
    outputs = [p.communicate(timeout=120) for p in procs]
    statuses = []
    for proc, (out, err) in zip(procs, outputs, strict=True):
        assert proc.returncode == 0, err
        statuses.append(json.loads(out)[0])
    # Every event is accepted by exactly one process and a duplicate for the other.
    for a, b in zip(*statuses, strict=True):
        assert sorted([a, b]) == ["accepted:", "duplicate:"], (a, b)
    with Session(db_engine) as session:
        counted = session.execute(
            text(
                "SELECT COALESCE(sum(event_count), 0) FROM usage_rollup "
                "WHERE model_id = :m AND kind = 'rag'"
            ),
            {"m": model_id},
        ).scalar_one()
    assert counted == 500


def test_close_racing_late_ingestion_includes_or_rejects_each_event(
    db_engine: Engine, database: Settings, tmp_path: Path
) -> None:
    model_id, dataset_id = _model_and_dataset(db_engine)
    with Session(db_engine) as session:
        ingest_retrievals(session, model_id, _events(dataset_id, 5))
        record_revenue(session, model_id, 50_000, "EUR", "inv", OCT)
        session.commit()
    period_id = _period_id(db_engine, model_id)
    batches = [_events(dataset_id, 200) for _ in range(15)]
    path = tmp_path / "late.json"
    path.write_text(json.dumps(batches))
    ingester = _start(["-c", INGEST_SCRIPT, str(model_id), str(path)])
    closer = _start(["-m", "api.cli", "period", "close", str(period_id), "--json"])
    _, closed_err = closer.communicate(timeout=180)
    ingest_out, ingest_err = ingester.communicate(timeout=180)
    assert closer.returncode == 0, closed_err
    assert ingester.returncode == 0, ingest_err
    statuses = [s for batch in json.loads(ingest_out) for s in batch]
    accepted = sum(1 for s in statuses if s == "accepted:")
    rejected_closed = sum(1 for s in statuses if s == "rejected:period_not_open")
    assert accepted + rejected_closed == len(statuses), set(statuses)
    with Session(db_engine) as session:
        counted = session.execute(
            text(
                "SELECT COALESCE(sum(event_count), 0) FROM usage_rollup "
                "WHERE model_id = :m AND kind = 'rag'"
            ),
            {"m": model_id},
        ).scalar_one()
        # Every accepted event is in the rollups the statement was computed from:
        # recomputing the statement now gives the stored bytes exactly.
        period = session.get(Period, period_id)
        assert period is not None and period.state == "closed"
        agreement = closing.agreement_for_period(session, period)
        recomputed = attr.compute_statement(closing.build_period_input(session, period, agreement))
        stored = closing.statement_bytes(session, period)
    assert counted == 5 + accepted
    assert attr.canonical_json(recomputed) == stored
