"""Reads and small conditional writes shared by anchoring, indexing and reconciliation."""

from __future__ import annotations

import uuid

from sqlalchemy import func, select, text, update
from sqlmodel import Session, col

from ledger.errors import NotFound
from ledger.journal.models import JournalTransaction
from ledger.models.models import Agreement
from ledger.periods import service as periods
from ledger.periods.models import Period
from ledger.settlements import postings
from ledger.settlements.models import Settlement, SettlementClaim, SettlementRevocation


def settlement_for_period(session: Session, period_id: uuid.UUID) -> Settlement | None:
    return session.execute(
        select(Settlement)
        .where(col(Settlement.period_id) == period_id)
        .execution_options(populate_existing=True)
    ).scalar_one_or_none()


def require_settlement(session: Session, period_id: uuid.UUID, *, lock: bool = False) -> Settlement:
    """The period's settlement (``FOR UPDATE`` with ``lock``); NotFound tells to prepare it."""
    query = select(Settlement).where(col(Settlement.period_id) == period_id)
    if lock:
        query = query.with_for_update()
    settlement = session.execute(
        query.execution_options(populate_existing=True)
    ).scalar_one_or_none()
    if settlement is None:
        raise NotFound(
            f"period {period_id} has no settlement; prepare it first (usefirst anchor)",
            field="period_id",
            code="settlement_not_prepared",
        )
    return settlement


def settlement_by_key(
    session: Session,
    chain_id: int,
    contract_address: str,
    settlement_key: str,
    *,
    lock: bool = False,
) -> Settlement | None:
    """The settlement whose current attempt is ``settlement_key`` on that contract
    (``FOR UPDATE`` with ``lock``)."""
    query = select(Settlement).where(
        col(Settlement.settlement_key) == settlement_key.lower(),
        col(Settlement.chain_id) == chain_id,
        col(Settlement.contract_address) == contract_address,
    )
    if lock:
        query = query.with_for_update()
    return session.execute(query.execution_options(populate_existing=True)).scalar_one_or_none()


def revocation_by_key(
    session: Session, chain_id: int, contract_address: str, settlement_key: str
) -> SettlementRevocation | None:
    """The recorded revocation of the on-chain id ``settlement_key``, if any."""
    return session.execute(
        select(SettlementRevocation)
        .where(
            col(SettlementRevocation.settlement_key) == settlement_key.lower(),
            col(SettlementRevocation.chain_id) == chain_id,
            col(SettlementRevocation.contract_address) == contract_address,
        )
        .execution_options(populate_existing=True)
    ).scalar_one_or_none()


def revocations_of(session: Session, settlement_id: uuid.UUID) -> list[SettlementRevocation]:
    """Every revoked attempt of a settlement, oldest first."""
    return list(
        session.execute(
            select(SettlementRevocation)
            .where(col(SettlementRevocation.settlement_id) == settlement_id)
            .order_by(col(SettlementRevocation.attempt))
        )
        .scalars()
        .all()
    )


def funding_transaction(
    session: Session, settlement_id: uuid.UUID, attempt: int
) -> JournalTransaction | None:
    """The funding posted for ``attempt`` of a settlement, if it was."""
    return session.execute(
        select(JournalTransaction).where(
            col(JournalTransaction.idempotency_key) == postings.funding_key(settlement_id, attempt)
        )
    ).scalar_one_or_none()


def reopen_anchored_period(session: Session, period_id: uuid.UUID) -> bool:
    """``anchored → closed`` after the period's settlement was revoked on chain, so finance
    can anchor it again; a conditional update, True if it moved (False: not anchored).

    Not one of ``periods.TRANSITIONS``: only a revocation the ledger has applied (funding
    reversed, settlement revoked, in the same transaction) takes a period back.
    """
    moved = session.execute(
        update(Period)
        .where(col(Period.id) == period_id, col(Period.state) == "anchored")
        .values(state="closed", anchored_at=None)
        .execution_options(synchronize_session=False)
    ).rowcount  # type: ignore[attr-defined]
    return bool(moved == 1)


def payable_lines(session: Session, period_id: uuid.UUID) -> list[tuple[str, int]]:
    """``(address, payable_minor)`` of the period's statement lines with something to pay,
    in address order (the ledger's copy of the statement)."""
    rows = session.execute(
        text(
            "SELECT address, payable_minor FROM statement_line "
            "WHERE period_id = :period AND payable_minor > 0 ORDER BY address"
        ),
        {"period": period_id},
    ).all()
    return [(row.address, int(row.payable_minor)) for row in rows]


def period_currency(session: Session, period: Period) -> str:
    """The currency of the agreement the period was closed under."""
    agreement = session.get(Agreement, period.agreement_id) if period.agreement_id else None
    if agreement is None:
        agreement = periods.governing_agreement(session, period.model_id, period.starts_at)
    if agreement is None:
        raise NotFound(f"period {period.key} has no agreement", field="period_id")
    return agreement.currency


def claim_count(session: Session, settlement_id: uuid.UUID) -> int:
    return int(
        session.execute(
            select(func.count())
            .select_from(SettlementClaim)
            .where(col(SettlementClaim.settlement_id) == settlement_id)
        ).scalar_one()
    )


def mark_paid_if_complete(session: Session, settlement: Settlement) -> bool:
    """``anchored → paid`` once every line of a confirmed settlement is claimed; True if moved."""
    if settlement.state != "confirmed":
        return False
    if claim_count(session, settlement.id) < settlement.line_count:
        return False
    period = periods.lock_period_for_update(session, settlement.period_id)
    if period.state != "anchored":
        return False
    periods.transition(session, period.id, "anchored", "paid")
    return True


def tree_lines(settlement: Settlement) -> dict[str, tuple[str, int]]:
    """The settlement's published lines: lower-case account → (account as stated, units)."""
    return {
        entry["value"][0].lower(): (entry["value"][0], int(entry["value"][1]))
        for entry in settlement.tree_dump["values"]
    }
