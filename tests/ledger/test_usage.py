"""Usage ingestion: every rule with its code, message and field; idempotency; quarantine;
atomicity; concurrency. Against the real PostgreSQL."""

from __future__ import annotations

import functools
import itertools
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.exc import DBAPIError
from sqlmodel import Session

from ledger.errors import NotFound, PayloadTooLarge
from ledger.types import CHUNKS_PER_RETRIEVAL_MAX, EPOCHS_MAX, QUANTITY_MAX
from ledger.usage import ingest, queries
from ledger.usage.schemas import BATCH_EVENTS_MAX, DuplicateKeys, IngestResult
from ledger.usage.service import ingest_retrievals, ingest_training
from tests.ledger import factories
from tests.ledger.factories import BOTH, RAG, TRAIN

AT = "2026-03-10T12:00:00Z"
AT_DT = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)
_ids = itertools.count()


def _event_id() -> str:
    return f"ev-{uuid.uuid4().hex[:8]}-{next(_ids)}"


def train(dataset_id: Any, **fields: Any) -> dict[str, Any]:
    return {
        "event_id": _event_id(),
        "run_id": "run-1",
        "dataset_id": str(dataset_id),
        "unit": "tokens",
        "quantity": 1_000,
        "epochs": 2,
        "occurred_at": AT,
    } | fields


def chunk(dataset_id: Any, rank: int, **fields: Any) -> dict[str, Any]:
    return {"dataset_id": str(dataset_id), "chunk_id": f"chunk-{rank}", "rank": rank} | fields


def retrieval(*dataset_ids: Any, **fields: Any) -> dict[str, Any]:
    return {
        "event_id": _event_id(),
        "query_id": "query-1",
        "occurred_at": AT,
        "chunks": [chunk(d, rank) for rank, d in enumerate(dataset_ids, start=1)],
    } | fields


def only(result: IngestResult) -> tuple[str, str | None, str | None, str | None]:
    assert len(result.results) == 1
    r = result.results[0]
    return r.status, r.code, r.field, r.message


def table_counts(session: Session, model_id: uuid.UUID) -> dict[str, Any]:
    """Everything ingestion writes for a model, for before/after comparisons."""
    counts: dict[str, Any] = {}
    for name, sql in {
        "training": "SELECT count(*) FROM usage_training_event WHERE model_id = :m",
        "retrieval": "SELECT count(*) FROM usage_retrieval_event WHERE model_id = :m",
        "chunks": "SELECT coalesce(sum(cardinality(dataset_ids)), 0) "
        "FROM usage_retrieval_event WHERE model_id = :m",
        "quarantine": "SELECT count(*) FROM usage_quarantine WHERE model_id = :m",
    }.items():
        counts[name] = session.execute(text(sql), {"m": model_id}).scalar_one()
    counts["rollups"] = queries.rollups(session, model_id)
    return counts


@pytest.fixture
def setup(db_session: Session) -> Iterator[tuple[Session, uuid.UUID, uuid.UUID]]:
    """A model with an agreement (tokens) and a dataset confirmed for both uses."""
    model = factories.make_model(db_session)
    dataset = factories.make_dataset(db_session, allowed_uses=BOTH)
    yield db_session, model.id, dataset.id


# --- accepted events and rollups -------------------------------------------------------


def test_training_events_are_stored_and_rolled_up(setup: tuple[Session, Any, Any]) -> None:
    session, model_id, dataset_id = setup
    result = ingest_training(
        session,
        model_id,
        [
            train(dataset_id, quantity=1_000, epochs=2),
            train(dataset_id, quantity=500, epochs=3, occurred_at=AT_DT),
        ],
    )
    assert [r.status for r in result.results] == ["accepted", "accepted"]
    assert (result.accepted, result.duplicates, result.rejected) == (2, 0, 0)
    [rollup] = queries.rollups(session, model_id)
    assert (rollup.period_key, rollup.kind, rollup.unit) == ("2026-03", "train", "tokens")
    assert (rollup.list_length, rollup.rank) == (0, 0)
    assert (rollup.quantity, rollup.event_count) == (3_500, 2)


def test_retrieval_events_are_counted_per_list_length_and_rank(
    setup: tuple[Session, Any, Any],
) -> None:
    session, model_id, d1 = setup
    d2 = factories.make_dataset(session, allowed_uses=RAG).id
    event = retrieval(d1, d2, d1)
    event["chunks"][0]["score"] = 0.9
    event["chunks"][1]["score"] = 1  # an int score is a number too
    result = ingest_retrievals(session, model_id, [event, retrieval(d2)])
    assert result.accepted == 2
    got = {
        (r.dataset_id, r.list_length, r.rank): (r.quantity, r.event_count)
        for r in queries.rollups(session, model_id)
    }
    assert got == {
        (d1, 3, 1): (1, 1),
        (d2, 3, 2): (1, 1),
        (d1, 3, 3): (1, 1),
        (d2, 1, 1): (1, 1),
    }
    stored = session.execute(
        text(
            "SELECT c.rank, c.dataset_id, e.chunk_ids[c.rank], e.chunk_scores[c.rank] "
            "FROM usage_retrieval_event e, "
            "unnest(e.dataset_ids) WITH ORDINALITY c(dataset_id, rank) "
            "WHERE e.model_id = :m AND e.event_id = :e ORDER BY c.rank"
        ),
        {"m": model_id, "e": event["event_id"]},
    ).all()
    assert [tuple(row) for row in stored] == [
        (1, d1, "chunk-1", 0.9),
        (2, d2, "chunk-2", 1.0),
        (3, d1, "chunk-3", None),
    ]


def test_chunks_may_come_in_any_order(setup: tuple[Session, Any, Any]) -> None:
    session, model_id, dataset_id = setup
    event = retrieval(dataset_id, dataset_id, dataset_id)
    event["chunks"].reverse()
    assert only(ingest_retrievals(session, model_id, [event]))[0] == "accepted"


def test_events_in_two_months_land_in_two_periods(setup: tuple[Session, Any, Any]) -> None:
    session, model_id, dataset_id = setup
    ingest_training(
        session,
        model_id,
        [
            train(dataset_id, occurred_at="2026-03-31T23:30:00-02:00"),  # April in UTC
            train(dataset_id, occurred_at="2026-03-01T00:00:00Z"),
        ],
    )
    assert [r.period_key for r in queries.rollups(session, model_id)] == ["2026-03", "2026-04"]


def test_uppercase_dataset_ids_are_the_same_dataset(setup: tuple[Session, Any, Any]) -> None:
    session, model_id, dataset_id = setup
    ingest_training(session, model_id, [train(str(dataset_id).upper())])
    [rollup] = queries.rollups(session, model_id)
    assert rollup.dataset_id == dataset_id


def _stored_retrievals(session: Session, model_id: uuid.UUID) -> list[tuple[Any, ...]]:
    rows = session.execute(
        text(
            "SELECT event_id, query_id, occurred_at, chunk_count, dataset_ids, chunk_ids, "
            "chunk_scores FROM usage_retrieval_event WHERE model_id = :m ORDER BY event_id"
        ),
        {"m": model_id},
    ).all()
    return [tuple(row) for row in rows]


def test_the_fast_and_the_staged_path_store_the_same_rows(db_session: Session) -> None:
    """A clean batch is COPY-ed straight into the table; a batch with one bad event goes
    through staging. Both store the same rows and rollups for the good events."""
    fast_model, staged_model = factories.make_model(db_session), factories.make_model(db_session)
    d1, d2 = (factories.make_dataset(db_session).id for _ in range(2))
    some_scores = retrieval(d1, d2, d1)
    some_scores["chunks"][1]["score"] = 0.25
    no_scores = retrieval(d2, d1)
    for c in no_scores["chunks"]:
        c.pop("score", None)
    reordered = retrieval(d1, d2)
    reordered["chunks"].reverse()
    scored = retrieval(d2, d1, occurred_at="2026-04-01T01:00:00+02:00")  # March in UTC
    for rank, c in enumerate(scored["chunks"], start=1):
        c["score"] = 1.0 / rank
    next_month = retrieval(d1, occurred_at="2026-04-01T09:00:00Z", query_id='q\\x"y')
    good = [some_scores, no_scores, reordered, scored, next_month]

    fast = ingest_retrievals(db_session, fast_model.id, good)
    staged = ingest_retrievals(db_session, staged_model.id, [*good, retrieval(uuid.uuid4())])
    assert [r.status for r in fast.results] == ["accepted"] * 5
    assert [r.status for r in staged.results] == ["accepted"] * 5 + ["rejected"]
    rows = _stored_retrievals(db_session, fast_model.id)
    assert rows == _stored_retrievals(db_session, staged_model.id)
    by_id = {row[0]: row for row in rows}
    assert by_id[some_scores["event_id"]][6] == [None, 0.25, None]
    assert by_id[no_scores["event_id"]][6] is None
    assert by_id[reordered["event_id"]][4] == [d1, d2]  # rank order
    assert by_id[next_month["event_id"]][1] == 'q\\x"y'
    strip = [
        (r.period_key, r.dataset_id, r.list_length, r.rank, r.quantity)
        for r in queries.rollups(db_session, fast_model.id)
    ]
    assert strip == [
        (r.period_key, r.dataset_id, r.list_length, r.rank, r.quantity)
        for r in queries.rollups(db_session, staged_model.id)
    ]
    assert {r[0] for r in strip} == {"2026-03", "2026-04"}


def test_a_repeated_key_rejects_the_event(setup: tuple[Session, Any, Any]) -> None:
    session, model_id, dataset_id = setup
    event = DuplicateKeys(train(dataset_id))
    event.duplicate_key = "quantity"
    assert only(ingest_training(session, model_id, [event]))[:3] == (
        "rejected",
        "duplicate_key",
        "quantity",
    )
    event = retrieval(dataset_id, dataset_id)
    event["chunks"][1] = DuplicateKeys(event["chunks"][1])
    event["chunks"][1].duplicate_key = "rank"
    assert only(ingest_retrievals(session, model_id, [event]))[:3] == (
        "rejected",
        "duplicate_key",
        "chunks/1/rank",
    )


# --- shape validation ------------------------------------------------------------------

SHAPE_TRAINING = [
    ({"quantity": 0}, "quantity_out_of_range", "quantity", "positive integer ≤"),
    ({"quantity": -5}, "quantity_out_of_range", "quantity", "got -5"),
    ({"quantity": QUANTITY_MAX + 1}, "quantity_out_of_range", "quantity", str(QUANTITY_MAX)),
    ({"quantity": 1.5}, "invalid_type", "quantity", "must be an integer"),
    ({"quantity": True}, "invalid_type", "quantity", "must be an integer"),
    ({"quantity": "10"}, "invalid_type", "quantity", "must be an integer"),
    ({"epochs": 0}, "epochs_out_of_range", "epochs", "positive integer"),
    ({"epochs": EPOCHS_MAX + 1}, "epochs_out_of_range", "epochs", str(EPOCHS_MAX)),
    ({"unit": "words"}, "invalid_unit", "unit", "tokens, samples, bytes"),
    ({"occurred_at": "2026-03-10T12:00:00"}, "naive_datetime", "occurred_at", "has no time zone"),
    ({"occurred_at": datetime(2026, 3, 10)}, "naive_datetime", "occurred_at", "add an offset"),
    ({"occurred_at": "yesterday"}, "invalid_datetime", "occurred_at", "ISO 8601"),
    ({"occurred_at": 1_700_000_000}, "invalid_type", "occurred_at", "ISO 8601"),
    ({"event_id": ""}, "invalid_value", "event_id", "1 to 200 printable"),
    ({"event_id": "x" * 201}, "invalid_value", "event_id", "1 to 200"),
    ({"event_id": "a\x00b"}, "invalid_value", "event_id", "printable"),
    ({"event_id": 7}, "invalid_value", "event_id", "got 7"),
    ({"run_id": None}, "invalid_value", "run_id", "got None"),
    ({"dataset_id": "not-a-uuid"}, "invalid_value", "dataset_id", "dataset UUID"),
    ({"epoch": 1}, "unknown_field", "epoch", "allowed fields are"),
]


@pytest.mark.parametrize(("change", "code", "field", "fragment"), SHAPE_TRAINING)
def test_malformed_training_events_are_rejected_with_field(
    setup: tuple[Session, Any, Any], change: dict[str, Any], code: str, field: str, fragment: str
) -> None:
    session, model_id, dataset_id = setup
    status, got_code, got_field, message = only(
        ingest_training(session, model_id, [train(dataset_id) | change])
    )
    assert (status, got_code, got_field) == ("rejected", code, field)
    assert message is not None and fragment in message


@pytest.mark.parametrize(
    "missing", ["event_id", "run_id", "dataset_id", "unit", "quantity", "epochs", "occurred_at"]
)
def test_each_training_field_is_required(setup: tuple[Session, Any, Any], missing: str) -> None:
    session, model_id, dataset_id = setup
    event = train(dataset_id)
    del event[missing]
    assert only(ingest_training(session, model_id, [event])) == (
        "rejected",
        "missing_field",
        missing,
        f"{missing} is required",
    )


def _with_chunks(dataset_id: Any, ranks: list[Any]) -> dict[str, Any]:
    event = retrieval()
    event["chunks"] = [chunk(dataset_id, 1) | {"rank": rank} for rank in ranks]
    return event


SHAPE_RETRIEVAL = [
    (lambda d: _with_chunks(d, [0]), "rank_out_of_range", "chunks/0/rank", "ranks start at 1"),
    (lambda d: _with_chunks(d, [1, 2, 4]), "rank_gap", "chunks/2/rank", "ranks 1..3 without gaps"),
    (lambda d: _with_chunks(d, [2, 3]), "rank_gap", "chunks/1/rank", "got rank 3"),
    (
        lambda d: _with_chunks(d, [1, 2, 2]),
        "rank_duplicate",
        "chunks/2/rank",
        "rank 2 appears twice",
    ),
    (lambda d: _with_chunks(d, [1, "2"]), "invalid_type", "chunks/1/rank", "must be an integer"),
    (lambda d: _with_chunks(d, [1.0]), "invalid_type", "chunks/0/rank", "must be an integer"),
    (lambda d: _with_chunks(d, []), "no_chunks", "chunks", f"1 to {CHUNKS_PER_RETRIEVAL_MAX}"),
    (
        lambda d: _with_chunks(d, list(range(1, CHUNKS_PER_RETRIEVAL_MAX + 2))),
        "too_many_chunks",
        "chunks",
        f"got {CHUNKS_PER_RETRIEVAL_MAX + 1}",
    ),
    (lambda d: retrieval(d) | {"chunks": "x"}, "invalid_type", "chunks", "list of objects"),
    (lambda d: retrieval(d) | {"chunks": [7]}, "invalid_type", "chunks/0", "must be an object"),
    (
        lambda d: {k: v for k, v in retrieval(d).items() if k != "chunks"},
        "missing_field",
        "chunks",
        "required",
    ),
    (
        lambda d: retrieval(d, d) | {"occurred_at": "2026-03-10 12:00"},
        "naive_datetime",
        "occurred_at",
        "no time zone",
    ),
    (lambda d: retrieval(d) | {"query_id": ""}, "invalid_value", "query_id", "printable"),
    (lambda d: retrieval(d) | {"extra": 1}, "unknown_field", "extra", "allowed fields"),
    (
        lambda d: retrieval(d) | {"chunks": [chunk(d, 1, scroe=1.0)]},
        "unknown_field",
        "chunks/0/scroe",
        "allowed fields",
    ),
    (
        lambda d: retrieval(d) | {"chunks": [chunk(d, 1, score="high")]},
        "invalid_type",
        "chunks/0/score",
        "number",
    ),
    (
        lambda d: retrieval(d) | {"chunks": [chunk(d, 1, score=float("nan"))]},
        "invalid_value",
        "chunks/0/score",
        "finite",
    ),
    (
        lambda d: retrieval(d) | {"chunks": [chunk("nope", 1)]},
        "invalid_value",
        "chunks/0/dataset_id",
        "dataset UUID",
    ),
    (
        lambda d: retrieval(d) | {"chunks": [chunk(d, 1) | {"chunk_id": ""}]},
        "invalid_value",
        "chunks/0/chunk_id",
        "printable",
    ),
    (lambda d: "not an object", "invalid_type", "", "JSON object"),
]


@pytest.mark.parametrize(("build", "code", "field", "fragment"), SHAPE_RETRIEVAL)
def test_malformed_retrieval_events_are_rejected_with_field(
    setup: tuple[Session, Any, Any], build: Any, code: str, field: str, fragment: str
) -> None:
    session, model_id, dataset_id = setup
    status, got_code, got_field, message = only(
        ingest_retrievals(session, model_id, [build(dataset_id)])
    )
    assert (status, got_code, got_field) == ("rejected", code, field)
    assert message is not None and fragment in message
    assert table_counts(session, model_id)["quarantine"] == 1


def test_the_largest_allowed_retrieval_is_accepted(setup: tuple[Session, Any, Any]) -> None:
    session, model_id, dataset_id = setup
    event = retrieval(*[dataset_id] * CHUNKS_PER_RETRIEVAL_MAX)
    assert only(ingest_retrievals(session, model_id, [event]))[0] == "accepted"


# --- rules that need the database --------------------------------------------------------


def test_unknown_dataset(setup: tuple[Session, Any, Any]) -> None:
    session, model_id, _ = setup
    ghost = uuid.uuid4()
    assert only(ingest_training(session, model_id, [train(ghost)])) == (
        "rejected",
        "unknown_dataset",
        "dataset_id",
        f"dataset {ghost} does not exist; register it first or fix the id",
    )


def test_dataset_confirmed_only_after_the_event(setup: tuple[Session, Any, Any]) -> None:
    session, model_id, _ = setup
    later = factories.make_dataset(session, confirmed_from=datetime(2026, 3, 20, tzinfo=UTC))
    status, code, field, message = only(ingest_training(session, model_id, [train(later.id)]))
    assert (status, code, field) == ("rejected", "dataset_not_confirmed", "dataset_id")
    assert message == (
        f"dataset {later.id} was not confirmed at 2026-03-10T12:00:00+00:00 (status now: "
        "confirmed); usage counts only while every co-owner's signed confirmation is in force"
    )


def test_dataset_never_confirmed_says_its_status(setup: tuple[Session, Any, Any]) -> None:
    session, model_id, _ = setup
    pending = factories.make_dataset(session, confirmed_from=None, status="pending_signatures")
    _, code, _, message = only(ingest_retrievals(session, model_id, [retrieval(pending.id)]))
    assert code == "dataset_not_confirmed"
    assert message is not None and "(status now: pending_signatures)" in message


def test_revoked_before_the_event(setup: tuple[Session, Any, Any]) -> None:
    session, model_id, _ = setup
    revoked_at = datetime(2026, 3, 5, tzinfo=UTC)
    dataset = factories.make_dataset(
        session, confirmed_until=revoked_at, ended_reason="revoked", status="revoked"
    )
    status, code, field, message = only(
        ingest_retrievals(session, model_id, [retrieval(dataset.id)])
    )
    assert (status, code, field) == ("rejected", "dataset_revoked", "chunks/0/dataset_id")
    assert message == (
        f"dataset {dataset.id} was revoked at 2026-03-05T00:00:00+00:00; usage after a "
        "revocation does not count (earlier usage still does)"
    )


def test_usage_before_a_revocation_still_counts(setup: tuple[Session, Any, Any]) -> None:
    session, model_id, _ = setup
    dataset = factories.make_dataset(
        session,
        confirmed_until=datetime(2026, 3, 20, tzinfo=UTC),
        ended_reason="revoked",
        status="revoked",
    )
    assert only(ingest_training(session, model_id, [train(dataset.id)]))[0] == "accepted"


def test_terms_change_gap_is_not_a_revocation(setup: tuple[Session, Any, Any]) -> None:
    """Between old terms ending and new terms being signed, usage is unconfirmed."""
    session, model_id, _ = setup
    dataset = factories.make_dataset(
        session, confirmed_until=datetime(2026, 3, 1, tzinfo=UTC), ended_reason="terms_changed"
    )
    factories.add_confirmation(
        session, dataset.id, confirmed_from=datetime(2026, 3, 15, tzinfo=UTC), terms_version=2
    )
    early, late = train(dataset.id), train(dataset.id, occurred_at="2026-03-16T00:00:00Z")
    result = ingest_training(session, model_id, [early, late])
    assert [(r.status, r.code) for r in result.results] == [
        ("rejected", "dataset_not_confirmed"),
        ("accepted", None),
    ]


def test_train_only_dataset_used_for_rag(setup: tuple[Session, Any, Any]) -> None:
    session, model_id, _ = setup
    train_only = factories.make_dataset(session, allowed_uses=TRAIN)
    assert only(ingest_retrievals(session, model_id, [retrieval(train_only.id)])) == (
        "rejected",
        "use_not_allowed",
        "chunks/0/dataset_id",
        f"dataset {train_only.id} does not allow rag use at 2026-03-10T12:00:00+00:00: its "
        "confirmed terms allow only train",
    )


def test_rag_only_dataset_used_for_training(setup: tuple[Session, Any, Any]) -> None:
    session, model_id, _ = setup
    rag_only = factories.make_dataset(session, allowed_uses=RAG)
    _, code, field, message = only(ingest_training(session, model_id, [train(rag_only.id)]))
    assert (code, field) == ("use_not_allowed", "dataset_id")
    assert message is not None and "does not allow train use" in message


@pytest.mark.parametrize(
    ("valid_from", "valid_until"),
    [
        (datetime(2026, 3, 11, tzinfo=UTC), None),
        (datetime(2025, 1, 1, tzinfo=UTC), datetime(2026, 3, 10, 12, 0, tzinfo=UTC)),
    ],
)
def test_outside_the_validity_window(
    setup: tuple[Session, Any, Any], valid_from: datetime, valid_until: datetime | None
) -> None:
    session, model_id, _ = setup
    dataset = factories.make_dataset(session, valid_from=valid_from, valid_until=valid_until)
    status, code, field, message = only(ingest_training(session, model_id, [train(dataset.id)]))
    assert (status, code, field) == ("rejected", "outside_validity_window", "dataset_id")
    assert message is not None
    assert f"is valid from {valid_from.isoformat()} until" in message
    assert "usage at 2026-03-10T12:00:00+00:00 lies outside that window" in message


def test_wrong_training_unit(setup: tuple[Session, Any, Any]) -> None:
    session, model_id, dataset_id = setup
    assert only(ingest_training(session, model_id, [train(dataset_id, unit="bytes")])) == (
        "rejected",
        "unit_mismatch",
        "unit",
        "unit 'bytes' differs from the training unit of the model's agreement (version 1): "
        "'tokens'; report quantities in tokens",
    )


def test_model_without_agreement(db_session: Session) -> None:
    model = factories.make_model(db_session, agreement=False)
    dataset = factories.make_dataset(db_session)
    status, code, field, message = only(ingest_training(db_session, model.id, [train(dataset.id)]))
    assert (status, code, field) == ("rejected", "no_agreement", "occurred_at")
    assert message == (
        f"model {model.id} has no royalty agreement in force at 2026-03-10T12:00:00+00:00; "
        "create the model's agreement before reporting usage"
    )


def test_usage_before_the_first_agreement_took_effect(db_session: Session) -> None:
    model = factories.make_model(db_session, effective_from=datetime(2026, 3, 20, tzinfo=UTC))
    dataset = factories.make_dataset(db_session)
    result = ingest_retrievals(
        db_session,
        model.id,
        [retrieval(dataset.id), retrieval(dataset.id, occurred_at="2026-03-21T00:00:00Z")],
    )
    assert [(r.status, r.code) for r in result.results] == [
        ("rejected", "no_agreement"),
        ("accepted", None),
    ]


def test_closed_period(setup: tuple[Session, Any, Any]) -> None:
    session, model_id, dataset_id = setup
    factories.make_period(session, model_id, datetime(2026, 10, 5, tzinfo=UTC), state="closed")
    event = train(dataset_id, occurred_at="2026-10-20T08:00:00Z")
    assert only(ingest_training(session, model_id, [event])) == (
        "rejected",
        "period_not_open",
        "occurred_at",
        f"period 2026-10 of model {model_id} is closed; report corrections as an adjustment "
        "in an open period",
    )


def test_closing_period_refuses_too(setup: tuple[Session, Any, Any]) -> None:
    session, model_id, dataset_id = setup
    factories.make_period(session, model_id, AT_DT, state="closing")
    _, code, _, message = only(ingest_retrievals(session, model_id, [retrieval(dataset_id)]))
    assert code == "period_not_open"
    assert message is not None and "is closing" in message


def test_future_events_are_refused(setup: tuple[Session, Any, Any]) -> None:
    session, model_id, dataset_id = setup
    future = (datetime.now(UTC) + timedelta(days=2)).isoformat()
    _, code, field, message = only(
        ingest_training(session, model_id, [train(dataset_id, occurred_at=future)])
    )
    assert (code, field) == ("occurred_in_future", "occurred_at")
    assert message is not None and "is in the future" in message


def test_one_bad_chunk_rejects_the_whole_retrieval(setup: tuple[Session, Any, Any]) -> None:
    session, model_id, good = setup
    ghost = uuid.uuid4()
    train_only = factories.make_dataset(session, allowed_uses=TRAIN).id
    event = retrieval(good, good, ghost, train_only)
    status, code, field, _ = only(ingest_retrievals(session, model_id, [event]))
    # The first broken chunk (by position) is reported.
    assert (status, code, field) == ("rejected", "unknown_dataset", "chunks/2/dataset_id")
    counts = table_counts(session, model_id)
    assert (counts["retrieval"], counts["chunks"], counts["rollups"]) == (0, 0, [])


def test_one_batch_mixes_outcomes_in_input_order(setup: tuple[Session, Any, Any]) -> None:
    session, model_id, dataset_id = setup
    ok = train(dataset_id)
    result = ingest_training(
        session,
        model_id,
        [ok, train(uuid.uuid4()), train(dataset_id, epochs=0), dict(ok), train(dataset_id)],
    )
    assert [(r.index, r.status, r.code) for r in result.results] == [
        (0, "accepted", None),
        (1, "rejected", "unknown_dataset"),
        (2, "rejected", "epochs_out_of_range"),
        (3, "duplicate", None),
        (4, "accepted", None),
    ]
    assert result.as_dict()["results"][3] == {
        "index": 3,
        "event_id": ok["event_id"],
        "status": "duplicate",
    }


# --- quarantine ----------------------------------------------------------------------------


def test_rejected_events_are_kept_for_review(setup: tuple[Session, Any, Any]) -> None:
    session, model_id, dataset_id = setup
    bad = train(dataset_id, unit="bytes", occurred_at=AT_DT)
    ingest_training(session, model_id, [bad, "garbage", {"event_id": "x", "nul": "a\x00b"}])  # type: ignore[list-item]
    rows = queries.quarantined(session, model_id)
    assert sorted((q.kind, q.event_id or "", q.reason_code, q.field) for q in rows) == [
        ("training", "", "invalid_type", ""),
        ("training", bad["event_id"], "unit_mismatch", "unit"),
        ("training", "x", "missing_field", "run_id"),
    ]
    by_code = {q.reason_code: q for q in rows}
    assert by_code["unit_mismatch"].payload == bad | {"occurred_at": AT_DT.isoformat()}
    assert by_code["unit_mismatch"].review_state == "open"
    assert "report quantities in tokens" in by_code["unit_mismatch"].message
    assert by_code["invalid_type"].payload == "garbage"
    # NUL cannot be stored in jsonb: it is replaced, the rest is kept.
    assert by_code["missing_field"].payload == {"event_id": "x", "nul": "a\ufffdb"}


def test_replayed_rejects_are_filed_once(setup: tuple[Session, Any, Any]) -> None:
    session, model_id, dataset_id = setup
    batch = [train(uuid.uuid4()), train(dataset_id, quantity=0)]
    ingest_training(session, model_id, batch)
    again = ingest_training(session, model_id, batch)
    assert [r.code for r in again.results] == ["unknown_dataset", "quantity_out_of_range"]
    assert table_counts(session, model_id)["quarantine"] == 2


# --- idempotency ----------------------------------------------------------------------------


def test_the_same_batch_twice_changes_nothing(setup: tuple[Session, Any, Any]) -> None:
    session, model_id, dataset_id = setup
    trainings = [train(dataset_id, quantity=q) for q in (1, 2, 3)] + [train(uuid.uuid4())]
    retrievals = [retrieval(dataset_id, dataset_id), retrieval(dataset_id), retrieval(uuid.uuid4())]
    first_t = ingest_training(session, model_id, trainings)
    first_r = ingest_retrievals(session, model_id, retrievals)
    before = table_counts(session, model_id)
    again_t = ingest_training(session, model_id, trainings)
    again_r = ingest_retrievals(session, model_id, retrievals)
    assert table_counts(session, model_id) == before
    assert [r.status for r in first_t.results] == ["accepted"] * 3 + ["rejected"]
    assert [r.status for r in again_t.results] == ["duplicate"] * 3 + ["rejected"]
    assert [r.status for r in again_r.results] == ["duplicate", "duplicate", "rejected"]
    assert first_r.accepted == 2


def test_same_instant_with_another_offset_is_a_duplicate(setup: tuple[Session, Any, Any]) -> None:
    session, model_id, dataset_id = setup
    event = train(dataset_id)
    ingest_training(session, model_id, [event])
    shifted = event | {"occurred_at": "2026-03-10T14:00:00+02:00"}
    assert only(ingest_training(session, model_id, [shifted]))[0] == "duplicate"


def test_a_replay_after_the_period_closed_is_still_a_duplicate(
    setup: tuple[Session, Any, Any],
) -> None:
    session, model_id, dataset_id = setup
    event = retrieval(dataset_id)
    ingest_retrievals(session, model_id, [event])
    factories.make_period(session, model_id, AT_DT, state="closed")
    assert only(ingest_retrievals(session, model_id, [event]))[0] == "duplicate"


def test_same_id_different_body_is_a_conflict(setup: tuple[Session, Any, Any]) -> None:
    session, model_id, dataset_id = setup
    event = train(dataset_id)
    ingest_training(session, model_id, [event])
    changed = event | {"quantity": 7, "epochs": 9}
    status, code, field, message = only(ingest_training(session, model_id, [changed]))
    assert (status, code, field) == ("rejected", "event_id_conflict", "event_id")
    assert message == (
        f"event {event['event_id']!r} was already recorded with a different body (differs in: "
        "quantity, epochs); an event id names one event forever: send a replay unchanged, or "
        "new usage under a new event id"
    )
    [rollup] = queries.rollups(session, model_id)
    assert rollup.quantity == 2_000
    assert [q.reason_code for q in queries.quarantined(session, model_id)] == ["event_id_conflict"]


def test_retrieval_conflict_names_the_chunks(setup: tuple[Session, Any, Any]) -> None:
    session, model_id, dataset_id = setup
    event = retrieval(dataset_id, dataset_id)
    ingest_retrievals(session, model_id, [event])
    changed = event | {"chunks": [chunk(dataset_id, 1), chunk(dataset_id, 2, chunk_id="other")]}
    _, code, _, message = only(ingest_retrievals(session, model_id, [changed]))
    assert code == "event_id_conflict"
    assert message is not None and "(differs in: chunks)" in message


def test_within_a_batch_the_first_occurrence_wins(setup: tuple[Session, Any, Any]) -> None:
    session, model_id, dataset_id = setup
    event = retrieval(dataset_id)
    other_body = event | {"query_id": "query-2"}
    result = ingest_retrievals(session, model_id, [event, dict(event), other_body])
    assert [(r.status, r.code) for r in result.results] == [
        ("accepted", None),
        ("duplicate", None),
        ("rejected", "event_id_conflict"),
    ]
    message = result.results[2].message
    assert message is not None
    assert "appears earlier in this batch (at index 0)" in message
    assert "(differs in: query_id)" in message


def test_a_repeat_of_a_rejected_event_is_rejected_alike(setup: tuple[Session, Any, Any]) -> None:
    session, model_id, _ = setup
    event = train(uuid.uuid4())
    result = ingest_training(session, model_id, [event, dict(event)])
    assert [(r.status, r.code) for r in result.results] == [
        ("rejected", "unknown_dataset"),
        ("rejected", "unknown_dataset"),
    ]
    assert table_counts(session, model_id)["quarantine"] == 1


# --- limits and errors of the call itself ----------------------------------------------------


def test_unknown_model_is_not_found(db_session: Session) -> None:
    with pytest.raises(NotFound):
        ingest_training(db_session, uuid.uuid4(), [])


def test_batch_size_is_limited(setup: tuple[Session, Any, Any]) -> None:
    session, model_id, dataset_id = setup
    with pytest.raises(PayloadTooLarge):
        ingest_training(session, model_id, [train(dataset_id)] * (BATCH_EVENTS_MAX + 1))


def test_empty_batch(setup: tuple[Session, Any, Any]) -> None:
    session, model_id, _ = setup
    assert ingest_retrievals(session, model_id, []).results == []


# --- atomicity --------------------------------------------------------------------------------


def test_a_batch_that_fails_midway_leaves_nothing(
    db_engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Events, chunks and rollups are written, then the database fails: all of it goes,
    even though the caller catches the error and commits."""
    with Session(db_engine, expire_on_commit=False) as session:
        model = factories.make_model(session)
        dataset = factories.make_dataset(session)
        session.commit()

    def failing_quarantine(self: Any, cursor: Any) -> None:
        cursor.execute("SELECT 1 / 0")

    monkeypatch.setattr(ingest._Batch, "quarantine", failing_quarantine)
    with Session(db_engine, expire_on_commit=False) as session:
        before = table_counts(session, model.id)
        with pytest.raises(DBAPIError, match="division by zero"):
            ingest_retrievals(
                session, model.id, [retrieval(dataset.id, dataset.id), retrieval(uuid.uuid4())]
            )
        # The session is still usable: the batch was rolled back to its savepoint.
        session.commit()
    with Session(db_engine) as session:
        assert (
            table_counts(session, model.id)
            == before
            == {
                "training": 0,
                "retrieval": 0,
                "chunks": 0,
                "quarantine": 0,
                "rollups": [],
            }
        )


def test_a_failure_after_staging_leaves_nothing(
    db_session: Session, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = factories.make_model(db_session)
    dataset = factories.make_dataset(db_session)

    def exploding(self: Any, session: Any, cursor: Any) -> None:
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(ingest._Batch, "reject_closed_periods", exploding)
    with pytest.raises(RuntimeError):
        ingest_training(db_session, model.id, [train(dataset.id), train(uuid.uuid4())])
    assert table_counts(db_session, model.id)["quarantine"] == 0
    monkeypatch.undo()
    # The staging tables went with the savepoint: the next batch works.
    assert ingest_training(db_session, model.id, [train(dataset.id)]).accepted == 1


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE usage_training_event SET quantity = quantity + 1 WHERE model_id = :m",
        "DELETE FROM usage_training_event WHERE model_id = :m",
        "DELETE FROM usage_retrieval_event WHERE model_id = :m",
        "UPDATE usage_retrieval_event SET chunk_ids[1] = 'x' WHERE model_id = :m",
    ],
)
def test_declared_usage_is_append_only(setup: tuple[Session, Any, Any], statement: str) -> None:
    session, model_id, dataset_id = setup
    ingest_training(session, model_id, [train(dataset_id)])
    ingest_retrievals(session, model_id, [retrieval(dataset_id)])
    with pytest.raises(DBAPIError, match="declared usage is append-only"):
        session.execute(text(statement), {"m": model_id})


# --- concurrency ------------------------------------------------------------------------------


def _race(
    db_engine: Engine, model_id: uuid.UUID, batches: list[list[dict[str, Any]]]
) -> list[IngestResult]:
    """Ingest each batch from its own thread and connection, all starting together."""

    def worker(batch: list[dict[str, Any]]) -> IngestResult:
        with Session(db_engine, expire_on_commit=False) as session:
            result = ingest_retrievals(session, model_id, batch)
            session.commit()
            return result

    return factories.run_concurrently([functools.partial(worker, b) for b in batches])


def test_two_clients_sending_the_same_batch_count_it_once(db_engine: Engine) -> None:
    with Session(db_engine, expire_on_commit=False) as session:
        model = factories.make_model(session)
        datasets = [factories.make_dataset(session).id for _ in range(3)]
        session.commit()
    batch = [retrieval(*datasets) for _ in range(300)]
    for _ in range(3):  # a few rounds: the interleaving differs each time
        batch = [retrieval(*datasets) for _ in range(300)]
        first, second = _race(db_engine, model.id, [batch, batch])
        for a, b in zip(first.results, second.results, strict=True):
            assert {a.status, b.status} == {"accepted", "duplicate"}
    with Session(db_engine) as session:
        counts = table_counts(session, model.id)
    assert counts["retrieval"] == 900
    assert counts["chunks"] == 2_700
    assert {(r.rank, r.quantity) for r in counts["rollups"]} == {(1, 900), (2, 900), (3, 900)}


def test_overlapping_batches_in_opposite_orders_do_not_deadlock(db_engine: Engine) -> None:
    with Session(db_engine, expire_on_commit=False) as session:
        model = factories.make_model(session)
        dataset = factories.make_dataset(session).id
        session.commit()
    events = [retrieval(dataset) for _ in range(400)]
    results = _race(db_engine, model.id, [events, list(reversed(events)), events[100:300]])
    accepted = sum(r.accepted for r in results)
    assert accepted == 400
    with Session(db_engine) as session:
        [rollup] = table_counts(session, model.id)["rollups"]
    assert rollup.quantity == 400
