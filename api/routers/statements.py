"""Owners: statement lines of closed periods, their explanation, and claim data.

Who may do what: an owner reads the lines and claims of the addresses linked to its
account; finance reads everyone's (and filters by address); model teams and admins get
403 (model teams read whole statements through ``/v1/periods``). An address that is not
the owner's answers 404, exactly like an address without a line, so nothing is revealed
about other payees.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from sqlmodel import Session

import attribution as attr
from api.deps import Principal, SessionDep, require_roles
from api.pagination import LIMIT_DEFAULT, Page, check_limit, cursor_key, page
from api.schemas.statements import (
    ClaimOut,
    StatementDetailOut,
    StatementLineOut,
    claim_out,
    statement_line_out,
)
from ledger.errors import NotFound
from ledger.owners import queries
from ledger.owners.service import normalize_address
from ledger.periods.close import load_statement
from ledger.periods.models import Period

router = APIRouter(tags=["owners: statements"])
ReaderDep = Annotated[Principal, Depends(require_roles("owner", "finance"))]
_NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {"description": "No such line (or not one of your addresses)."}
}


def _readable(session: Session, principal: Principal, address: str) -> str:
    """``address`` checksummed, if ``principal`` may read its statements; 404 otherwise."""
    checksummed = normalize_address(address)
    if principal.role != "finance" and checksummed not in principal.owner_addresses(session):
        raise NotFound(
            f"{checksummed} is not one of your addresses",
            field="address",
            code="statement_line_not_found",
        )
    return checksummed


@router.get(
    "/statements",
    response_model=Page[StatementLineOut],
    summary="Your statement lines across closed periods, newest first",
    description="Owners: the lines of their linked addresses (`address` narrows to one); "
    "finance: every line, or one address's.",
)
def list_statements(
    session: SessionDep,
    principal: ReaderDep,
    address: Annotated[str | None, Query()] = None,
    model_id: Annotated[uuid.UUID | None, Query()] = None,
    cursor: Annotated[str | None, Query()] = None,
    limit: Annotated[int, Query()] = LIMIT_DEFAULT,
) -> Page[StatementLineOut]:
    check_limit(limit)
    addresses: set[str] | None
    if address is not None:
        addresses = {_readable(session, principal, address)}
    elif principal.role == "finance":
        addresses = None
    else:
        addresses = principal.owner_addresses(session)
    after = cursor_key(cursor, datetime, uuid.UUID, str)
    rows = queries.statement_lines_page(
        session, addresses=addresses, model_id=model_id, after=after, limit=limit + 1
    )
    items, next_cursor = page(rows, limit, lambda line: line.sort_key)
    return Page[StatementLineOut](
        items=[statement_line_out(line) for line in items], next_cursor=next_cursor
    )


@router.get(
    "/statements/{period_id}/{address}",
    response_model=StatementDetailOut,
    summary="One statement line with the derivation of its amounts",
    responses=_NOT_FOUND,
)
def get_statement_line(
    period_id: uuid.UUID, address: str, session: SessionDep, principal: ReaderDep
) -> StatementDetailOut:
    checksummed = _readable(session, principal, address)
    line = queries.statement_line(session, period_id, checksummed)
    period = session.get(Period, period_id)
    assert period is not None
    explained = attr.explain(load_statement(session, period), checksummed)
    return StatementDetailOut(**statement_line_out(line).model_dump(), explain=explained)


@router.get(
    "/claims/{period_id}/{address}",
    response_model=ClaimOut,
    summary="What a payee's wallet sends to claim its payout",
    description="404 `settlement_not_prepared` before the period is anchored, "
    "`settlement_revoked`, or `no_claim` when the line was carried forward.",
    responses=_NOT_FOUND,
)
def get_claim(
    period_id: uuid.UUID, address: str, session: SessionDep, principal: ReaderDep
) -> ClaimOut:
    return claim_out(queries.claim_data(session, period_id, _readable(session, principal, address)))
