"""Reads for accounts, their keys and addresses, and an owner's statements and claims.

Every list is keyset-paginated: it takes ``after`` (the sort key of the last row already
returned, or None) and ``limit`` and returns up to ``limit`` rows in a fixed order, so a
page never skips or repeats a row when rows are inserted meanwhile.

Statements and claims are read for *addresses*: an owner account asks for the addresses
linked to it, finance for any. A closed statement is never edited, so these reads need
no locks.
"""

from __future__ import annotations

import uuid
from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import and_, func, select, tuple_
from sqlmodel import Session, col

from contracts.merkle import StandardMerkleTree
from ledger.access.models import ApiKey
from ledger.errors import NotFound
from ledger.models.models import Agreement, Model
from ledger.owners.models import Account, Owner
from ledger.periods.close import CLOSED_STATES
from ledger.periods.models import Period, StatementLine
from ledger.settlements.models import SettlementClaim
from ledger.settlements.queries import settlement_for_period

# --- accounts, keys, addresses ----------------------------------------------------------


def accounts_page(
    session: Session, *, role: str | None, after: tuple[datetime, uuid.UUID] | None, limit: int
) -> list[Account]:
    """Accounts oldest first (``created_at``, ``id``), optionally of one role."""
    query = select(Account).order_by(col(Account.created_at), col(Account.id))
    if role is not None:
        query = query.where(col(Account.role) == role)
    if after is not None:
        query = query.where(tuple_(col(Account.created_at), col(Account.id)) > tuple_(*after))
    return list(session.execute(query.limit(limit)).scalars())


def api_keys_page(
    session: Session,
    account_id: uuid.UUID,
    *,
    after: tuple[datetime, uuid.UUID] | None,
    limit: int,
) -> list[ApiKey]:
    """The account's keys (revoked ones too), oldest first. Only hashes are stored."""
    query = (
        select(ApiKey)
        .where(col(ApiKey.account_id) == account_id)
        .order_by(col(ApiKey.created_at), col(ApiKey.id))
    )
    if after is not None:
        query = query.where(tuple_(col(ApiKey.created_at), col(ApiKey.id)) > tuple_(*after))
    return list(session.execute(query.limit(limit)).scalars())


def get_api_key(session: Session, account_id: uuid.UUID, key_id: uuid.UUID) -> ApiKey:
    """The key of ``account_id``; NotFound (``api_key_not_found``) also for another
    account's key, so a key id says nothing about other accounts."""
    key = session.get(ApiKey, key_id)
    if key is None or key.account_id != account_id:
        raise NotFound(
            f"account {account_id} has no API key {key_id}",
            field="key_id",
            code="api_key_not_found",
        )
    return key


def owner_addresses_page(
    session: Session, account_id: uuid.UUID, *, after: str | None, limit: int
) -> list[Owner]:
    """The owner records linked to ``account_id``, by address."""
    query = select(Owner).where(col(Owner.account_id) == account_id).order_by(col(Owner.address))
    if after is not None:
        query = query.where(col(Owner.address) > after)
    return list(session.execute(query.limit(limit)).scalars())


# --- statements -------------------------------------------------------------------------


@dataclass(frozen=True)
class OwnerStatementLine:
    """One payee's line of one closed period, with what a reader needs around it.

    Amounts are minor units of ``currency``; ``breakdown`` is the line's sources exactly as
    in the canonical statement (dataset, kind, weight, amounts)."""

    period_id: uuid.UUID
    period_key: str
    period_state: str
    starts_at: datetime
    ends_at: datetime
    model_id: uuid.UUID
    model_name: str
    currency: str
    address: str
    accrued_minor: int
    carry_in_minor: int
    adjustment_minor: int
    payable_minor: int
    carried_forward_minor: int
    breakdown: list[dict[str, Any]]
    statement_hash: str | None

    @property
    def sort_key(self) -> tuple[datetime, uuid.UUID, str]:
        return (self.starts_at, self.period_id, self.address)


def _line_query() -> Any:
    return (
        select(StatementLine, Period, Model.name, Agreement.currency)  # type: ignore[call-overload]
        .join(Period, col(Period.id) == col(StatementLine.period_id))
        .join(Model, col(Model.id) == col(Period.model_id))
        .join(Agreement, col(Agreement.id) == col(Period.agreement_id), isouter=True)
        .where(col(Period.state).in_(CLOSED_STATES))
    )


def _line(row: Any) -> OwnerStatementLine:
    line, period, model_name, currency = row
    return OwnerStatementLine(
        period_id=period.id,
        period_key=period.key,
        period_state=period.state,
        starts_at=period.starts_at,
        ends_at=period.ends_at,
        model_id=period.model_id,
        model_name=model_name,
        currency=currency or "",
        address=line.address,
        accrued_minor=line.accrued_minor,
        carry_in_minor=line.carry_in_minor,
        adjustment_minor=line.adjustment_minor,
        payable_minor=line.payable_minor,
        carried_forward_minor=line.carried_forward_minor,
        breakdown=list(line.breakdown),
        statement_hash=period.statement_hash,
    )


def statement_lines_page(
    session: Session,
    *,
    addresses: Collection[str] | None,
    model_id: uuid.UUID | None,
    after: tuple[datetime, uuid.UUID, str] | None,
    limit: int,
) -> list[OwnerStatementLine]:
    """Lines of closed (closed, anchored or paid) periods, newest period first.

    ``addresses`` None means every payee (finance); an empty collection matches nothing.
    """
    if addresses is not None and not addresses:
        return []
    query = _line_query().order_by(
        col(Period.starts_at).desc(), col(Period.id).desc(), col(StatementLine.address).desc()
    )
    if addresses is not None:
        query = query.where(col(StatementLine.address).in_(sorted(addresses)))
    if model_id is not None:
        query = query.where(col(Period.model_id) == model_id)
    if after is not None:
        query = query.where(
            tuple_(col(Period.starts_at), col(Period.id), col(StatementLine.address))
            < tuple_(*after)
        )
    return [_line(row) for row in session.execute(query.limit(limit)).all()]


def statement_line(session: Session, period_id: uuid.UUID, address: str) -> OwnerStatementLine:
    """``address``'s line of a closed period; NotFound (``statement_line_not_found``) when
    the period is not closed or the address has no line in it."""
    row = session.execute(
        _line_query().where(
            and_(col(StatementLine.period_id) == period_id, col(StatementLine.address) == address)
        )
    ).one_or_none()
    if row is None:
        raise NotFound(
            f"no statement line for {address} in a closed period {period_id}",
            field="address",
            code="statement_line_not_found",
        )
    return _line(row)


# --- claims -----------------------------------------------------------------------------


@dataclass(frozen=True)
class ClaimData:
    """Everything a payee's wallet needs to call ``RoyaltySettlement.claim``.

    ``amount_units`` is in token base units; ``proof`` are the sibling hashes (0x hex) from
    the leaf ``(account, amount_units)`` up to ``merkle_root``. ``claimable`` is True once
    the settlement is confirmed on chain (not yet claimed)."""

    period_id: uuid.UUID
    settlement_key: str
    settlement_state: str
    contract_address: str
    chain_id: int
    token_address: str
    merkle_root: str
    account: str
    amount_units: int
    payable_minor: int
    proof: list[str]
    claimed: bool
    claim_tx_hash: str | None

    @property
    def claimable(self) -> bool:
        return self.settlement_state == "confirmed" and not self.claimed


def claim_data(session: Session, period_id: uuid.UUID, address: str) -> ClaimData:
    """The claim of ``address`` in the period's settlement, from the stored tree dump.

    NotFound with ``settlement_not_prepared`` when the period has no settlement yet (not
    anchored), ``settlement_revoked`` when it was revoked, or ``no_claim`` when the address
    has no payable line (its balance was carried forward, or it has no line at all).
    """
    settlement = settlement_for_period(session, period_id)
    if settlement is None:
        raise NotFound(
            f"period {period_id} has no settlement yet; claims open once it is anchored",
            field="period_id",
            code="settlement_not_prepared",
        )
    if settlement.state == "revoked":
        raise NotFound(
            f"the settlement of period {period_id} was revoked; nothing can be claimed from it",
            field="period_id",
            code="settlement_revoked",
        )
    tree = StandardMerkleTree.load(settlement.tree_dump)
    try:
        index = tree.index_of(address)
    except KeyError:
        raise NotFound(
            f"{address} has nothing to claim in period {period_id}: no payable line (a "
            "balance below the minimum payout is carried forward)",
            field="address",
            code="no_claim",
        ) from None
    account, amount_units = tree.values[index]
    claim = session.execute(
        select(SettlementClaim).where(
            col(SettlementClaim.settlement_id) == settlement.id,
            # The indexer stores the account as the chain's log spelled it.
            func.lower(col(SettlementClaim.account)) == account.lower(),
        )
    ).scalar_one_or_none()
    return ClaimData(
        period_id=period_id,
        settlement_key=settlement.settlement_key,
        settlement_state=settlement.state,
        contract_address=settlement.contract_address,
        chain_id=int(settlement.chain_id),
        token_address=settlement.token_address,
        merkle_root=settlement.merkle_root,
        account=account,
        amount_units=int(amount_units),
        payable_minor=int(amount_units) // int(settlement.units_per_minor),
        proof=tree.get_proof_hex(index),
        claimed=claim is not None,
        claim_tx_hash=claim.tx_hash if claim is not None else None,
    )
