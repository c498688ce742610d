"""Properties of usage ingestion and of the journal, against the real PostgreSQL.

- Usage: however the same events are ordered, split into batches and replayed, the
  rollups are identical, and equal to rollups computed directly from the events.
- Journal (a state machine): every account's balance equals the sum of what was
  posted to it, balances sum to zero per currency, each idempotency key maps to
  exactly one transaction, and refused postings leave no trace.

Every example creates its own model, datasets and account codes, so examples never
see each other's rows.
"""

from __future__ import annotations

import secrets
import uuid
from collections import Counter
from dataclasses import dataclass
from itertools import pairwise
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    consumes,
    invariant,
    rule,
    run_state_machine_as_test,
)
from sqlalchemy import Engine, text
from sqlmodel import Session

from ledger.errors import Conflict, ValidationFailed
from ledger.journal import queries as journal_queries
from ledger.journal import service as journal
from ledger.usage import queries
from ledger.usage.service import ingest_retrievals, ingest_training
from tests.ledger import factories
from tests.ledger.factories import BOTH, RAG, TRAIN

PROPERTY_SETTINGS = settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)

# Dataset slots of an example: confirmed for both uses, train only, rag only, unknown.
SLOT_USES = (BOTH, TRAIN, RAG, None)


@dataclass(frozen=True)
class Training:
    slot: int
    quantity: int
    epochs: int
    month: int


@dataclass(frozen=True)
class Retrieval:
    slots: tuple[int, ...]  # by rank
    month: int


training_events = st.builds(
    Training,
    slot=st.integers(0, 3),
    quantity=st.integers(1, 10**9),
    epochs=st.integers(1, 5),
    month=st.integers(1, 3),
)
retrieval_events = st.builds(
    Retrieval,
    slots=st.lists(st.integers(0, 3), min_size=1, max_size=4).map(tuple),
    month=st.integers(1, 3),
)


@st.composite
def deliveries(draw: st.DrawFn, count: int) -> list[list[int]]:
    """One way to deliver events 0..count-1: some replayed, all shuffled, cut into batches."""
    replays = draw(st.lists(st.integers(0, count - 1), max_size=count)) if count else []
    stream = draw(st.permutations(list(range(count)) + replays))
    cuts = sorted(draw(st.sets(st.integers(1, max(len(stream) - 1, 1)), max_size=4)))
    bounds = [0, *[c for c in cuts if c < len(stream)], len(stream)]
    return [stream[a:b] for a, b in pairwise(bounds) if b > a]


def _fresh(db_engine: Engine) -> tuple[uuid.UUID, list[uuid.UUID]]:
    with Session(db_engine, expire_on_commit=False) as session:
        model = factories.make_model(session)
        datasets = [
            factories.make_dataset(session, allowed_uses=uses).id if uses else uuid.uuid4()
            for uses in SLOT_USES
        ]
        session.commit()
    return model.id, datasets


def _raw(event: Training | Retrieval, event_id: str, datasets: list[uuid.UUID]) -> dict[str, Any]:
    at = f"2026-0{event.month}-15T12:00:00Z"
    if isinstance(event, Training):
        return {
            "event_id": event_id,
            "run_id": "run",
            "dataset_id": str(datasets[event.slot]),
            "unit": "tokens",
            "quantity": event.quantity,
            "epochs": event.epochs,
            "occurred_at": at,
        }
    return {
        "event_id": event_id,
        "query_id": "q",
        "occurred_at": at,
        "chunks": [
            {"dataset_id": str(datasets[slot]), "chunk_id": f"c{rank}", "rank": rank}
            for rank, slot in enumerate(event.slots, start=1)
        ],
    }


def _deliver(
    db_engine: Engine,
    model_id: uuid.UUID,
    datasets: list[uuid.UUID],
    events: list[Training | Retrieval],
    batches: list[list[int]],
) -> None:
    for batch in batches:
        with Session(db_engine) as session:
            raws = [(events[i], _raw(events[i], f"e{i}", datasets)) for i in batch]
            ingest_training(session, model_id, [r for e, r in raws if isinstance(e, Training)])
            ingest_retrievals(session, model_id, [r for e, r in raws if isinstance(e, Retrieval)])
            session.commit()


def _rollups(db_engine: Engine, model_id: uuid.UUID) -> Counter[tuple[Any, ...]]:
    with Session(db_engine) as session:
        return Counter(
            {
                (r.period_key, r.dataset_id, r.kind, r.unit, r.list_length, r.rank): r.quantity
                for r in queries.rollups(session, model_id)
            }
        )


def _expected(events: list[Training | Retrieval], datasets: list[uuid.UUID]) -> Counter[Any]:
    """Rollups computed straight from the distinct events (the oracle)."""
    expected: Counter[tuple[Any, ...]] = Counter()
    for event in events:
        period = f"2026-0{event.month}"
        if isinstance(event, Training):
            uses = SLOT_USES[event.slot]
            if uses is not None and uses & TRAIN:
                key = (period, datasets[event.slot], "train", "tokens", 0, 0)
                expected[key] += event.quantity * event.epochs
        elif all((SLOT_USES[s] or 0) & RAG for s in event.slots):
            n = len(event.slots)
            for rank, slot in enumerate(event.slots, start=1):
                expected[(period, datasets[slot], "rag", "hits", n, rank)] += 1
    return expected


@PROPERTY_SETTINGS
@given(data=st.data())
def test_any_order_split_and_replay_gives_the_same_rollups(
    db_engine: Engine, data: st.DataObject
) -> None:
    events: list[Training | Retrieval] = data.draw(
        st.lists(st.one_of(training_events, retrieval_events), max_size=12), label="events"
    )
    first = data.draw(deliveries(len(events)), label="first delivery")
    second = data.draw(deliveries(len(events)), label="second delivery")

    model_a, datasets_a = _fresh(db_engine)
    model_b, datasets_b = _fresh(db_engine)
    _deliver(db_engine, model_a, datasets_a, events, first)
    _deliver(db_engine, model_b, datasets_b, events, second)

    # Compare under one naming of the datasets.
    rename = dict(zip(datasets_b, datasets_a, strict=True))
    rollups_a = _rollups(db_engine, model_a)
    rollups_b = Counter(
        {(k[0], rename[k[1]], *k[2:]): v for k, v in _rollups(db_engine, model_b).items()}
    )
    assert rollups_a == rollups_b == _expected(events, datasets_a)


# --- the journal as a state machine ------------------------------------------------------

ACCOUNTS = (
    ("cash", "asset"),
    ("receivable", "asset"),
    ("revenue", "income"),
    ("payable", "liability"),
)
CURRENCIES = ("EUR", "USD", "JPY")

# A posting: (debit account, credit account, amount, currency) transfers.
transfers = st.lists(
    st.tuples(
        st.integers(0, len(ACCOUNTS) - 1),
        st.integers(0, len(ACCOUNTS) - 1),
        st.integers(1, 10**12),
        st.sampled_from(CURRENCIES),
    ),
    min_size=1,
    max_size=4,
)


class JournalMachine(RuleBasedStateMachine):
    engine: Engine

    keys = Bundle("keys")

    def __init__(self) -> None:
        super().__init__()
        self.prefix = f"sm:{secrets.token_hex(6)}"
        self.expected: Counter[tuple[str, str]] = Counter()  # (code, currency) → balance
        self.posted: dict[str, tuple[list[tuple[str, str, int, str]], uuid.UUID]] = {}

    def _entries(self, moves: list[tuple[int, int, int, str]]) -> list[tuple[str, str, int, str]]:
        entries = []
        for debit_index, credit_index, amount, currency in moves:
            for index, signed in ((debit_index, amount), (credit_index, -amount)):
                name, kind = ACCOUNTS[index]
                entries.append((f"{self.prefix}:{name}", kind, signed, currency))
        return entries

    @rule(target=keys, moves=transfers)
    def post(self, moves: list[tuple[int, int, int, str]]) -> str:
        key = f"{self.prefix}:{len(self.posted)}"
        entries = self._entries(moves)
        with Session(self.engine, expire_on_commit=False) as session:
            tx = journal.post(
                session, key, "test", "state machine", entries, {"n": len(self.posted)}
            )
            session.commit()
            self.posted[key] = (entries, tx.id)
        for code, _, amount, currency in entries:
            self.expected[(code, currency)] += amount
        return key

    @rule(key=keys)
    def replay(self, key: str) -> None:
        entries, tx_id = self.posted[key]
        reference = {"n": list(self.posted).index(key)}
        with Session(self.engine, expire_on_commit=False) as session:
            again = journal.post(session, key, "test", "state machine", entries[::-1], reference)
            session.commit()
        assert again.id == tx_id

    @rule(key=consumes(keys), moves=transfers)
    def reuse_key_for_another_posting(
        self, key: str, moves: list[tuple[int, int, int, str]]
    ) -> None:
        entries, _ = self.posted[key]
        other = self._entries(moves)
        if sorted(other) == sorted(entries):
            other = [*other, *self._entries([(0, 1, 1, "EUR")])]
        reference = {"n": list(self.posted).index(key)}
        with Session(self.engine, expire_on_commit=False) as session, pytest.raises(Conflict):
            journal.post(session, key, "test", "state machine", other, reference)

    @rule(moves=transfers, skew=st.integers(1, 1_000))
    def unbalanced_is_refused(self, moves: list[tuple[int, int, int, str]], skew: int) -> None:
        entries = self._entries(moves)
        code, kind, amount, currency = entries[0]
        entries[0] = (code, kind, amount + skew, currency)
        with (
            Session(self.engine, expire_on_commit=False) as session,
            pytest.raises(ValidationFailed),
        ):
            journal.post(session, f"{self.prefix}:refused:{skew}", "test", "bad", entries)

    @invariant()
    def balances_follow_the_postings_and_sum_to_zero(self) -> None:
        with Session(self.engine, expire_on_commit=False) as session:
            trial = journal_queries.trial_balance(session, code_prefix=self.prefix)
        got = {(a.code, a.currency): a.balance_minor for a in trial.accounts}
        assert got == {k: v for k, v in self.expected.items() if (k in got or v != 0)}
        assert trial.is_balanced

    @invariant()
    def each_key_maps_to_exactly_one_transaction(self) -> None:
        with Session(self.engine, expire_on_commit=False) as session:
            rows = session.execute(
                text(
                    "SELECT idempotency_key, count(*) AS n, min(id::text) AS id "
                    "FROM journal_transaction WHERE idempotency_key LIKE :p GROUP BY 1"
                ),
                {"p": f"{self.prefix}:%"},
            ).all()
        assert {row.idempotency_key: (row.n, uuid.UUID(row.id)) for row in rows} == {
            key: (1, tx_id) for key, (_, tx_id) in self.posted.items()
        }


def test_journal_state_machine(db_engine: Engine) -> None:
    machine = type("BoundJournalMachine", (JournalMachine,), {"engine": db_engine})
    run_state_machine_as_test(
        machine,
        settings=settings(
            max_examples=25,
            stateful_step_count=12,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow],
        ),
    )
