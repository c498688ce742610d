"""Revenue events: money a model earned, recognised in the journal as it is recorded.

Idempotent by ``(model, external_ref)``: recording the same event again returns the
stored one and posts nothing; the same reference with another amount, currency or
time is a ``Conflict`` naming what differs.

Journal (in the agreement's currency): Dr ``model:<m>:revenue_receivable`` (asset),
Cr ``model:<m>:revenue`` (income), idempotency key ``revenue:<revenue_event_id>``.
"""

from __future__ import annotations

import hashlib
import re
import uuid
from datetime import UTC, datetime, timedelta
from typing import Final

from sqlalchemy import text
from sqlmodel import Session

from ledger.errors import Conflict, ErrorCollector, NotFound, ValidationFailed
from ledger.journal import service as journal
from ledger.models.models import Model
from ledger.periods import service as periods
from ledger.revenue.models import RevenueEvent
from ledger.revenue.queries import revenue_by_ref
from ledger.types import AMOUNT_MINOR_MAX, utcnow

EXTERNAL_REF_LENGTH_MAX: Final = 200
_CURRENCY = re.compile(r"[A-Z]{3}")


def revenue_accounts(model_id: uuid.UUID) -> tuple[str, str]:
    """``(receivable, income)`` account codes of a model."""
    return f"model:{model_id}:revenue_receivable", f"model:{model_id}:revenue"


def record_revenue(
    session: Session,
    model_id: uuid.UUID,
    amount_minor: int,
    currency: str,
    external_ref: str,
    occurred_at: datetime,
) -> RevenueEvent:
    """Record revenue of ``model_id`` and post its recognition, or return the event
    already recorded under ``external_ref``.

    ``amount_minor`` is a positive integer ≤ ``AMOUNT_MINOR_MAX`` in minor units of
    ``currency``, which must be the currency of the agreement governing the period of
    ``occurred_at`` (timezone-aware, not in the future). That period must be open.
    Raises ``ValidationFailed`` (bad input, ``occurred_in_future``, ``currency_mismatch``,
    ``no_agreement``),
    ``StateError`` (``period_not_open``), ``NotFound`` (model), ``Conflict``
    (``external_ref_conflict``). Flushes; the caller commits.
    """
    _validate(amount_minor, currency, external_ref, occurred_at)
    request_hash = _request_hash(amount_minor, currency, occurred_at)
    session.flush()

    # A replay is answered from the stored event, even after its period closed.
    stored = revenue_by_ref(session, model_id, external_ref)
    if stored is not None:
        return _replayed(stored, request_hash, amount_minor, currency, occurred_at)

    if session.get(Model, model_id) is None:
        raise NotFound(f"model {model_id} does not exist", field="model_id")
    if occurred_at > utcnow() + timedelta(seconds=periods.FUTURE_TOLERANCE_S):
        raise ValidationFailed(
            f"occurred_at {occurred_at.isoformat()} is in the future; report revenue once it "
            "has been earned",
            field="occurred_at",
            code="occurred_in_future",
        )
    period = periods.period_for(session, model_id, occurred_at)
    period = periods.lock_period_for_share(session, period.id)
    agreement = periods.governing_agreement(session, model_id, occurred_at)
    if agreement is None or agreement.effective_from > occurred_at:
        raise ValidationFailed(
            f"model {model_id} has no royalty agreement in force at {occurred_at.isoformat()}; "
            "create an agreement before reporting revenue",
            field="occurred_at",
            code="no_agreement",
        )
    if agreement.currency != currency:
        raise ValidationFailed(
            f"revenue is in {currency} but the agreement of model {model_id} for period "
            f"{period.key} (version {agreement.version}) is in {agreement.currency}; "
            f"report the amount in {agreement.currency}",
            field="currency",
            code="currency_mismatch",
        )
    periods.assert_open(period)

    event_id = session.execute(
        text(
            """
            INSERT INTO revenue_event
                   (id, model_id, period_id, amount_minor, currency, external_ref,
                    occurred_at, request_hash)
            VALUES (gen_random_uuid(), :model, :period, :amount, :currency, :ref,
                    :occurred_at, :hash)
                ON CONFLICT (model_id, external_ref) DO NOTHING
            RETURNING id
            """
        ),
        {
            "model": model_id,
            "period": period.id,
            "amount": amount_minor,
            "currency": currency,
            "ref": external_ref,
            "occurred_at": occurred_at,
            "hash": request_hash,
        },
    ).scalar_one_or_none()
    if event_id is None:
        # A concurrent recorder of the same reference committed first.
        raced = revenue_by_ref(session, model_id, external_ref)
        assert raced is not None
        return _replayed(raced, request_hash, amount_minor, currency, occurred_at)

    receivable, income = revenue_accounts(model_id)
    posted = journal.post(
        session,
        idempotency_key=f"revenue:{event_id}",
        kind="revenue_recognition",
        description=f"revenue {external_ref} of model {model_id} in period {period.key}",
        entries=[
            journal.debit(receivable, "asset", amount_minor, currency),
            journal.credit(income, "income", amount_minor, currency),
        ],
        reference={
            "revenue_event_id": str(event_id),
            "model_id": str(model_id),
            "period_id": str(period.id),
            "external_ref": external_ref,
        },
    )
    session.execute(
        text("UPDATE revenue_event SET journal_transaction_id = :tx WHERE id = :id"),
        {"tx": posted.id, "id": event_id},
    )
    event = session.get(RevenueEvent, event_id, populate_existing=True)
    assert event is not None
    return event


def _validate(amount_minor: int, currency: str, external_ref: str, occurred_at: datetime) -> None:
    errors = ErrorCollector()
    if type(amount_minor) is not int or not 0 < amount_minor <= AMOUNT_MINOR_MAX:
        errors.add(
            "amount_minor",
            "invalid_value",
            f"amount_minor must be a positive integer of minor units ≤ {AMOUNT_MINOR_MAX}, "
            f"got {amount_minor!r}",
        )
    if not isinstance(currency, str) or not _CURRENCY.fullmatch(currency):
        errors.add(
            "currency",
            "invalid_value",
            f"currency must be an ISO 4217 code like EUR, got {currency!r}",
        )
    if (
        not isinstance(external_ref, str)
        or not 0 < len(external_ref) <= EXTERNAL_REF_LENGTH_MAX
        or not external_ref.isprintable()
    ):
        errors.add(
            "external_ref",
            "invalid_value",
            f"external_ref must be 1 to {EXTERNAL_REF_LENGTH_MAX} printable characters "
            "(your invoice or payment id)",
        )
    if not isinstance(occurred_at, datetime):
        errors.add("occurred_at", "invalid_type", "occurred_at must be a datetime")
    elif occurred_at.tzinfo is None or occurred_at.utcoffset() is None:
        errors.add(
            "occurred_at",
            "naive_datetime",
            f"occurred_at {occurred_at.isoformat()} has no time zone; send a time with an "
            "offset (e.g. 2026-11-23T10:00:00Z)",
        )
    errors.raise_if_any()


def _request_hash(amount_minor: int, currency: str, occurred_at: datetime) -> str:
    instant = occurred_at.astimezone(UTC).isoformat()
    return hashlib.sha256(f"{amount_minor}|{currency}|{instant}".encode()).hexdigest()


def _replayed(
    stored: RevenueEvent,
    request_hash: str,
    amount_minor: int,
    currency: str,
    occurred_at: datetime,
) -> RevenueEvent:
    if stored.request_hash == request_hash:
        return stored
    differing = [
        name
        for name, old, new in (
            ("amount_minor", stored.amount_minor, amount_minor),
            ("currency", stored.currency, currency),
            ("occurred_at", stored.occurred_at, occurred_at),
        )
        if old != new
    ]
    raise Conflict(
        f"revenue {stored.external_ref!r} of model {stored.model_id} was already recorded "
        f"with a different {', '.join(differing) or 'body'}; a reference names one revenue "
        "event forever: record a correction under a new external_ref",
        field="external_ref",
        code="external_ref_conflict",
        details={"differing_fields": differing, "revenue_event_id": str(stored.id)},
    )
