"""Model teams record revenue: ``POST /v1/revenue``; ``GET /v1/revenue`` lists it.

Who may do what: a model team records and reads revenue of its own models; finance
reads any model's. Another team's model answers 404 (as in ``/v1/usage``).

A revenue event is idempotent twice over: by ``Idempotency-Key`` (a retry returns the
original response) and by ``(model_id, external_ref)`` (recording the same reference
again returns the stored event with 200 instead of 201; the same reference with another
amount, currency or time is a 409 naming the differing fields).
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse

from api.deps import Principal, SessionDep, require_roles
from api.idempotency import IdempotencyDep
from api.pagination import LIMIT_DEFAULT, Page, check_limit, decode_cursor, encode_cursor
from api.routers.usage import visible_model
from api.schemas.usage import RevenueIn, RevenueOut
from ledger.errors import ValidationFailed
from ledger.revenue import queries
from ledger.revenue import service as revenue
from ledger.revenue.models import RevenueEvent
from ledger.usage import wire

router = APIRouter(tags=["model teams: revenue"])
ModelTeamDep = Annotated[Principal, Depends(require_roles("model_team"))]
ReaderDep = Annotated[Principal, Depends(require_roles("model_team", "finance"))]


async def reject_duplicate_keys(request: Request) -> None:
    """A JSON body that repeats a key is refused (422 ``duplicate_key`` naming it);
    ordinary JSON parsing would silently keep the last value."""
    try:
        decoded = wire.loads((await request.body()).decode("utf-8"))
    except ValueError:
        return  # malformed: FastAPI's own parse answers 400
    path = wire.duplicate_key_path(decoded)
    if path is not None:
        raise ValidationFailed(
            f"key {path.rsplit('/', 1)[-1]!r} appears more than once; send each field once",
            field=path,
            code="duplicate_key",
        )


def _out(event: RevenueEvent) -> RevenueOut:
    return RevenueOut.model_validate(event, from_attributes=True)


@router.post(
    "/revenue",
    status_code=201,
    response_model=RevenueOut,
    summary="Record revenue of one of your models",
    description="Recognised in the journal at once (receivable against revenue). The "
    "period of `occurred_at` must be open and `currency` must be the agreement's. "
    "201 when recorded; 200 when this `external_ref` was already recorded with the same "
    "body; 409 when it was recorded with another one.",
    responses={
        200: {"description": "Already recorded under this external_ref.", "model": RevenueOut},
        404: {"description": "No such model among your team's models."},
        409: {"description": "external_ref (or Idempotency-Key) reused with another body."},
        422: {"description": "Invalid field (problem+json with `errors`)."},
    },
    dependencies=[Depends(reject_duplicate_keys)],
)
def post_revenue(
    body: RevenueIn, session: SessionDep, principal: ModelTeamDep, idem: IdempotencyDep
) -> JSONResponse:
    visible_model(session, principal, body.model_id)
    if replay := idem.replay():
        return replay
    existed = queries.revenue_by_ref(session, body.model_id, body.external_ref) is not None
    event = revenue.record_revenue(
        session,
        body.model_id,
        body.amount_minor,
        body.currency,
        body.external_ref,
        body.occurred_at,
    )
    return idem.respond(200 if existed else 201, _out(event))


@router.get(
    "/revenue",
    response_model=Page[RevenueOut],
    summary="Revenue events of a model",
    description="Ordered by occurrence; pass `next_cursor` as `cursor` for the next page.",
)
def list_revenue(
    session: SessionDep,
    principal: ReaderDep,
    model_id: Annotated[uuid.UUID, Query()],
    cursor: Annotated[str | None, Query()] = None,
    limit: Annotated[int, Query()] = LIMIT_DEFAULT,
) -> Page[RevenueOut]:
    check_limit(limit)
    visible_model(session, principal, model_id)
    after = _after(decode_cursor(cursor))
    events = queries.revenue_page(session, model_id, after=after, limit=limit + 1)
    more = len(events) > limit
    events = events[:limit]
    next_cursor = (
        encode_cursor([events[-1].occurred_at.isoformat(), str(events[-1].id)]) if more else None
    )
    return Page[RevenueOut](items=[_out(e) for e in events], next_cursor=next_cursor)


def _after(key: object) -> tuple[datetime, uuid.UUID] | None:
    if key is None:
        return None
    if isinstance(key, list) and len(key) == 2 and all(isinstance(k, str) for k in key):
        try:
            return datetime.fromisoformat(key[0]), uuid.UUID(key[1])
        except ValueError:
            pass
    raise ValidationFailed(
        "the cursor is not one we issued; pass the `next_cursor` of the previous page",
        field="cursor",
        code="invalid_cursor",
    )
