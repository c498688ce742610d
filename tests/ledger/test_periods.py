"""Periods: UTC calendar months per model, race-safe creation, conditional transitions."""

from __future__ import annotations

import threading
import uuid
from datetime import UTC, datetime, timedelta, timezone

import pytest
from sqlalchemy import Engine, func, select
from sqlmodel import Session

from ledger.errors import StateError, ValidationFailed
from ledger.periods import service as periods
from ledger.periods.models import Period
from tests.ledger import factories


def test_period_for_is_the_utc_calendar_month(db_session: Session) -> None:
    model = factories.make_model(db_session)
    # 23:30 at UTC-02:00 on 31 October is 01:30 UTC on 1 November.
    at = datetime(2026, 10, 31, 23, 30, tzinfo=timezone(timedelta(hours=-2)))
    period = periods.period_for(db_session, model.id, at)
    assert period.key == "2026-11"
    assert period.starts_at == datetime(2026, 11, 1, tzinfo=UTC)
    assert period.ends_at == datetime(2026, 12, 1, tzinfo=UTC)
    assert period.state == "open"
    again = periods.period_for(db_session, model.id, datetime(2026, 11, 30, 23, 59, tzinfo=UTC))
    assert again.id == period.id


def test_december_ends_at_the_next_year(db_session: Session) -> None:
    model = factories.make_model(db_session)
    period = periods.period_for(db_session, model.id, datetime(2026, 12, 31, 23, 0, tzinfo=UTC))
    assert (period.key, period.ends_at) == ("2026-12", datetime(2027, 1, 1, tzinfo=UTC))


def test_period_for_refuses_a_naive_time(db_session: Session) -> None:
    model = factories.make_model(db_session)
    with pytest.raises(ValidationFailed) as caught:
        periods.period_for(db_session, model.id, datetime(2026, 3, 1))
    assert caught.value.code == "naive_datetime"
    assert caught.value.field == "occurred_at"


def test_concurrent_period_for_creates_one_period(db_engine: Engine) -> None:
    with Session(db_engine, expire_on_commit=False) as session:
        model = factories.make_model(session)
        session.commit()
    at = datetime(2026, 4, 10, tzinfo=UTC)

    def worker() -> uuid.UUID:
        with Session(db_engine, expire_on_commit=False) as session:
            period_id = periods.period_for(session, model.id, at).id
            session.commit()
            return period_id

    assert len(set(factories.run_concurrently([worker] * 4))) == 1
    with Session(db_engine, expire_on_commit=False) as session:
        count = session.execute(
            select(func.count()).select_from(Period).where(Period.model_id == model.id)  # type: ignore[arg-type]
        ).scalar_one()
    assert count == 1


def test_transition_walks_the_life_cycle_and_stamps_times(db_session: Session) -> None:
    model = factories.make_model(db_session)
    period = periods.period_for(db_session, model.id, datetime(2026, 2, 3, tzinfo=UTC))
    for source, target, stamp in [
        ("open", "closing", "closing_started_at"),
        ("closing", "closed", "closed_at"),
        ("closed", "anchored", "anchored_at"),
        ("anchored", "paid", "paid_at"),
    ]:
        period = periods.transition(db_session, period.id, source, target)
        assert period.state == target
        assert getattr(period, stamp) is not None


def test_transition_from_the_wrong_state_names_the_current_state(db_session: Session) -> None:
    model = factories.make_model(db_session)
    period = periods.period_for(db_session, model.id, datetime(2026, 2, 3, tzinfo=UTC))
    periods.transition(db_session, period.id, "open", "closing")
    with pytest.raises(StateError) as caught:
        periods.transition(db_session, period.id, "open", "closing")
    assert caught.value.code == "invalid_state"
    assert "is closing, not open" in caught.value.message
    assert caught.value.details == {"current_state": "closing"}


def test_a_close_that_cannot_finish_can_reopen(db_session: Session) -> None:
    model = factories.make_model(db_session)
    period = periods.period_for(db_session, model.id, datetime(2026, 2, 3, tzinfo=UTC))
    periods.transition(db_session, period.id, "open", "closing")
    assert periods.transition(db_session, period.id, "closing", "open").state == "open"


def test_transitions_outside_the_life_cycle_are_programming_errors(db_session: Session) -> None:
    model = factories.make_model(db_session)
    period = periods.period_for(db_session, model.id, datetime(2026, 2, 3, tzinfo=UTC))
    with pytest.raises(ValueError, match="no period transition open → paid"):
        periods.transition(db_session, period.id, "open", "paid")


def test_assert_open_explains_what_to_do(db_session: Session) -> None:
    model = factories.make_model(db_session)
    period = factories.make_period(
        db_session, model.id, datetime(2026, 10, 5, tzinfo=UTC), "closed"
    )
    with pytest.raises(StateError) as caught:
        periods.assert_open(period)
    assert caught.value.code == "period_not_open"
    assert caught.value.message == (
        f"period 2026-10 of model {model.id} is closed; report corrections as an "
        "adjustment in an open period"
    )


def test_only_one_of_two_racing_transitions_wins(db_engine: Engine) -> None:
    with Session(db_engine, expire_on_commit=False) as session:
        model = factories.make_model(session)
        period_id = periods.period_for(session, model.id, datetime(2026, 5, 1, tzinfo=UTC)).id
        session.commit()

    def worker() -> str:
        with Session(db_engine, expire_on_commit=False) as session:
            try:
                periods.transition(session, period_id, "open", "closing")
                session.commit()
                return "moved"
            except StateError as error:
                return error.code

    outcomes = factories.run_concurrently([worker, worker])
    assert sorted(outcomes) == ["invalid_state", "moved"]


def test_lock_for_share_makes_a_transition_wait(db_engine: Engine) -> None:
    """A writer holding FOR SHARE delays the close until it commits (no lost usage)."""
    with Session(db_engine, expire_on_commit=False) as session:
        model = factories.make_model(session)
        period_id = periods.period_for(session, model.id, datetime(2026, 6, 1, tzinfo=UTC)).id
        session.commit()
    order: list[str] = []
    writer = Session(db_engine, expire_on_commit=False)
    periods.lock_period_for_share(writer, period_id)
    started = threading.Event()

    def closer() -> None:
        with Session(db_engine, expire_on_commit=False) as session:
            started.set()
            periods.transition(session, period_id, "open", "closing")
            order.append("closed")
            session.commit()

    thread = threading.Thread(target=closer)
    thread.start()
    started.wait()
    thread.join(timeout=0.5)
    order.append("writer commits")
    writer.commit()
    writer.close()
    thread.join()
    assert order == ["writer commits", "closed"]


def test_governing_agreement_is_the_version_in_force_at_the_period_start(
    db_session: Session,
) -> None:
    model = factories.make_model(db_session, effective_from=datetime(2026, 1, 1, tzinfo=UTC))
    factories.make_agreement(
        db_session,
        model.id,
        version=2,
        currency="USD",
        effective_from=datetime(2026, 3, 15, tzinfo=UTC),
    )
    march = periods.governing_agreement(db_session, model.id, datetime(2026, 3, 20, tzinfo=UTC))
    april = periods.governing_agreement(db_session, model.id, datetime(2026, 4, 1, tzinfo=UTC))
    assert march is not None and march.version == 1
    assert april is not None and april.version == 2


def test_governing_agreement_of_a_first_agreement_starting_mid_month(db_session: Session) -> None:
    model = factories.make_model(db_session, effective_from=datetime(2026, 3, 10, tzinfo=UTC))
    march = periods.governing_agreement(db_session, model.id, datetime(2026, 3, 2, tzinfo=UTC))
    assert march is not None and march.version == 1
    assert (
        periods.governing_agreement(db_session, model.id, datetime(2026, 2, 2, tzinfo=UTC)) is None
    )
