"""Period close: ``open → closing → closed``, producing the statement and its journal.

``begin_close`` moves an open period to ``closing`` (its own transaction, so new
events are refused from that commit on). ``finish_close`` gathers the rollups,
runs the pure attribution engine, stores the statement and its lines and posts
the journal, all in one transaction, then marks the period ``closed``. Both are
idempotent: re-running a finished close returns the stored statement and posts
nothing (the journal posting has a fixed idempotency key too).

Journal (currency of the agreement; see docs/ARCHITECTURE.md "Chart of accounts"):
- accrual: Dr ``model:<m>:royalty_expense`` Σaccrued, Cr ``payee:<a>:royalty_accrued`` per line;
- adjustments: Dr/Cr ``model:<m>:royalty_adjustment``, Cr/Dr ``payee:<a>:royalty_accrued``;
- payout due: Dr ``payee:<a>:royalty_accrued``, Cr ``payee:<a>:royalty_payable`` per payable line.
The balance left in ``royalty_accrued`` is exactly the payee's carried-forward amount.
"""

from __future__ import annotations

import hashlib
import uuid
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from sqlalchemy import insert, select, text
from sqlmodel import Session, col

import attribution as attr
from ledger.errors import StateError
from ledger.journal import service as journal
from ledger.models.models import Agreement
from ledger.periods.models import Period, PeriodAdjustment, PeriodStatement, StatementLine
from ledger.periods.service import lock_period_for_update
from ledger.types import utcnow

CLOSED_STATES = ("closed", "anchored", "paid")


@dataclass(frozen=True)
class CloseOutcome:
    period_id: uuid.UUID
    state: str
    statement_hash: str
    already_closed: bool
    line_count: int
    pool_minor: int
    payable_total_minor: int
    no_accrual_reason: str | None


def _lock_period(session: Session, period_id: uuid.UUID) -> Period:
    # Serialise closes of one period across processes; the row lock also waits for
    # ingestion transactions holding FOR SHARE on the period to finish.
    session.execute(
        text("SELECT pg_advisory_xact_lock(hashtextextended(:k, 0))"), {"k": f"close:{period_id}"}
    )
    return lock_period_for_update(session, period_id)


def begin_close(session: Session, period_id: uuid.UUID) -> Period:
    """``open → closing``; a period already closing or closed is returned as is."""
    period = _lock_period(session, period_id)
    if period.state == "open":
        earlier_open = (
            session.execute(
                select(col(Period.key)).where(
                    col(Period.model_id) == period.model_id,
                    col(Period.starts_at) < period.starts_at,
                    col(Period.state).in_(("open", "closing")),
                )
            )
            .scalars()
            .first()
        )
        if earlier_open is not None:
            raise StateError(
                f"period {earlier_open} of this model is still open; close periods in order "
                f"(carry-forward balances flow from one period to the next)",
                field="period_id",
                code="earlier_period_open",
            )
        period.state = "closing"
        period.closing_started_at = utcnow()
        session.add(period)
        session.flush()
    return period


def finish_close(session: Session, period_id: uuid.UUID) -> CloseOutcome:
    """``closing → closed``: compute, store and post the statement in this transaction."""
    period = _lock_period(session, period_id)
    if period.state in CLOSED_STATES:
        return _outcome(session, period, already_closed=True)
    if period.state != "closing":
        raise StateError(
            f"period {period.key} is {period.state}; start the close first (open → closing)",
            field="period_id",
            code="period_not_closing",
        )
    agreement = agreement_for_period(session, period)
    period_input = build_period_input(session, period, agreement)
    statement = attr.compute_statement(period_input)
    document = attr.canonical_json(statement)
    digest = hashlib.sha256(document).hexdigest()
    period.agreement_id = agreement.id
    period.statement_hash = digest
    period.no_accrual_reason = statement.no_accrual_reason
    period.revenue_minor = statement.revenue_minor
    period.pool_minor = statement.pool_minor
    period.state = "closed"
    period.closed_at = utcnow()
    session.add(period)
    session.add(PeriodStatement(period_id=period.id, canonical_json=document, sha256=digest))
    _store_lines(session, period.id, statement)
    _post_journal(session, period, statement)
    session.flush()
    return _outcome(session, period, already_closed=False)


def close_period(session: Session, period_id: uuid.UUID) -> CloseOutcome:
    """Both steps in the caller's transaction (used where no other writer races)."""
    begin_close(session, period_id)
    return finish_close(session, period_id)


def agreement_for_period(session: Session, period: Period) -> Agreement:
    """The agreement version in force at the period start, else the first one that
    took effect during the period (a model whose agreement began mid-month)."""
    base = select(Agreement).where(col(Agreement.model_id) == period.model_id)
    in_force = session.execute(
        base.where(col(Agreement.effective_from) <= period.starts_at)
        .order_by(col(Agreement.version).desc())
        .limit(1)
    ).scalar_one_or_none()
    if in_force is not None:
        return in_force
    first_in_period = session.execute(
        base.where(col(Agreement.effective_from) < period.ends_at)
        .order_by(col(Agreement.version).asc())
        .limit(1)
    ).scalar_one_or_none()
    if first_in_period is None:
        raise StateError(
            f"model {period.model_id} has no royalty agreement in force during {period.key}; "
            "create an agreement first",
            field="period_id",
            code="no_agreement",
        )
    return first_in_period


def build_period_input(session: Session, period: Period, agreement: Agreement) -> attr.PeriodInput:
    """Read rollups, revenue, owners, carry-ins and adjustments into the engine's input."""
    params = {"model": period.model_id, "period": period.id, "start": period.starts_at}
    revenue_minor = int(
        session.execute(
            text(
                "SELECT COALESCE(sum(amount_minor), 0) FROM revenue_event WHERE period_id = :period"
            ),
            params,
        ).scalar_one()
    )
    training_rows = session.execute(
        text(
            """
            SELECT r.dataset_id, sum(r.quantity) AS units,
                   array_agg(p.key || ':' || r.unit ORDER BY p.starts_at, r.unit) AS refs
              FROM usage_rollup r JOIN period p ON p.id = r.period_id
             WHERE r.model_id = :model AND r.kind = 'train' AND p.starts_at <= :start
             GROUP BY r.dataset_id
            """
        ),
        params,
    ).all()
    training = tuple(
        attr.TrainingRollup(
            dataset_id=str(row.dataset_id),
            weighted_units=int(row.units),
            rollup_ids=tuple(f"rollup:train:{row.dataset_id}:{ref}" for ref in row.refs),
        )
        for row in training_rows
    )
    retrieval_rows = session.execute(
        text(
            """
            SELECT dataset_id, list_length, rank, quantity
              FROM usage_rollup
             WHERE period_id = :period AND kind = 'rag'
            """
        ),
        params,
    ).all()
    retrieval = tuple(
        attr.RetrievalRollup(
            dataset_id=str(row.dataset_id),
            list_length=int(row.list_length),
            rank=int(row.rank),
            hits=int(row.quantity),
            rollup_ids=(f"rollup:rag:{row.dataset_id}:{period.key}:{row.list_length}:{row.rank}",),
        )
        for row in retrieval_rows
    )
    dataset_ids = {r.dataset_id for r in training} | {r.dataset_id for r in retrieval}
    datasets = _dataset_owners(session, period, dataset_ids)
    return attr.PeriodInput(
        model_id=str(period.model_id),
        period_id=str(period.id),
        revenue_minor=revenue_minor,
        agreement=attr.Agreement(
            agreement_id=str(agreement.id),
            version=agreement.version,
            royalty_rate_bps=agreement.royalty_rate_bps,
            training_share_bps=agreement.training_share_bps,
            min_payout_minor=int(agreement.min_payout_minor),
            currency=agreement.currency,
            retrieval_policy=agreement.retrieval_policy,
        ),
        training=training,
        retrieval=retrieval,
        datasets=datasets,
        carry_in=_carry_in(session, period),
        adjustments=_adjustments(session, period),
    )


def _dataset_owners(
    session: Session, period: Period, dataset_ids: set[str]
) -> tuple[attr.DatasetOwners, ...]:
    """Co-owners of the terms version that was confirmed most recently before the
    period end (the version under which the period's usage was accepted)."""
    if not dataset_ids:
        return ()
    rows = session.execute(
        text(
            """
            WITH version AS (
                SELECT DISTINCT ON (d.id) d.id AS dataset_id,
                       COALESCE(c.terms_version, d.terms_version) AS terms_version
                  FROM dataset d
                  LEFT JOIN dataset_confirmation c
                    ON c.dataset_id = d.id AND c.confirmed_from < :ends_at
                 WHERE d.id = ANY(:ids)
                 ORDER BY d.id, c.confirmed_from DESC NULLS LAST
            )
            SELECT o.dataset_id, o.address, o.share_bps
              FROM dataset_co_owner o
              JOIN version v ON v.dataset_id = o.dataset_id AND v.terms_version = o.terms_version
             ORDER BY o.dataset_id, o.address
            """
        ),
        {"ends_at": period.ends_at, "ids": [uuid.UUID(i) for i in dataset_ids]},
    ).all()
    owners: dict[str, list[attr.CoOwner]] = defaultdict(list)
    for row in rows:
        owners[str(row.dataset_id)].append(
            attr.CoOwner(address=row.address, share_bps=row.share_bps)
        )
    return tuple(
        attr.DatasetOwners(dataset_id=dataset_id, co_owners=tuple(co_owners))
        for dataset_id, co_owners in sorted(owners.items())
    )


def _previous_closed_period(session: Session, period: Period) -> Period | None:
    return session.execute(
        select(Period)
        .where(
            col(Period.model_id) == period.model_id,
            col(Period.starts_at) < period.starts_at,
            col(Period.state).in_(CLOSED_STATES),
        )
        .order_by(col(Period.starts_at).desc())
        .limit(1)
    ).scalar_one_or_none()


def _carry_in(session: Session, period: Period) -> tuple[attr.CarryIn, ...]:
    previous = _previous_closed_period(session, period)
    if previous is None:
        return ()
    rows = session.execute(
        select(col(StatementLine.address), col(StatementLine.carried_forward_minor)).where(
            col(StatementLine.period_id) == previous.id,
            col(StatementLine.carried_forward_minor) != 0,
        )
    ).all()
    return tuple(
        attr.CarryIn(address=row.address, balance_minor=int(row.carried_forward_minor))
        for row in rows
    )


def _adjustments(session: Session, period: Period) -> tuple[attr.Adjustment, ...]:
    rows = session.execute(
        select(PeriodAdjustment).where(col(PeriodAdjustment.period_id) == period.id)
    ).scalars()
    return tuple(
        attr.Adjustment(
            address=row.address,
            amount_minor=int(row.amount_minor),
            reason=row.reason,
            reference=row.reference,
        )
        for row in rows
    )


def _store_lines(session: Session, period_id: uuid.UUID, statement: attr.Statement) -> None:
    document = attr.statement_to_json_object(statement)
    rows: list[dict[str, Any]] = []
    lines_json = document["lines"]
    assert isinstance(lines_json, list)
    for line, line_json in zip(statement.lines, lines_json, strict=True):
        rows.append(
            {
                "period_id": period_id,
                "address": line.address,
                "accrued_minor": line.accrued_minor,
                "carry_in_minor": line.carry_in_minor,
                "adjustment_minor": line.adjustment_minor,
                "payable_minor": line.payable_minor,
                "carried_forward_minor": line.carried_forward_minor,
                "breakdown": line_json.get("sources", []),
            }
        )
    if rows:
        session.execute(insert(StatementLine), rows)


def _post_journal(session: Session, period: Period, statement: attr.Statement) -> None:
    currency = statement.currency
    model = f"model:{period.model_id}"
    entries: list[tuple[str, str, int, str]] = []
    accrued_total = statement.totals.accrued_total_minor
    if accrued_total:
        entries.append((f"{model}:royalty_expense", "expense", accrued_total, currency))
    for line in statement.lines:
        accrued_account = f"payee:{line.address}:royalty_accrued"
        if line.accrued_minor:
            entries.append((accrued_account, "liability", -line.accrued_minor, currency))
        if line.adjustment_minor:
            entries.append(
                (f"{model}:royalty_adjustment", "expense", line.adjustment_minor, currency)
            )
            entries.append((accrued_account, "liability", -line.adjustment_minor, currency))
        if line.payable_minor:
            entries.append((accrued_account, "liability", line.payable_minor, currency))
            entries.append(
                (
                    f"payee:{line.address}:royalty_payable",
                    "liability",
                    -line.payable_minor,
                    currency,
                )
            )
    if not entries:
        return
    journal.post(
        session,
        idempotency_key=f"period:{period.id}:close",
        kind="royalty_accrual",
        description=f"royalty accrual for model {period.model_id} period {period.key}",
        entries=entries,
        reference={"period_id": str(period.id), "statement_hash": period.statement_hash},
    )


def _outcome(session: Session, period: Period, *, already_closed: bool) -> CloseOutcome:
    line_count, payable_total = session.execute(
        text(
            "SELECT count(*), COALESCE(sum(payable_minor), 0) FROM statement_line "
            "WHERE period_id = :period"
        ),
        {"period": period.id},
    ).one()
    return CloseOutcome(
        period_id=period.id,
        state=period.state,
        statement_hash=period.statement_hash or "",
        already_closed=already_closed,
        line_count=int(line_count),
        pool_minor=int(period.pool_minor or 0),
        payable_total_minor=int(payable_total),
        no_accrual_reason=period.no_accrual_reason,
    )


def statement_bytes(session: Session, period: Period) -> bytes:
    """The canonical statement JSON of a closed period, exactly as hashed."""
    stored = session.get(PeriodStatement, period.id)
    if stored is None:
        raise StateError(
            f"period {period.key} has no statement yet (state {period.state}); close it first",
            field="period_id",
            code="no_statement",
        )
    return bytes(stored.canonical_json)


def load_statement(session: Session, period: Period) -> attr.Statement:
    """The stored statement of a closed period, parsed (and so re-checked)."""
    return attr.statement_from_json(statement_bytes(session, period))
