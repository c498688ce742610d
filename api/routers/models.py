"""Model teams: their models (or RAG applications) and versioned royalty agreements.

Who may do what: a model team creates models and agreement versions and reads only its
own models; finance reads every model and agreement; owners and admins get 403. A model
of another team answers 404, exactly like a model that does not exist
(``api.routers.usage.visible_model``, shared with the usage routes).
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from pydantic import AwareDatetime

from api.deps import Principal, SessionDep, require_roles
from api.idempotency import IdempotencyDep
from api.pagination import LIMIT_DEFAULT, Page, check_limit, cursor_key, page
from api.routers.usage import visible_model
from api.schemas.models import AgreementIn, AgreementOut, ModelIn, ModelOut
from ledger.models import queries
from ledger.models.models import Agreement, Model
from ledger.models.service import agreement_in_force, create_agreement, create_model
from ledger.types import utcnow

router = APIRouter(tags=["model teams: models"])
ModelTeamDep = Annotated[Principal, Depends(require_roles("model_team"))]
ReaderDep = Annotated[Principal, Depends(require_roles("model_team", "finance"))]
_NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {"description": "No such model among your team's models."}
}


def _model(model: Model) -> ModelOut:
    return ModelOut.model_validate(model, from_attributes=True)


def _agreement(agreement: Agreement) -> AgreementOut:
    return AgreementOut.model_validate(agreement, from_attributes=True)


@router.post("/models", status_code=201, response_model=ModelOut, summary="Register a model")
def post_model(
    body: ModelIn, session: SessionDep, principal: ModelTeamDep, idem: IdempotencyDep
) -> Any:
    if (replay := idem.replay()) is not None:
        return replay
    model = create_model(
        session,
        account_id=principal.account_id,
        name=body.name,
        description=body.description,
        kind=body.kind,
    )
    return idem.respond(201, _model(model))


@router.get("/models", response_model=Page[ModelOut], summary="Your team's models (finance: all)")
def list_models(
    session: SessionDep,
    principal: ReaderDep,
    cursor: Annotated[str | None, Query()] = None,
    limit: Annotated[int, Query()] = LIMIT_DEFAULT,
) -> Page[ModelOut]:
    check_limit(limit)
    account = None if principal.role == "finance" else principal.account_id
    after = cursor_key(cursor, datetime, uuid.UUID)
    rows = queries.models_page(session, account_id=account, after=after, limit=limit + 1)
    items, next_cursor = page(rows, limit, lambda m: (m.created_at, m.id))
    return Page[ModelOut](items=[_model(m) for m in items], next_cursor=next_cursor)


@router.get(
    "/models/{model_id}", response_model=ModelOut, summary="One model", responses=_NOT_FOUND
)
def get_model(model_id: uuid.UUID, session: SessionDep, principal: ReaderDep) -> ModelOut:
    return _model(visible_model(session, principal, model_id))


@router.post(
    "/models/{model_id}/agreements",
    status_code=201,
    response_model=AgreementOut,
    summary="Add the next agreement version",
    description="Versions are append-only; `effective_from` must not be before the previous "
    "version's (422 `effective_from_backwards`).",
    responses=_NOT_FOUND,
)
def post_agreement(
    model_id: uuid.UUID,
    body: AgreementIn,
    session: SessionDep,
    principal: ModelTeamDep,
    idem: IdempotencyDep,
) -> Any:
    visible_model(session, principal, model_id)
    if (replay := idem.replay()) is not None:
        return replay
    agreement = create_agreement(
        session,
        model_id,
        royalty_rate_bps=body.royalty_rate_bps,
        training_share_bps=body.training_share_bps,
        min_payout_minor=body.min_payout_minor,
        currency=body.currency,
        effective_from=body.effective_from,
        training_unit=body.training_unit,
        retrieval_policy=body.retrieval_policy,
    )
    return idem.respond(201, _agreement(agreement))


@router.get(
    "/models/{model_id}/agreements",
    response_model=Page[AgreementOut],
    summary="Every agreement version of a model, oldest first",
    responses=_NOT_FOUND,
)
def list_agreements(
    model_id: uuid.UUID,
    session: SessionDep,
    principal: ReaderDep,
    cursor: Annotated[str | None, Query()] = None,
    limit: Annotated[int, Query()] = LIMIT_DEFAULT,
) -> Page[AgreementOut]:
    check_limit(limit)
    visible_model(session, principal, model_id)
    after = cursor_key(cursor, int)
    rows = queries.agreements_page(session, model_id, after=after, limit=limit + 1)
    items, next_cursor = page(rows, limit, lambda a: a.version)
    return Page[AgreementOut](items=[_agreement(a) for a in items], next_cursor=next_cursor)


@router.get(
    "/models/{model_id}/agreements/in-force",
    response_model=AgreementOut,
    summary="The agreement version in force at a moment (default: now)",
    description="404 `no_agreement_in_force` when none has taken effect by `at`.",
    responses=_NOT_FOUND,
)
def get_agreement_in_force(
    model_id: uuid.UUID,
    session: SessionDep,
    principal: ReaderDep,
    at: Annotated[AwareDatetime | None, Query(examples=["2026-03-15T00:00:00Z"])] = None,
) -> AgreementOut:
    visible_model(session, principal, model_id)
    return _agreement(agreement_in_force(session, model_id, at or utcnow()))
