"""Owners: datasets, rights signatures and revocations, usage per period, and disputes.

Who may do what (403 for a role not listed; 404 for an object of another tenant, the same
answer as for one that does not exist):

- an **owner** sees a dataset when one of its linked addresses is a co-owner in any terms
  version (``ledger.datasets.queries``); it registers datasets with one of its addresses as
  registrant and co-owner, changes a dataset only while one of its addresses co-owns the
  *current* terms (otherwise 403 ``not_current_co_owner`` on a dataset it can see), and
  submits confirmations and revocations for datasets it sees. The signature authorises
  the signer's act, so a co-owner may relay another co-owner's signature;
- **finance** reads every dataset, usage and dispute, and is the only role that resolves
  disputes;
- model teams and admins have no access here (403).

Disputes are visible to the owners of either dataset (the disputed one or the one it
conflicts with).
"""

from __future__ import annotations

import base64
import binascii
import uuid
from collections.abc import Collection
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query
from sqlmodel import Session

from api.deps import Principal, SessionDep, require_roles
from api.idempotency import Idempotency, IdempotencyDep
from api.pagination import LIMIT_DEFAULT, Page, check_limit, cursor_key, page
from api.schemas.datasets import (
    DatasetIn,
    DatasetOut,
    DatasetSummaryOut,
    DatasetUpdateIn,
    DisputeOut,
    FileOut,
    PeriodUsageOut,
    ResolveIn,
    RightsResultOut,
    SignatureIn,
    TypedDataOut,
    dataset_out,
    dataset_summary,
    period_usage_out,
    rights_out,
    typed_data_out,
)
from ledger.datasets import queries
from ledger.datasets.croissant import parse_croissant, registration_fields
from ledger.datasets.models import DATASET_STATES, Dataset, Dispute
from ledger.datasets.service import register_dataset, registrant_owner, update_dataset
from ledger.errors import Forbidden, ValidationFailed
from ledger.rights.service import (
    resolve_dispute,
    submit_confirmation,
    submit_revocation,
    typed_data_to_sign,
)

router = APIRouter(tags=["owners: datasets"])
OwnerDep = Annotated[Principal, Depends(require_roles("owner"))]
ReaderDep = Annotated[Principal, Depends(require_roles("owner", "finance"))]
FinanceDep = Annotated[Principal, Depends(require_roles("finance"))]
DatasetStatus = Literal["pending_signatures", "confirmed", "disputed", "revoked", "rejected"]
assert set(DatasetStatus.__args__) == set(DATASET_STATES)  # type: ignore[attr-defined]
_NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {"description": "No such dataset among those you may see."}
}


def _addresses(session: Session, principal: Principal) -> set[str] | None:
    """The addresses whose objects ``principal`` sees; None for finance (everything)."""
    return None if principal.role == "finance" else principal.owner_addresses(session)


def _detail(session: Session, dataset: Dataset) -> DatasetOut:
    return dataset_out(queries.dataset_view(session, dataset))


def _document(value: str | None) -> bytes | None:
    if value is None:
        return None
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise ValidationFailed(
            "terms_document_base64 is not valid base64",
            field="terms_document_base64",
            code="base64_invalid",
        ) from None


def _visible(
    session: Session, principal: Principal, dataset_id: uuid.UUID
) -> tuple[Dataset, Collection[str] | None]:
    addresses = _addresses(session, principal)
    return queries.visible_dataset(session, dataset_id, addresses), addresses


# --- datasets ----------------------------------------------------------------------------


@router.post(
    "/datasets",
    status_code=201,
    response_model=DatasetOut,
    summary="Register a dataset (terms version 1, waiting for every co-owner's signature)",
    description="Status `pending_signatures`, or `disputed` when another owner set already "
    "registered the same content root. 422 `registrant_not_yours` / "
    "`registrant_not_co_owner`, and a code per invalid field.",
)
def post_dataset(
    body: DatasetIn, session: SessionDep, principal: OwnerDep, idem: IdempotencyDep
) -> Any:
    co_owners = [c.model_dump() for c in body.co_owners]
    registrant = registrant_owner(
        session, body.registrant, co_owners, controlled=principal.owner_addresses(session)
    )
    if (replay := idem.replay()) is not None:
        return replay
    fields = registration_fields(
        body.croissant,
        name=body.name,
        description=body.description,
        licence=body.licence,
        files=[f.model_dump() for f in body.files] if body.files is not None else None,
    )
    dataset = register_dataset(
        session,
        registrant_owner_id=registrant.id,
        allowed_uses=body.allowed_uses,
        valid_from=body.valid_from,
        valid_until=body.valid_until,
        co_owners=co_owners,
        content_root=body.content_root,
        terms_document=_document(body.terms_document_base64),
        **fields,
    )
    return idem.respond(201, _detail(session, dataset))


@router.get(
    "/datasets",
    response_model=Page[DatasetSummaryOut],
    summary="Datasets you co-own (finance: all), newest first",
)
def list_datasets(
    session: SessionDep,
    principal: ReaderDep,
    status: Annotated[DatasetStatus | None, Query()] = None,
    cursor: Annotated[str | None, Query()] = None,
    limit: Annotated[int, Query()] = LIMIT_DEFAULT,
) -> Page[DatasetSummaryOut]:
    check_limit(limit)
    after = cursor_key(cursor, datetime, uuid.UUID)
    rows = queries.datasets_page(
        session,
        addresses=_addresses(session, principal),
        status=status,
        after=after,
        limit=limit + 1,
    )
    items, next_cursor = page(rows, limit, lambda d: (d.created_at, d.id))
    return Page[DatasetSummaryOut](
        items=[dataset_summary(d) for d in items], next_cursor=next_cursor
    )


@router.get(
    "/datasets/{dataset_id}",
    response_model=DatasetOut,
    summary="One dataset: terms, co-owners and who still has to sign",
    responses=_NOT_FOUND,
)
def get_dataset(dataset_id: uuid.UUID, session: SessionDep, principal: ReaderDep) -> DatasetOut:
    return _detail(session, _visible(session, principal, dataset_id)[0])


@router.patch(
    "/datasets/{dataset_id}",
    response_model=DatasetOut,
    summary="Change a dataset (a change of terms needs every signature again)",
    description="Only a co-owner of the current terms (403 `not_current_co_owner`). "
    "`croissant` replaces the stored Croissant document only; send `files` or `licence` to "
    "change those. 409 `dataset_rejected` after a rejected dispute.",
    responses=_NOT_FOUND,
)
def patch_dataset(
    dataset_id: uuid.UUID, body: DatasetUpdateIn, session: SessionDep, principal: OwnerDep
) -> DatasetOut:
    dataset, addresses = _visible(session, principal, dataset_id)
    assert addresses is not None
    if not queries.current_co_owner(session, dataset, addresses):
        raise Forbidden(
            f"none of your addresses co-owns the current terms (version "
            f"{dataset.terms_version}) of dataset {dataset_id}; only its co-owners change it",
            field="dataset_id",
            code="not_current_co_owner",
        )
    given = body.model_fields_set - {"renew", "terms_document_base64", "files", "co_owners"}
    changes: dict[str, Any] = {name: getattr(body, name) for name in given}
    if "croissant" in changes and changes["croissant"] is not None:
        changes["croissant"] = parse_croissant(changes["croissant"]).document
    if "terms_document_base64" in body.model_fields_set:
        changes["terms_document"] = _document(body.terms_document_base64)
    if "files" in body.model_fields_set:
        changes["files"] = [f.model_dump() for f in body.files or []]
    if "co_owners" in body.model_fields_set:
        changes["co_owners"] = [c.model_dump() for c in body.co_owners or []]
    for required in ("name", "licence", "allowed_uses", "valid_from"):
        if required in changes and changes[required] is None:
            raise ValidationFailed(
                f"{required} cannot be null; leave it out to keep the current value",
                field=required,
                code=f"{required}_required",
            )
    updated = update_dataset(session, dataset_id, renew=body.renew, **changes)
    return _detail(session, updated)


@router.get(
    "/datasets/{dataset_id}/files",
    response_model=Page[FileOut],
    summary="The dataset's current file manifest, by path",
    responses=_NOT_FOUND,
)
def list_files(
    dataset_id: uuid.UUID,
    session: SessionDep,
    principal: ReaderDep,
    cursor: Annotated[str | None, Query()] = None,
    limit: Annotated[int, Query()] = LIMIT_DEFAULT,
) -> Page[FileOut]:
    check_limit(limit)
    _visible(session, principal, dataset_id)
    after = cursor_key(cursor, str)
    rows = queries.files_page(session, dataset_id, after=after, limit=limit + 1)
    items, next_cursor = page(rows, limit, lambda f: f.path)
    return Page[FileOut](
        items=[FileOut(path=f.path, size=f.size_bytes, sha256=f.sha256) for f in items],
        next_cursor=next_cursor,
    )


# --- rights ------------------------------------------------------------------------------


@router.get(
    "/datasets/{dataset_id}/typed-data",
    response_model=TypedDataOut,
    summary="The EIP-712 typed data a co-owner's wallet signs now",
    description="Pass `typed_data` to `eth_signTypedData_v4`, then submit the signature with "
    "`nonce` to `/confirmations` (or `/revocations` for `kind=revocation`). 403 "
    "`not_co_owner` when `signer` need not sign; 409 `already_confirmed`, "
    "`dataset_revoked`, `dataset_rejected`.",
    responses=_NOT_FOUND,
)
def get_typed_data(
    dataset_id: uuid.UUID,
    session: SessionDep,
    principal: ReaderDep,
    signer: Annotated[str, Query(examples=["0xfB6916095ca1df60bB79Ce92cE3Ea74c37c5d359"])],
    kind: Annotated[Literal["confirmation", "revocation"], Query()] = "confirmation",
) -> TypedDataOut:
    _visible(session, principal, dataset_id)
    return typed_data_out(typed_data_to_sign(session, dataset_id, signer, kind))


_RIGHTS_RESPONSES: dict[int | str, dict[str, Any]] = {
    **_NOT_FOUND,
    200: {"model": RightsResultOut, "description": "This signature was accepted before."},
    403: {"description": "`not_co_owner`: the signer is not a required signer."},
    409: {"description": "`nonce_used`, `already_confirmed`, `stale_terms`, `dataset_revoked`…"},
    422: {"description": "`signature_invalid`, `nonce_mismatch`, `wrong_domain`…"},
}


def _submit(
    kind: str,
    dataset_id: uuid.UUID,
    body: SignatureIn,
    session: Session,
    principal: Principal,
    idem: Idempotency,
) -> Any:
    _visible(session, principal, dataset_id)
    if (replay := idem.replay()) is not None:
        return replay
    submit = submit_confirmation if kind == "confirmation" else submit_revocation
    result = submit(session, dataset_id, body.signer, body.signature, body.nonce, body.domain)
    return idem.respond(200 if result.replayed else 201, rights_out(result))


@router.post(
    "/datasets/{dataset_id}/confirmations",
    status_code=201,
    response_model=RightsResultOut,
    summary="Submit a co-owner's signed confirmation of the current terms",
    description="When the last required signer confirms, the dataset becomes `confirmed` "
    "(unless disputed) and usage counts from that moment.",
    responses=_RIGHTS_RESPONSES,
)
def post_confirmation(
    dataset_id: uuid.UUID,
    body: SignatureIn,
    session: SessionDep,
    principal: OwnerDep,
    idem: IdempotencyDep,
) -> Any:
    return _submit("confirmation", dataset_id, body, session, principal, idem)


@router.post(
    "/datasets/{dataset_id}/revocations",
    status_code=201,
    response_model=RightsResultOut,
    summary="Submit a co-owner's signed revocation",
    description="From now on usage of the dataset does not count; earlier usage still does.",
    responses=_RIGHTS_RESPONSES,
)
def post_revocation(
    dataset_id: uuid.UUID,
    body: SignatureIn,
    session: SessionDep,
    principal: OwnerDep,
    idem: IdempotencyDep,
) -> Any:
    return _submit("revocation", dataset_id, body, session, principal, idem)


# --- usage -------------------------------------------------------------------------------


@router.get(
    "/datasets/{dataset_id}/usage",
    response_model=Page[PeriodUsageOut],
    summary="Usage of the dataset per period and model, newest first",
    description="From the usage rollups: training units (Σ quantity × epochs) and "
    "retrieval hits of every model that reported the dataset.",
    responses=_NOT_FOUND,
)
def list_usage(
    dataset_id: uuid.UUID,
    session: SessionDep,
    principal: ReaderDep,
    cursor: Annotated[str | None, Query()] = None,
    limit: Annotated[int, Query()] = LIMIT_DEFAULT,
) -> Page[PeriodUsageOut]:
    check_limit(limit)
    _visible(session, principal, dataset_id)
    after = cursor_key(cursor, datetime, uuid.UUID)
    rows = queries.usage_page(session, dataset_id, after=after, limit=limit + 1)
    items, next_cursor = page(rows, limit, lambda u: u.sort_key)
    return Page[PeriodUsageOut](items=[period_usage_out(u) for u in items], next_cursor=next_cursor)


# --- disputes ----------------------------------------------------------------------------


def _dispute(dispute: Dispute) -> DisputeOut:
    return DisputeOut.model_validate(dispute, from_attributes=True)


@router.get(
    "/disputes",
    response_model=Page[DisputeOut],
    summary="Disputes over shared content (owners: about their datasets; finance: all)",
    tags=["finance: disputes"],
)
def list_disputes(
    session: SessionDep,
    principal: ReaderDep,
    status: Annotated[Literal["open", "resolved"] | None, Query()] = None,
    cursor: Annotated[str | None, Query()] = None,
    limit: Annotated[int, Query()] = LIMIT_DEFAULT,
) -> Page[DisputeOut]:
    check_limit(limit)
    after = cursor_key(cursor, datetime, uuid.UUID)
    rows = queries.disputes_page(
        session,
        addresses=_addresses(session, principal),
        status=status,
        after=after,
        limit=limit + 1,
    )
    items, next_cursor = page(rows, limit, lambda d: (d.opened_at, d.id))
    return Page[DisputeOut](items=[_dispute(d) for d in items], next_cursor=next_cursor)


@router.get(
    "/disputes/{dispute_id}",
    response_model=DisputeOut,
    summary="One dispute",
    tags=["finance: disputes"],
    responses={404: {"description": "No such dispute among those you may see."}},
)
def get_dispute(dispute_id: uuid.UUID, session: SessionDep, principal: ReaderDep) -> DisputeOut:
    return _dispute(queries.visible_dispute(session, dispute_id, _addresses(session, principal)))


@router.post(
    "/disputes/{dispute_id}/resolve",
    response_model=DisputeOut,
    summary="Resolve a dispute (finance only)",
    description="`upheld`: the disputed dataset's claim stands; `rejected`: it is rejected "
    "for good and its other open disputes close with it. Repeating the same resolution "
    "returns the dispute; another one is 409 `dispute_resolved`.",
    tags=["finance: disputes"],
    responses={404: {"description": "No such dispute."}},
)
def post_resolve(
    dispute_id: uuid.UUID,
    body: ResolveIn,
    session: SessionDep,
    principal: FinanceDep,
    idem: IdempotencyDep,
) -> Any:
    if (replay := idem.replay()) is not None:
        return replay
    dispute = resolve_dispute(session, dispute_id, body.resolution, body.note, principal.account_id)
    return idem.respond(200, _dispute(dispute))
