"""Revenue events: validated, idempotent by external reference, recognised in the journal."""

from __future__ import annotations

import secrets
import uuid
from datetime import UTC, datetime, timedelta, timezone

import pytest
from sqlalchemy import Engine, func, select
from sqlmodel import Session

from ledger.errors import Conflict, NotFound, StateError, ValidationFailed
from ledger.journal import queries as journal_queries
from ledger.revenue import service as revenue
from ledger.revenue.models import RevenueEvent
from ledger.types import AMOUNT_MINOR_MAX
from tests.ledger import factories

AT = datetime(2026, 7, 14, 12, 0, tzinfo=UTC)


def _ref() -> str:
    return f"inv-{secrets.token_hex(4)}"


def test_revenue_is_recorded_in_its_period_and_recognised(db_session: Session) -> None:
    model = factories.make_model(db_session)
    event = revenue.record_revenue(db_session, model.id, 12_345, "EUR", "inv-1", AT)
    assert event.amount_minor == 12_345
    assert event.journal_transaction_id is not None
    period = factories.make_period(db_session, model.id, AT)
    assert event.period_id == period.id
    receivable, income = revenue.revenue_accounts(model.id)
    assert journal_queries.balance(db_session, receivable, "EUR") == 12_345
    assert journal_queries.balance(db_session, income, "EUR") == -12_345
    assert journal_queries.trial_balance(db_session, code_prefix=f"model:{model.id}").is_balanced


def test_replay_returns_the_stored_event_and_posts_nothing(db_session: Session) -> None:
    model = factories.make_model(db_session)
    first = revenue.record_revenue(db_session, model.id, 500, "EUR", "inv-1", AT)
    # The same instant written with another offset is the same event.
    same_instant = AT.astimezone(timezone(timedelta(hours=2)))
    again = revenue.record_revenue(db_session, model.id, 500, "EUR", "inv-1", same_instant)
    assert again.id == first.id
    receivable, _ = revenue.revenue_accounts(model.id)
    assert journal_queries.balance(db_session, receivable, "EUR") == 500


def test_same_reference_with_another_body_is_a_conflict_naming_fields(db_session: Session) -> None:
    model = factories.make_model(db_session)
    revenue.record_revenue(db_session, model.id, 500, "EUR", "inv-1", AT)
    with pytest.raises(Conflict) as caught:
        revenue.record_revenue(db_session, model.id, 600, "EUR", "inv-1", AT + timedelta(hours=1))
    assert caught.value.code == "external_ref_conflict"
    assert caught.value.details["differing_fields"] == ["amount_minor", "occurred_at"]
    assert "with a different amount_minor, occurred_at" in caught.value.message


def test_currency_must_match_the_agreement(db_session: Session) -> None:
    model = factories.make_model(db_session, currency="EUR")
    with pytest.raises(ValidationFailed) as caught:
        revenue.record_revenue(db_session, model.id, 500, "USD", _ref(), AT)
    assert caught.value.code == "currency_mismatch"
    assert caught.value.field == "currency"
    assert "revenue is in USD but the agreement" in caught.value.message
    assert "is in EUR; report the amount in EUR" in caught.value.message


def test_the_period_agreement_decides_the_currency(db_session: Session) -> None:
    """A new agreement version taking effect mid-month governs from the next period."""
    model = factories.make_model(db_session, currency="EUR")
    factories.make_agreement(
        db_session,
        model.id,
        version=2,
        currency="USD",
        effective_from=datetime(2026, 7, 10, tzinfo=UTC),
    )
    assert revenue.record_revenue(db_session, model.id, 1, "EUR", _ref(), AT).currency == "EUR"
    august = datetime(2026, 8, 2, tzinfo=UTC)
    assert revenue.record_revenue(db_session, model.id, 1, "USD", _ref(), august).currency == "USD"


def test_revenue_without_an_agreement_is_refused(db_session: Session) -> None:
    model = factories.make_model(db_session, agreement=False)
    with pytest.raises(ValidationFailed) as caught:
        revenue.record_revenue(db_session, model.id, 500, "EUR", _ref(), AT)
    assert caught.value.code == "no_agreement"


def test_revenue_before_the_first_agreement_took_effect_is_refused(db_session: Session) -> None:
    model = factories.make_model(db_session, effective_from=datetime(2026, 7, 20, tzinfo=UTC))
    with pytest.raises(ValidationFailed) as caught:
        revenue.record_revenue(db_session, model.id, 500, "EUR", _ref(), AT)
    assert caught.value.code == "no_agreement"


def test_revenue_in_a_closed_period_is_refused(db_session: Session) -> None:
    model = factories.make_model(db_session)
    factories.make_period(db_session, model.id, AT, state="closed")
    with pytest.raises(StateError) as caught:
        revenue.record_revenue(db_session, model.id, 500, "EUR", _ref(), AT)
    assert caught.value.code == "period_not_open"
    assert caught.value.message == (
        f"period 2026-07 of model {model.id} is closed; report corrections as an adjustment "
        "in an open period"
    )


def test_a_replay_after_the_period_closed_still_returns_the_event(db_session: Session) -> None:
    model = factories.make_model(db_session)
    first = revenue.record_revenue(db_session, model.id, 500, "EUR", "inv-1", AT)
    factories.make_period(db_session, model.id, AT, state="closed")
    assert revenue.record_revenue(db_session, model.id, 500, "EUR", "inv-1", AT).id == first.id


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"amount_minor": 0}, "amount_minor"),
        ({"amount_minor": -5}, "amount_minor"),
        ({"amount_minor": AMOUNT_MINOR_MAX + 1}, "amount_minor"),
        ({"amount_minor": 10.0}, "amount_minor"),
        ({"amount_minor": True}, "amount_minor"),
        ({"currency": "eur"}, "currency"),
        ({"external_ref": ""}, "external_ref"),
        ({"external_ref": "x" * 201}, "external_ref"),
        ({"external_ref": "a\nb"}, "external_ref"),
        ({"occurred_at": datetime(2026, 7, 1)}, "occurred_at"),
    ],
)
def test_invalid_input_names_the_field(
    db_session: Session, kwargs: dict[str, object], field: str
) -> None:
    model = factories.make_model(db_session)
    call: dict[str, object] = {
        "amount_minor": 100,
        "currency": "EUR",
        "external_ref": _ref(),
        "occurred_at": AT,
    } | kwargs
    with pytest.raises(ValidationFailed) as caught:
        revenue.record_revenue(db_session, model.id, **call)  # type: ignore[arg-type]
    assert [e.field for e in caught.value.errors] == [field]


def test_amount_at_the_maximum_is_accepted(db_session: Session) -> None:
    model = factories.make_model(db_session)
    event = revenue.record_revenue(db_session, model.id, AMOUNT_MINOR_MAX, "EUR", _ref(), AT)
    assert event.amount_minor == AMOUNT_MINOR_MAX


def test_future_revenue_is_refused(db_session: Session) -> None:
    model = factories.make_model(db_session)
    tomorrow = datetime.now(UTC) + timedelta(days=1)
    with pytest.raises(ValidationFailed) as caught:
        revenue.record_revenue(db_session, model.id, 100, "EUR", _ref(), tomorrow)
    assert (caught.value.code, caught.value.field) == ("occurred_in_future", "occurred_at")


def test_unknown_model_is_not_found(db_session: Session) -> None:
    with pytest.raises(NotFound):
        revenue.record_revenue(db_session, uuid.uuid4(), 100, "EUR", _ref(), AT)


def test_concurrent_recording_of_one_reference_records_once(db_engine: Engine) -> None:
    with Session(db_engine, expire_on_commit=False) as session:
        model = factories.make_model(session)
        session.commit()

    def worker() -> uuid.UUID:
        with Session(db_engine, expire_on_commit=False) as session:
            event = revenue.record_revenue(session, model.id, 700, "EUR", "inv-race", AT)
            session.commit()
            return event.id

    ids = factories.run_concurrently([worker] * 3)
    assert len(ids) == 3 and len(set(ids)) == 1
    with Session(db_engine, expire_on_commit=False) as session:
        count = session.execute(
            select(func.count()).select_from(RevenueEvent).where(RevenueEvent.model_id == model.id)  # type: ignore[arg-type]
        ).scalar_one()
        receivable, _ = revenue.revenue_accounts(model.id)
        assert count == 1
        assert journal_queries.balance(session, receivable, "EUR") == 700
