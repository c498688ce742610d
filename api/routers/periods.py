"""Finance: periods, their close and anchoring jobs, adjustments, and statements.

Who may do what: finance reads everything and is the only role that closes,
anchors or adjusts; a model team reads the periods of its own models; owners
read their own lines through ``/v1/statements``.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Response
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select
from sqlmodel import Session, col

from api.deps import Principal, SessionDep, require_roles
from api.idempotency import IdempotencyDep
from api.pagination import Page, check_limit, decode_cursor, encode_cursor
from ledger.errors import NotFound, StateError, ValidationFailed
from ledger.models.models import Model
from ledger.owners.service import normalize_address
from ledger.periods.models import Period, PeriodAdjustment
from ledger.settlements.models import Settlement

router = APIRouter(tags=["finance: periods"])
FinanceDep = Annotated[Principal, Depends(require_roles("finance"))]
ReaderDep = Annotated[Principal, Depends(require_roles("finance", "model_team", "admin"))]


class PeriodOut(BaseModel):
    id: uuid.UUID
    model_id: uuid.UUID
    key: str
    starts_at: datetime
    ends_at: datetime
    state: str
    revenue_minor: int | None
    pool_minor: int | None
    statement_hash: str | None
    no_accrual_reason: str | None
    closed_at: datetime | None
    anchored_at: datetime | None
    paid_at: datetime | None
    settlement: dict[str, Any] | None = None


class CloseIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    anchor: bool = Field(
        default=True, description="After closing, anchor the settlement on chain (Celery)."
    )


class AnchorIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reanchor: bool = Field(
        default=False,
        description="Publish the statement again under a new settlement id after the guardian "
        "revoked the last one (its funding was reversed). Without it such a period answers 409 "
        "settlement_revoked.",
    )


class JobAccepted(BaseModel):
    job_id: str
    kind: str
    state: str
    status_url: str


class AdjustmentIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    address: str = Field(description="Payee address (EIP-55 or lower case).")
    amount_minor: int = Field(description="Signed correction in minor units; not zero.")
    reason: str = Field(min_length=3, max_length=2000)
    reference: str = Field(min_length=1, max_length=200, description="Unique per period.")
    corrects_period_id: uuid.UUID | None = None


class AdjustmentOut(BaseModel):
    id: uuid.UUID
    period_id: uuid.UUID
    address: str
    amount_minor: int
    reason: str
    reference: str
    corrects_period_id: uuid.UUID | None


def _visible_period(session: Session, principal: Principal, period_id: uuid.UUID) -> Period:
    """The period, if this principal may see it; 404 otherwise (no existence leak)."""
    period = session.get(Period, period_id)
    if period is not None and principal.role == "model_team":
        model = session.get(Model, period.model_id)
        if model is None or model.account_id != principal.account_id:
            period = None
    if period is None:
        raise NotFound(f"period {period_id} does not exist", field="period_id")
    return period


def _period_out(session: Session, period: Period) -> PeriodOut:
    settlement = session.execute(
        select(Settlement).where(col(Settlement.period_id) == period.id)
    ).scalar_one_or_none()
    out = PeriodOut.model_validate(period, from_attributes=True)
    if settlement is not None:
        out.settlement = {
            "settlement_key": settlement.settlement_key,
            "state": settlement.state,
            "merkle_root": settlement.merkle_root,
            "publish_tx_hash": settlement.publish_tx_hash,
            "contract_address": settlement.contract_address,
            "chain_id": settlement.chain_id,
            "total_units": str(settlement.total_units),
        }
    return out


@router.get("/periods", response_model=Page[PeriodOut], summary="List periods")
def list_periods(
    session: SessionDep,
    principal: ReaderDep,
    model_id: uuid.UUID | None = None,
    state: str | None = None,
    cursor: str | None = None,
    limit: int = 50,
) -> Page[PeriodOut]:
    check_limit(limit)
    query = select(Period).order_by(col(Period.starts_at).desc(), col(Period.id).desc())
    if principal.role == "model_team":
        own = select(col(Model.id)).where(col(Model.account_id) == principal.account_id)
        query = query.where(col(Period.model_id).in_(own))
    if model_id is not None:
        query = query.where(col(Period.model_id) == model_id)
    if state is not None:
        query = query.where(col(Period.state) == state)
    after = decode_cursor(cursor)
    if after is not None:
        try:
            after_start, after_id = datetime.fromisoformat(after[0]), uuid.UUID(after[1])
        except (TypeError, ValueError, IndexError):
            raise ValidationFailed("the cursor is malformed", field="cursor") from None
        query = query.where(
            (col(Period.starts_at) < after_start)
            | ((col(Period.starts_at) == after_start) & (col(Period.id) < after_id))
        )
    rows = list(session.execute(query.limit(limit + 1)).scalars())
    items = [_period_out(session, p) for p in rows[:limit]]
    next_cursor = (
        encode_cursor([rows[limit - 1].starts_at.isoformat(), str(rows[limit - 1].id)])
        if len(rows) > limit
        else None
    )
    return Page[PeriodOut](items=items, next_cursor=next_cursor)


@router.get("/periods/{period_id}", response_model=PeriodOut, summary="One period")
def get_period(period_id: uuid.UUID, session: SessionDep, principal: ReaderDep) -> PeriodOut:
    return _period_out(session, _visible_period(session, principal, period_id))


@router.get(
    "/periods/{period_id}/statement",
    summary="The canonical statement JSON (its SHA-256 is anchored on chain)",
    response_class=Response,
    responses={200: {"content": {"application/json": {}}}},
)
def get_statement(period_id: uuid.UUID, session: SessionDep, principal: ReaderDep) -> Response:
    from ledger.periods.close import statement_bytes

    period = _visible_period(session, principal, period_id)
    document = statement_bytes(session, period)
    return Response(
        document,
        media_type="application/json",
        headers={"X-Statement-SHA256": period.statement_hash or ""},
    )


def _enqueue(
    session: Session, principal: Principal, kind: str, period: Period, params: dict[str, Any]
) -> JobAccepted:
    from api.tasks import start_period_job

    job = start_period_job(session, kind, period.id, params, principal.account_id)
    return JobAccepted(job_id=job.id, kind=kind, state=job.state, status_url=f"/v1/jobs/{job.id}")


@router.post(
    "/periods/{period_id}/close",
    status_code=202,
    response_model=JobAccepted,
    summary="Close the period (and anchor it) on the worker",
)
def close_period(
    period_id: uuid.UUID,
    session: SessionDep,
    principal: FinanceDep,
    idem: IdempotencyDep,
    body: CloseIn | None = None,
) -> Any:
    if (replay := idem.replay()) is not None:
        return replay
    period = _visible_period(session, principal, period_id)
    if period.state not in ("open", "closing", "closed"):
        raise StateError(
            f"period {period.key} is already {period.state}",
            field="period_id",
            code="already_closed",
        )
    accepted = _enqueue(
        session, principal, "close_period", period, {"anchor": (body or CloseIn()).anchor}
    )
    return idem.respond(202, accepted.model_dump())


@router.post(
    "/periods/{period_id}/anchor",
    status_code=202,
    response_model=JobAccepted,
    summary="Anchor a closed period's settlement on chain",
)
def anchor(
    period_id: uuid.UUID,
    session: SessionDep,
    principal: FinanceDep,
    idem: IdempotencyDep,
    body: AnchorIn | None = None,
) -> Any:
    if (replay := idem.replay()) is not None:
        return replay
    period = _visible_period(session, principal, period_id)
    if period.state not in ("closed", "anchored"):
        raise StateError(
            f"period {period.key} is {period.state}; close it before anchoring",
            field="period_id",
            code="period_not_closed",
        )
    params = {"reanchor": True} if body is not None and body.reanchor else {}
    accepted = _enqueue(session, principal, "anchor_period", period, params)
    return idem.respond(202, accepted.model_dump())


@router.post(
    "/periods/{period_id}/adjustments",
    status_code=201,
    response_model=AdjustmentOut,
    summary="Book a correction of a closed period into this open period",
)
def add_adjustment(
    period_id: uuid.UUID,
    body: AdjustmentIn,
    session: SessionDep,
    principal: FinanceDep,
    idem: IdempotencyDep,
) -> Any:
    if (replay := idem.replay()) is not None:
        return replay
    period = _visible_period(session, principal, period_id)
    if period.state != "open":
        raise StateError(
            f"period {period.key} is {period.state}; adjustments go into an open period",
            field="period_id",
            code="period_not_open",
        )
    if body.amount_minor == 0 or abs(body.amount_minor) > 10**15:
        raise ValidationFailed(
            "amount_minor must be a non-zero integer of at most 10^15 minor units",
            field="amount_minor",
        )
    address = normalize_address(body.address, "address")
    if body.corrects_period_id is not None:
        corrected = session.get(Period, body.corrects_period_id)
        if corrected is None or corrected.model_id != period.model_id:
            raise ValidationFailed(
                "corrects_period_id must name a period of the same model",
                field="corrects_period_id",
            )
    exists = session.execute(
        select(PeriodAdjustment).where(
            col(PeriodAdjustment.period_id) == period.id,
            col(PeriodAdjustment.reference) == body.reference,
        )
    ).scalar_one_or_none()
    if exists is not None:
        raise ValidationFailed(
            f"reference {body.reference!r} is already used in this period",
            field="reference",
            code="reference_taken",
        )
    adjustment = PeriodAdjustment(
        period_id=period.id,
        corrects_period_id=body.corrects_period_id,
        address=address,
        amount_minor=body.amount_minor,
        reason=body.reason,
        reference=body.reference,
    )
    session.add(adjustment)
    session.flush()
    return idem.respond(
        201, AdjustmentOut.model_validate(adjustment, from_attributes=True).model_dump()
    )
