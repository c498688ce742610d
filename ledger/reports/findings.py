"""Reconciliation findings as finance reads them: the stored runs of
:func:`ledger.settlements.reconcile.reconcile` (the beat's ``usefirst.reconcile`` task and
``usefirst reconcile``), one page at a time. Read-only: reading never runs a
reconciliation (that talks to the chain and writes a run)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from sqlalchemy import select
from sqlmodel import Session, col

from ledger.errors import NotFound
from ledger.periods.models import Period
from ledger.settlements.models import ReconciliationFinding, ReconciliationRun, Settlement


@dataclass(frozen=True)
class FindingRow:
    """One finding with the settlement and period it is about (None: not about one)."""

    finding: ReconciliationFinding
    settlement_key: str | None
    period_id: uuid.UUID | None
    period_key: str | None
    model_id: uuid.UUID | None


def reconciliation_run(session: Session, run_id: uuid.UUID | None) -> ReconciliationRun | None:
    """The run ``run_id`` (``reconciliation_run_not_found`` if there is none), or when
    ``run_id`` is None the latest finished run (None before the first one)."""
    if run_id is not None:
        run = session.get(ReconciliationRun, run_id)
        if run is None:
            raise NotFound(
                f"reconciliation run {run_id} does not exist; omit run_id for the latest run",
                field="run_id",
                code="reconciliation_run_not_found",
            )
        return run
    return session.execute(
        select(ReconciliationRun)
        .where(col(ReconciliationRun.finished_at).is_not(None))
        .order_by(col(ReconciliationRun.started_at).desc(), col(ReconciliationRun.id).desc())
        .limit(1)
    ).scalar_one_or_none()


def findings_page(
    session: Session,
    run_id: uuid.UUID,
    *,
    kind: str | None = None,
    after_id: int | None = None,
    limit: int = 50,
) -> list[FindingRow]:
    """Findings of run ``run_id`` in the order they were recorded (ascending id), after
    ``after_id``, at most ``limit``; only those of ``kind`` when given."""
    query = (
        select(
            ReconciliationFinding,
            col(Settlement.settlement_key),
            col(Period.id),
            col(Period.key),
            col(Period.model_id),
        )
        .join(
            Settlement, col(Settlement.id) == col(ReconciliationFinding.settlement_id), isouter=True
        )
        .join(Period, col(Period.id) == col(Settlement.period_id), isouter=True)
        .where(col(ReconciliationFinding.run_id) == run_id)
        .order_by(col(ReconciliationFinding.id))
        .limit(limit)
    )
    if kind is not None:
        query = query.where(col(ReconciliationFinding.kind) == kind)
    if after_id is not None:
        query = query.where(col(ReconciliationFinding.id) > after_id)
    return [
        FindingRow(finding, key, period_id, period_key, model_id)
        for finding, key, period_id, period_key, model_id in session.execute(query).all()
    ]
