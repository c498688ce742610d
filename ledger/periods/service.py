"""Accounting periods: the UTC month of an instant, state transitions and locks.

A period is one UTC calendar month of one model, ``[starts_at, ends_at)``, with the
life cycle ``open → closing → closed → anchored → paid`` (``closing → open`` undoes
a close that could not finish). Only an open period accepts usage and revenue.

Locks, named so a reader sees who waits for whom:
- writers of usage and revenue hold ``FOR SHARE`` on the periods they write into
  (:func:`lock_period_for_share`, or the set-based query of the ingestion path), so
  they do not block each other;
- a state change is a conditional ``UPDATE … WHERE state = :from`` (:func:`transition`),
  which waits for those share locks: once ``closing`` commits, no writer that
  started earlier is still adding to the period, and every later writer sees the
  new state and is refused;
- :func:`lock_period_for_update` serialises whole close steps.

The close itself (statement, journal accrual) lives in ``ledger/periods/close.py``.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final

from sqlalchemy import func, select, text, update
from sqlmodel import Session

from ledger.errors import NotFound, StateError, ValidationFailed
from ledger.models.models import Agreement
from ledger.periods.models import PERIOD_STATES, Period

# Usage and revenue dated further ahead than this are refused (clock skew allowance).
FUTURE_TOLERANCE_S: Final = 300

# Allowed state changes and the timestamp column each one stamps.
TRANSITIONS: Final[dict[tuple[str, str], str | None]] = {
    ("open", "closing"): "closing_started_at",
    ("closing", "open"): None,  # a close that could not finish; no statement exists yet
    ("closing", "closed"): "closed_at",
    ("closed", "anchored"): "anchored_at",
    ("anchored", "paid"): "paid_at",
}

# Inserts the periods of a model for UTC month starts (``:months``, any order,
# duplicates allowed) that do not exist yet. Sorted so two writers creating the
# same months take the unique-index locks in the same order. Interval arithmetic
# happens on UTC wall time: ``timestamptz + interval '1 month'`` would follow the
# session time zone across daylight-saving changes.
ENSURE_PERIODS_SQL: Final = """
    INSERT INTO period (id, model_id, key, starts_at, ends_at, state)
    SELECT gen_random_uuid(), :model, to_char(m.starts_at AT TIME ZONE 'UTC', 'YYYY-MM'),
           m.starts_at, ((m.starts_at AT TIME ZONE 'UTC') + interval '1 month') AT TIME ZONE 'UTC',
           'open'
      FROM (SELECT DISTINCT unnest(CAST(:months AS timestamptz[])) AS starts_at) m
     ORDER BY m.starts_at
        ON CONFLICT (model_id, starts_at) DO NOTHING
"""

# The agreement governing a model's period starting at ``{month}``: the version in
# force at the period start, else the first version that took effect during the
# period (same rule as ``close.agreement_for_period``). A LATERAL subquery over
# ``agreement a``; ``{model}`` and ``{month}`` are SQL expressions.
GOVERNING_AGREEMENT_SQL: Final = """
    SELECT a.id, a.version, a.currency, a.training_unit, a.effective_from
      FROM agreement a
     WHERE a.model_id = {model}
       AND a.effective_from < (({month}) AT TIME ZONE 'UTC' + interval '1 month') AT TIME ZONE 'UTC'
     ORDER BY a.effective_from <= ({month}) DESC,
              CASE WHEN a.effective_from <= ({month}) THEN a.version ELSE -a.version END DESC
     LIMIT 1
"""

_GOVERNING_AGREEMENT_ID_SQL: Final = (
    "SELECT g.id FROM ("  # noqa: S608 - assembled from constants only
    + GOVERNING_AGREEMENT_SQL.format(model=":model", month=":month")
    + ") g"
)


def month_start(at: datetime) -> datetime:
    """The UTC calendar month containing ``at`` (timezone-aware), as its first instant."""
    if at.tzinfo is None or at.utcoffset() is None:
        raise ValidationFailed(
            f"time {at.isoformat()} has no time zone; send an ISO 8601 time with an offset "
            "(e.g. 2026-11-23T10:00:00Z)",
            field="occurred_at",
            code="naive_datetime",
        )
    utc = at.astimezone(UTC)
    return datetime(utc.year, utc.month, 1, tzinfo=UTC)


def not_open_message(key: str, model_id: uuid.UUID | str, state: str) -> str:
    """Why a write into a period that is not open is refused, and what to do instead."""
    return (
        f"period {key} of model {model_id} is {state}; report corrections as an "
        "adjustment in an open period"
    )


def period_for(session: Session, model_id: uuid.UUID, at: datetime) -> Period:
    """Get or create the period of ``model_id`` containing ``at`` (race-safe).

    Concurrent callers for the same month both succeed and get the same row.
    """
    start = month_start(at)
    ensure_periods(session, model_id, [start])
    period = session.execute(
        select(Period)
        .where(Period.model_id == model_id, Period.starts_at == start)  # type: ignore[arg-type]
        .execution_options(populate_existing=True)
    ).scalar_one()
    return period


def ensure_periods(session: Session, model_id: uuid.UUID, month_starts: Sequence[datetime]) -> None:
    """Create the periods of ``model_id`` starting at ``month_starts`` (UTC month
    starts) that do not exist yet; safe against concurrent callers."""
    session.execute(text(ENSURE_PERIODS_SQL), {"model": model_id, "months": list(month_starts)})


@dataclass(frozen=True, slots=True)
class PeriodState:
    """The identity and state of a period, as the write paths need it."""

    id: uuid.UUID
    model_id: uuid.UUID
    key: str
    starts_at: datetime
    state: str


def lock_months_for_share(
    session: Session, model_id: uuid.UUID, month_starts: Sequence[datetime]
) -> list[PeriodState]:
    """The existing periods of ``model_id`` starting at ``month_starts``, each locked
    ``FOR SHARE`` (see the module docstring), ordered by start."""
    rows = session.execute(
        text(
            """
            SELECT id, model_id, key, starts_at, state FROM period
             WHERE model_id = :model AND starts_at = ANY(CAST(:months AS timestamptz[]))
             ORDER BY starts_at
               FOR SHARE
            """
        ),
        {"model": model_id, "months": list(month_starts)},
    ).all()
    return [PeriodState(r.id, r.model_id, r.key, r.starts_at, r.state) for r in rows]


def get_period(session: Session, period_id: uuid.UUID) -> Period:
    period = session.get(Period, period_id, populate_existing=True)
    if period is None:
        raise NotFound(f"period {period_id} does not exist", field="period_id")
    return period


def lock_period_for_update(session: Session, period_id: uuid.UUID) -> Period:
    """``SELECT … FOR UPDATE``: the period, locked against writers and other closers
    until this transaction ends."""
    return _locked(session, period_id, read=False)


def lock_period_for_share(session: Session, period_id: uuid.UUID) -> Period:
    """``SELECT … FOR SHARE``: the period's current state, which cannot change until
    this transaction ends (a concurrent transition waits for us)."""
    return _locked(session, period_id, read=True)


def _locked(session: Session, period_id: uuid.UUID, *, read: bool) -> Period:
    period = session.execute(
        select(Period)
        .where(Period.id == period_id)  # type: ignore[arg-type]
        .with_for_update(read=read)
        .execution_options(populate_existing=True)
    ).scalar_one_or_none()
    if period is None:
        raise NotFound(f"period {period_id} does not exist", field="period_id")
    return period


def assert_open(period: Period | PeriodState, *, field: str = "occurred_at") -> None:
    """Raise ``StateError`` (code ``period_not_open``) unless ``period`` is open."""
    if period.state != "open":
        raise StateError(
            not_open_message(period.key, period.model_id, period.state),
            field=field,
            code="period_not_open",
        )


def transition(session: Session, period_id: uuid.UUID, from_state: str, to_state: str) -> Period:
    """Move a period from ``from_state`` to ``to_state`` with a conditional update.

    Raises ``StateError`` (code ``invalid_state``) naming the current state when the
    period is not in ``from_state`` (someone else moved it first), and ``NotFound``
    when it does not exist. Stamps ``closing_started_at``/``closed_at``/… as it goes.
    """
    if (from_state, to_state) not in TRANSITIONS:
        allowed = ", ".join(f"{a} → {b}" for a, b in TRANSITIONS)
        raise ValueError(f"no period transition {from_state} → {to_state}; allowed: {allowed}")
    assert from_state in PERIOD_STATES and to_state in PERIOD_STATES
    values: dict[str, object] = {"state": to_state}
    stamp = TRANSITIONS[(from_state, to_state)]
    if stamp is not None:
        values[stamp] = func.now()
    result = session.execute(
        update(Period)
        .where(Period.id == period_id, Period.state == from_state)  # type: ignore[arg-type]
        .values(**values)
        .execution_options(synchronize_session=False)
    )
    if result.rowcount != 1:  # type: ignore[attr-defined]
        current = get_period(session, period_id)
        raise StateError(
            f"period {current.key} of model {current.model_id} is {current.state}, not "
            f"{from_state}; it cannot move to {to_state}",
            field="period_id",
            code="invalid_state",
            details={"current_state": current.state},
        )
    return get_period(session, period_id)


def governing_agreement(session: Session, model_id: uuid.UUID, at: datetime) -> Agreement | None:
    """The agreement governing the period of ``model_id`` that contains ``at``, or None."""
    agreement_id = session.execute(
        text(_GOVERNING_AGREEMENT_ID_SQL), {"model": model_id, "month": month_start(at)}
    ).scalar_one_or_none()
    return None if agreement_id is None else session.get(Agreement, agreement_id)
