"""Quarantine review: rejected usage events wait here with their reason.

Who may do what: a model team lists the rejects of its own models (another team's
model answers 404); finance lists everything and is the only role that dismisses an
event (with a note saying why). Dismissed events stay for audit.
"""

from __future__ import annotations

import uuid
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Path, Query

from api.deps import Principal, SessionDep, require_roles
from api.idempotency import IdempotencyDep
from api.pagination import LIMIT_DEFAULT, Page, check_limit, decode_cursor, encode_cursor
from api.routers.usage import visible_model
from api.schemas.usage import DismissIn, QuarantinedOut
from ledger.errors import ValidationFailed
from ledger.usage import queries
from ledger.usage import service as usage
from ledger.usage.models import QuarantinedEvent

router = APIRouter(tags=["finance: quarantine"])
FinanceDep = Annotated[Principal, Depends(require_roles("finance"))]
ReaderDep = Annotated[Principal, Depends(require_roles("model_team", "finance"))]


def _out(event: QuarantinedEvent) -> QuarantinedOut:
    return QuarantinedOut.model_validate(event, from_attributes=True)


@router.get(
    "/quarantine",
    response_model=Page[QuarantinedOut],
    summary="Rejected usage events waiting for review",
    description="Oldest first. Model teams see their own models' events; finance sees all. "
    "`state`: `open` (default), `dismissed`, `resubmitted` or `any`.",
)
def list_quarantine(
    session: SessionDep,
    principal: ReaderDep,
    model_id: Annotated[uuid.UUID | None, Query()] = None,
    reason_code: Annotated[str | None, Query(max_length=48, examples=["unknown_dataset"])] = None,
    state: Annotated[Literal["open", "dismissed", "resubmitted", "any"], Query()] = "open",
    cursor: Annotated[str | None, Query()] = None,
    limit: Annotated[int, Query()] = LIMIT_DEFAULT,
) -> Page[QuarantinedOut]:
    check_limit(limit)
    if model_id is not None:
        visible_model(session, principal, model_id)
    after = decode_cursor(cursor)
    if after is not None and type(after) is not int:
        raise ValidationFailed(
            "the cursor is not one we issued; pass the `next_cursor` of the previous page",
            field="cursor",
            code="invalid_cursor",
        )
    events = queries.quarantine_page(
        session,
        model_id=model_id,
        account_id=None if principal.role == "finance" else principal.account_id,
        reason_code=reason_code,
        review_state=None if state == "any" else state,
        after_id=after,
        limit=limit + 1,
    )
    more = len(events) > limit
    events = events[:limit]
    return Page[QuarantinedOut](
        items=[_out(e) for e in events],
        next_cursor=encode_cursor(events[-1].id) if more else None,
    )


@router.post(
    "/quarantine/{quarantine_id}/dismiss",
    response_model=QuarantinedOut,
    summary="Dismiss a quarantined event after review (finance)",
    description="Only open events; the note says why. 409 `already_reviewed` otherwise.",
    responses={404: {"description": "No such event."}, 409: {"description": "Not open."}},
)
def dismiss(
    quarantine_id: Annotated[int, Path(ge=1)],
    body: DismissIn,
    session: SessionDep,
    principal: FinanceDep,
    idem: IdempotencyDep,
) -> object:
    if replay := idem.replay():
        return replay
    event = usage.dismiss_quarantined(session, quarantine_id, body.note, principal.account_id)
    return idem.respond(200, _out(event))
