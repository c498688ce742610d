"""The double-entry journal: balanced, idempotent, append-only, balances derived."""

from __future__ import annotations

import secrets
import uuid

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.exc import DBAPIError
from sqlmodel import Session

from ledger.errors import Conflict, ValidationFailed
from ledger.journal import queries
from ledger.journal import service as journal
from ledger.journal.service import credit, debit


def _prefix() -> str:
    return f"test:{secrets.token_hex(6)}"


def test_post_writes_balanced_entries_and_balances_follow(db_session: Session) -> None:
    p = _prefix()
    tx = journal.post(
        db_session,
        idempotency_key=f"{p}:1",
        kind="revenue_recognition",
        description="revenue",
        entries=[
            debit(f"{p}:cash", "asset", 1_000, "EUR"),
            credit(f"{p}:revenue", "income", 1_000, "EUR"),
        ],
        reference={"invoice": "A-1"},
    )
    assert tx.kind == "revenue_recognition"
    assert tx.reference == {"invoice": "A-1"}
    assert queries.transaction_entries(db_session, tx.id) == [
        (f"{p}:cash", "asset", 1_000, "EUR"),
        (f"{p}:revenue", "income", -1_000, "EUR"),
    ]
    assert queries.balance(db_session, f"{p}:cash", "EUR") == 1_000
    assert queries.balance(db_session, f"{p}:revenue", "EUR") == -1_000
    assert queries.balance(db_session, f"{p}:nothing", "EUR") == 0


def test_a_posting_may_span_currencies_when_each_balances(db_session: Session) -> None:
    p = _prefix()
    journal.post(
        db_session,
        f"{p}:fx",
        "fx_transfer",
        "two currencies",
        [
            (f"{p}:a", "asset", 5, "EUR"),
            (f"{p}:b", "asset", -5, "EUR"),
            (f"{p}:a", "asset", 7, "USD"),
            (f"{p}:b", "asset", -7, "USD"),
        ],
    )
    trial = queries.trial_balance(db_session, code_prefix=p)
    assert trial.totals_minor == {"EUR": 0, "USD": 0}
    assert trial.is_balanced
    assert {(a.code, a.currency): a.balance_minor for a in trial.accounts} == {
        (f"{p}:a", "EUR"): 5,
        (f"{p}:b", "EUR"): -5,
        (f"{p}:a", "USD"): 7,
        (f"{p}:b", "USD"): -7,
    }


def test_unbalanced_posting_is_refused_naming_currency_and_difference(db_session: Session) -> None:
    p = _prefix()
    with pytest.raises(ValidationFailed) as caught:
        journal.post(
            db_session,
            f"{p}:bad",
            "test",
            "unbalanced",
            [
                (f"{p}:a", "asset", 10, "EUR"),
                (f"{p}:b", "income", -7, "EUR"),
                (f"{p}:a", "asset", 3, "USD"),
                (f"{p}:b", "income", -3, "USD"),
            ],
        )
    assert caught.value.code == "unbalanced"
    assert "do not balance in EUR: debits minus credits = 3 minor units" in caught.value.message
    assert caught.value.details == {"imbalance_minor": {"EUR": 3}}
    assert queries.trial_balance(db_session, code_prefix=p).accounts == ()


@pytest.mark.parametrize(
    ("entries", "field", "fragment"),
    [
        (
            [("a", "asset", 0, "EUR"), ("b", "asset", 0, "EUR")],
            "entries/0/amount_minor",
            "non-zero",
        ),
        (
            [("a", "asset", 1.5, "EUR"), ("b", "asset", -1.5, "EUR")],
            "entries/0/amount_minor",
            "integer",
        ),
        (
            [("a", "asset", True, "EUR"), ("b", "asset", -1, "EUR")],
            "entries/0/amount_minor",
            "integer",
        ),
        (
            [("a", "cash", 1, "EUR"), ("b", "asset", -1, "EUR")],
            "entries/0/account_kind",
            "not one of",
        ),
        ([("a", "asset", 1, "eur"), ("b", "asset", -1, "eur")], "entries/0/currency", "ISO 4217"),
        (
            [("", "asset", 1, "EUR"), ("b", "asset", -1, "EUR")],
            "entries/0/account_code",
            "1 to 200",
        ),
        ([("a", "asset", 1, "EUR")], "entries", "at least two entries"),
        ([], "entries", "at least two entries"),
        (
            [("a", "asset", 1, "EUR"), ("a", "income", -1, "EUR")],
            "entries/1/account_kind",
            "as asset and as income",
        ),
        (
            [("a", "asset", 2**63, "EUR"), ("b", "asset", -(2**63), "EUR")],
            "entries/0/amount_minor",
            "|amount|",
        ),
        ([("a", "asset", 1)], "entries/0", "(account_code, account_kind, amount_minor, currency)"),
    ],
)
def test_malformed_entries_are_refused_with_the_field(
    db_session: Session, entries: list[tuple[object, ...]], field: str, fragment: str
) -> None:
    with pytest.raises(ValidationFailed) as caught:
        journal.post(db_session, f"{_prefix()}:k", "test", "malformed", entries)  # type: ignore[arg-type]
    first = caught.value.errors[0]
    assert first.field == field
    assert fragment in first.message


def test_key_kind_and_description_are_checked(db_session: Session) -> None:
    entries = [("a", "asset", 1, "EUR"), ("b", "asset", -1, "EUR")]
    with pytest.raises(ValidationFailed) as caught:
        journal.post(db_session, "", "Not Snake", " ", entries)
    assert [e.field for e in caught.value.errors] == ["idempotency_key", "kind", "description"]


def test_replay_returns_the_original_and_writes_nothing(db_session: Session) -> None:
    p = _prefix()
    entries = [(f"{p}:a", "asset", 4, "EUR"), (f"{p}:b", "liability", -4, "EUR")]
    first = journal.post(db_session, f"{p}:k", "test", "once", entries, {"n": 1})
    # Same lines in another order, same reference: the same request.
    again = journal.post(db_session, f"{p}:k", "test", "once", list(reversed(entries)), {"n": 1})
    assert again.id == first.id
    assert queries.balance(db_session, f"{p}:a", "EUR") == 4
    assert len(queries.transaction_entries(db_session, first.id)) == 2


@pytest.mark.parametrize(
    ("change", "differing"),
    [
        ({"description": "other"}, "description"),
        ({"kind": "other_kind"}, "kind"),
        ({"reference": {"n": 2}}, "reference"),
        ({"amount": 5}, "entries"),
    ],
)
def test_same_key_with_another_request_is_a_conflict_naming_what_differs(
    db_session: Session, change: dict[str, object], differing: str
) -> None:
    p = _prefix()
    journal.post(
        db_session,
        f"{p}:k",
        "test",
        "once",
        [(f"{p}:a", "asset", 4, "EUR"), (f"{p}:b", "asset", -4, "EUR")],
        {"n": 1},
    )
    amount = int(change.get("amount", 4))  # type: ignore[call-overload]
    with pytest.raises(Conflict) as caught:
        journal.post(
            db_session,
            f"{p}:k",
            str(change.get("kind", "test")),
            str(change.get("description", "once")),
            [(f"{p}:a", "asset", amount, "EUR"), (f"{p}:b", "asset", -amount, "EUR")],
            change.get("reference", {"n": 1}),  # type: ignore[arg-type]
        )
    assert caught.value.code == "idempotency_conflict"
    assert caught.value.details["differing_fields"] == [differing]
    assert f"differs in: {differing}" in caught.value.message


def test_an_account_keeps_its_kind(db_session: Session) -> None:
    p = _prefix()
    journal.post(
        db_session,
        f"{p}:1",
        "test",
        "x",
        [(f"{p}:a", "asset", 1, "EUR"), (f"{p}:b", "income", -1, "EUR")],
    )
    with pytest.raises(Conflict) as caught:
        journal.post(
            db_session,
            f"{p}:2",
            "test",
            "x",
            [(f"{p}:a", "expense", 1, "EUR"), (f"{p}:b", "income", -1, "EUR")],
        )
    assert caught.value.code == "account_kind_mismatch"
    assert f"account {p}:a (EUR) is a asset account, not expense" in caught.value.message


@pytest.mark.slow
def test_a_large_posting_goes_in_as_one_statement(db_session: Session) -> None:
    p = _prefix()
    lines = 50_000
    entries = [(f"{p}:payee:{i}", "liability", -(i + 1), "EUR") for i in range(lines)]
    entries.append((f"{p}:expense", "expense", sum(i + 1 for i in range(lines)), "EUR"))
    tx = journal.post(db_session, f"{p}:big", "royalty_accrual", "big", entries)
    db_session.commit()
    # Speed is measured in `make bench` (scripts/bench_close.py), never asserted here.
    assert len(queries.transaction_entries(db_session, tx.id)) == lines + 1
    assert queries.trial_balance(db_session, code_prefix=p).is_balanced


# --- the database enforces the invariants by itself ------------------------------------


def _raw_unbalanced(session: Session, p: str) -> uuid.UUID:
    account_id = session.execute(
        text(
            "INSERT INTO journal_account (id, code, kind, currency) "
            "VALUES (gen_random_uuid(), :code, 'asset', 'EUR') RETURNING id"
        ),
        {"code": f"{p}:raw"},
    ).scalar_one()
    tx_id = session.execute(
        text(
            "INSERT INTO journal_transaction (id, idempotency_key, request_hash, kind, "
            "description) VALUES (gen_random_uuid(), :key, repeat('0', 64), 'test', 'raw') "
            "RETURNING id"
        ),
        {"key": f"{p}:raw"},
    ).scalar_one()
    session.execute(
        text(
            "INSERT INTO journal_entry (transaction_id, account_id, amount_minor, currency) "
            "VALUES (:tx, :account, 100, 'EUR')"
        ),
        {"tx": tx_id, "account": account_id},
    )
    return uuid.UUID(str(tx_id))


def test_database_refuses_to_commit_an_unbalanced_transaction(db_engine: Engine) -> None:
    p = _prefix()
    with Session(db_engine, expire_on_commit=False) as session:
        _raw_unbalanced(session, p)
        with pytest.raises(DBAPIError, match="does not balance in EUR: debits minus credits = 100"):
            session.commit()


def _posted(db_engine: Engine) -> uuid.UUID:
    p = _prefix()
    with Session(db_engine, expire_on_commit=False) as session:
        tx = journal.post(
            session,
            f"{p}:k",
            "test",
            "x",
            [(f"{p}:a", "asset", 3, "EUR"), (f"{p}:b", "asset", -3, "EUR")],
        )
        session.commit()
        return tx.id


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE journal_entry SET amount_minor = amount_minor * 2 WHERE transaction_id = :tx",
        "DELETE FROM journal_entry WHERE transaction_id = :tx",
        "UPDATE journal_transaction SET description = 'edited' WHERE id = :tx",
        "DELETE FROM journal_transaction WHERE id = :tx",
        "TRUNCATE journal_entry CASCADE",
        "TRUNCATE journal_transaction CASCADE",
    ],
)
def test_database_refuses_to_mutate_the_journal(db_engine: Engine, statement: str) -> None:
    tx_id = _posted(db_engine)
    with Session(db_engine, expire_on_commit=False) as session:
        # TRUNCATE waits for every other user of the tables; fail fast instead.
        session.execute(text("SET LOCAL lock_timeout = '5s'"))
        with pytest.raises(DBAPIError, match="the journal is append-only"):
            session.execute(text(statement), {"tx": tx_id})
        session.rollback()
        count = session.execute(
            text("SELECT count(*) FROM journal_entry WHERE transaction_id = :tx"), {"tx": tx_id}
        ).scalar_one()
    assert count == 2
