"""Period close against the real database: the statement, its journal, idempotency,
late events, carry-forward and adjustments, and `usefirst explain`."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from sqlalchemy import Engine, func, select, text
from sqlmodel import Session, col

import attribution as attr
from ledger.errors import StateError
from ledger.journal.models import JournalTransaction
from ledger.periods import close as closing
from ledger.periods.models import Period, PeriodAdjustment, StatementLine
from ledger.revenue.service import record_revenue
from ledger.settings import Settings
from ledger.usage.service import ingest_retrievals, ingest_training
from tests.ledger.factories import make_agreement, make_dataset, make_model

OCT = datetime(2026, 10, 10, 12, 0, tzinfo=UTC)
SEP = datetime(2026, 9, 10, 12, 0, tzinfo=UTC)


@pytest.fixture
def session(db_engine: Engine) -> Iterator[Session]:
    with Session(db_engine, expire_on_commit=False) as s:
        yield s


def _training(
    dataset_id: uuid.UUID, quantity: int, at: datetime, epochs: int = 1
) -> dict[str, object]:
    return {
        "event_id": uuid.uuid4().hex,
        "run_id": "run-1",
        "dataset_id": str(dataset_id),
        "unit": "tokens",
        "quantity": quantity,
        "epochs": epochs,
        "occurred_at": at.isoformat(),
    }


def _retrieval(chunks: list[uuid.UUID], at: datetime) -> dict[str, object]:
    return {
        "event_id": uuid.uuid4().hex,
        "query_id": uuid.uuid4().hex,
        "occurred_at": at.isoformat(),
        "chunks": [
            {"dataset_id": str(d), "chunk_id": f"c{rank}", "rank": rank}
            for rank, d in enumerate(chunks, start=1)
        ],
    }


def _owners(session: Session, dataset_id: uuid.UUID) -> list[tuple[str, int]]:
    rows = session.execute(
        text(
            "SELECT address, share_bps FROM dataset_co_owner WHERE dataset_id = :d "
            "ORDER BY share_bps DESC, address"
        ),
        {"d": dataset_id},
    ).all()
    return [(r.address, r.share_bps) for r in rows]


def _period(session: Session, model_id: uuid.UUID, key: str) -> Period:
    return session.execute(
        select(Period).where(col(Period.model_id) == model_id, col(Period.key) == key)
    ).scalar_one()


def _lines(session: Session, period_id: uuid.UUID) -> dict[str, StatementLine]:
    rows = session.execute(
        select(StatementLine).where(col(StatementLine.period_id) == period_id)
    ).scalars()
    return {line.address: line for line in rows}


def _balance(session: Session, code: str) -> int:
    return int(
        session.execute(
            text(
                "SELECT COALESCE(sum(e.amount_minor), 0) FROM journal_entry e "
                "JOIN journal_account a ON a.id = e.account_id WHERE a.code = :code"
            ),
            {"code": code},
        ).scalar_one()
    )


def _two_co_owned_model(session: Session) -> tuple[uuid.UUID, uuid.UUID, uuid.UUID, uuid.UUID]:
    """A model (10 % royalty, 30 % to training) and datasets A (60/40), B and C."""
    model = make_model(session, agreement=False)
    make_agreement(session, model.id, royalty_rate_bps=1_000, training_share_bps=3_000)
    a = make_dataset(session, co_owners=2)
    session.execute(
        text(
            "UPDATE dataset_co_owner SET share_bps = CASE WHEN address = "
            "(SELECT min(address) FROM dataset_co_owner WHERE dataset_id = :d) "
            "THEN 6000 ELSE 4000 END WHERE dataset_id = :d"
        ),
        {"d": a.id},
    )
    b = make_dataset(session)
    c = make_dataset(session)
    session.commit()
    return model.id, a.id, b.id, c.id


def test_hand_computed_statement_and_its_journal(session: Session) -> None:
    model_id, a, b, c = _two_co_owned_model(session)
    assert ingest_training(session, model_id, [_training(a, 1_000, OCT)]).accepted == 1
    queries = [_retrieval([b, c], OCT), _retrieval([b], OCT)]
    assert ingest_retrievals(session, model_id, queries).accepted == 2
    record_revenue(session, model_id, 100_000, "EUR", "invoice-1", OCT)
    session.commit()

    period = _period(session, model_id, "2026-10")
    outcome = closing.close_period(session, period.id)
    session.commit()

    # Pool 10 % of 100,000 = 10,000; training 3,000 to A (60/40); retrieval 7,000:
    # uniform credits B = 1/2 + 1 = 3/2, C = 1/2 → B 5,250, C 1,750.
    (a_major, _), (a_minor, _) = _owners(session, a)
    expected = {
        a_major: 1_800,
        a_minor: 1_200,
        _owners(session, b)[0][0]: 5_250,
        _owners(session, c)[0][0]: 1_750,
    }
    lines = _lines(session, period.id)
    assert {addr: line.accrued_minor for addr, line in lines.items()} == expected
    assert sum(line.payable_minor for line in lines.values()) == 10_000 == outcome.pool_minor
    assert outcome.state == "closed"
    # The journal mirrors the statement: expense = pool, each payee's payable = its line.
    assert _balance(session, f"model:{model_id}:royalty_expense") == 10_000
    for address, amount in expected.items():
        assert _balance(session, f"payee:{address}:royalty_payable") == -amount
        assert _balance(session, f"payee:{address}:royalty_accrued") == 0
    # The stored bytes are the canonical statement; they hash to the recorded hash.
    stored = closing.load_statement(session, session.get(Period, period.id))  # type: ignore[arg-type]
    assert attr.statement_hash(stored) == outcome.statement_hash
    attr.check_statement(stored)


def test_closing_twice_is_a_no_op(session: Session) -> None:
    model_id, a, b, _ = _two_co_owned_model(session)
    ingest_retrievals(session, model_id, [_retrieval([a, b], OCT)])
    record_revenue(session, model_id, 55_555, "EUR", "inv", OCT)
    session.commit()
    period = _period(session, model_id, "2026-10")
    first = closing.close_period(session, period.id)
    session.commit()
    transactions_before = session.execute(
        select(func.count()).select_from(JournalTransaction)
    ).scalar_one()
    second = closing.close_period(session, period.id)
    session.commit()
    transactions_after = session.execute(
        select(func.count()).select_from(JournalTransaction)
    ).scalar_one()
    assert second.already_closed and not first.already_closed
    assert second.statement_hash == first.statement_hash
    assert transactions_after == transactions_before


def test_events_for_a_closed_period_are_rejected(session: Session) -> None:
    model_id, a, b, _ = _two_co_owned_model(session)
    ingest_retrievals(session, model_id, [_retrieval([a], OCT)])
    record_revenue(session, model_id, 1_000, "EUR", "inv", OCT)
    session.commit()
    period = _period(session, model_id, "2026-10")
    closing.close_period(session, period.id)
    session.commit()

    late = ingest_retrievals(session, model_id, [_retrieval([b], OCT)])
    session.commit()
    assert late.results[0].status == "rejected"
    assert late.results[0].code == "period_not_open"
    with pytest.raises(StateError):
        record_revenue(session, model_id, 1_000, "EUR", "late-invoice", OCT)
    session.rollback()
    # The statement did not change.
    assert sum(line.accrued_minor for line in _lines(session, period.id).values()) == 100


def test_zero_revenue_owes_nothing(session: Session) -> None:
    model_id, a, _, _ = _two_co_owned_model(session)
    ingest_training(session, model_id, [_training(a, 5_000, OCT)])
    session.commit()
    period = _period(session, model_id, "2026-10")
    outcome = closing.close_period(session, period.id)
    session.commit()
    assert outcome.pool_minor == 0
    assert outcome.payable_total_minor == 0
    assert outcome.no_accrual_reason
    assert _balance(session, f"model:{model_id}:royalty_expense") == 0


def test_periods_close_in_order(session: Session) -> None:
    model_id, a, _, _ = _two_co_owned_model(session)
    ingest_training(session, model_id, [_training(a, 10, SEP), _training(a, 10, OCT)])
    session.commit()
    october = _period(session, model_id, "2026-10")
    with pytest.raises(StateError) as raised:
        closing.close_period(session, october.id)
    assert raised.value.code == "earlier_period_open"
    session.rollback()


def test_min_payout_carries_forward_and_adjustment_flows_into_next_statement(
    session: Session,
) -> None:
    model = make_model(session, agreement=False)
    make_agreement(
        session, model.id, royalty_rate_bps=1_000, training_share_bps=10_000, min_payout_minor=500
    )
    dataset = make_dataset(session)
    owner = _owners(session, dataset.id)[0][0]
    session.commit()
    ingest_training(session, model.id, [_training(dataset.id, 7, SEP)])
    record_revenue(session, model.id, 3_000, "EUR", "sep", SEP)  # pool 300 < 500: carried
    session.commit()
    september = _period(session, model.id, "2026-09")
    first = closing.close_period(session, september.id)
    session.commit()
    assert first.payable_total_minor == 0
    assert _lines(session, september.id)[owner].carried_forward_minor == 300
    assert _balance(session, f"payee:{owner}:royalty_accrued") == -300

    record_revenue(session, model.id, 2_500, "EUR", "oct", OCT)  # pool 250; 300 + 250 − 40 = 510
    session.commit()
    october = _period(session, model.id, "2026-10")
    session.add(
        PeriodAdjustment(
            period_id=october.id,
            corrects_period_id=september.id,
            address=owner,
            amount_minor=-40,
            reason="September usage over-declared by the model team",
            reference="adj-1",
        )
    )
    session.commit()
    second = closing.close_period(session, october.id)
    session.commit()
    line = _lines(session, october.id)[owner]
    assert (line.carry_in_minor, line.accrued_minor, line.adjustment_minor) == (300, 250, -40)
    assert line.payable_minor == 510 == second.payable_total_minor
    assert _balance(session, f"payee:{owner}:royalty_accrued") == 0
    assert _balance(session, f"payee:{owner}:royalty_payable") == -510


def test_explain_prints_the_derivation(session: Session, database: Settings) -> None:
    model_id, _, b, _ = _two_co_owned_model(session)
    ingest_retrievals(session, model_id, [_retrieval([b], OCT)])
    record_revenue(session, model_id, 10_000, "EUR", "inv", OCT)
    session.commit()
    period = _period(session, model_id, "2026-10")
    closing.close_period(session, period.id)
    session.commit()
    payee = _owners(session, b)[0][0]
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "api.cli",
            "explain",
            "--period",
            str(period.id),
            "--payee",
            payee.lower(),
        ],
        capture_output=True,
        text=True,
        env=dict(os.environ),
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "10000" in result.stdout.replace(",", "").replace("_", "")
    assert payee in result.stdout
    missing = subprocess.run(
        [
            sys.executable,
            "-m",
            "api.cli",
            "explain",
            "--period",
            str(period.id),
            "--payee",
            "0x" + "ab" * 20,
        ],
        capture_output=True,
        text=True,
        env=dict(os.environ),
        timeout=120,
    )
    assert missing.returncode == 2
    assert "no line" in missing.stderr
