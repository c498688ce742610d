"""Admin: accounts and their API keys.

Who may do what: only an admin (every other role gets 403 ``forbidden``, whatever the
object). Admins are not tenants of each other: an admin sees every account. An unknown
account is 404 ``account_not_found``; a key id that is not a key *of the account in the
path* is 404 ``api_key_not_found``, exactly like an unknown key.

Keys: the plaintext is in the response that issues it and nowhere else: the database keeps
its SHA-256, listings show the prefix, and an idempotent replay of the issuing request
returns the key record with ``key: null`` (the stored response never contains the secret).
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from fastapi.encoders import jsonable_encoder
from fastapi.responses import JSONResponse

from api.deps import Principal, SessionDep, require_roles
from api.idempotency import IdempotencyDep
from api.pagination import LIMIT_DEFAULT, Page, check_limit, cursor_key, page
from api.schemas.accounts import (
    AccountIn,
    AccountOut,
    ApiKeyIn,
    ApiKeyIssuedOut,
    ApiKeyOut,
    Role,
    account_out,
    api_key_out,
    issued_key_out,
)
from ledger.access.service import revoke_api_key
from ledger.owners import queries
from ledger.owners.service import (
    create_account,
    disable_account,
    get_account,
    issue_api_key,
)

router = APIRouter(tags=["admin: accounts"])
AdminDep = Annotated[Principal, Depends(require_roles("admin"))]
_NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {"description": "No such account (or key of that account)."}
}


@router.post(
    "/accounts",
    status_code=201,
    response_model=AccountOut,
    summary="Create an account",
    description="Then issue it a key with `POST /v1/accounts/{account_id}/keys`.",
)
def postaccount_out(
    body: AccountIn, session: SessionDep, principal: AdminDep, idem: IdempotencyDep
) -> Any:
    if (replay := idem.replay()) is not None:
        return replay
    account = create_account(
        session, role=body.role, display_name=body.display_name, contact=body.contact
    )
    return idem.respond(201, account_out(account))


@router.get("/accounts", response_model=Page[AccountOut], summary="List accounts, oldest first")
def list_accounts(
    session: SessionDep,
    principal: AdminDep,
    role: Annotated[Role | None, Query()] = None,
    cursor: Annotated[str | None, Query()] = None,
    limit: Annotated[int, Query()] = LIMIT_DEFAULT,
) -> Page[AccountOut]:
    check_limit(limit)
    after = cursor_key(cursor, datetime, uuid.UUID)
    rows = queries.accounts_page(session, role=role, after=after, limit=limit + 1)
    items, next_cursor = page(rows, limit, lambda a: (a.created_at, a.id))
    return Page[AccountOut](items=[account_out(a) for a in items], next_cursor=next_cursor)


@router.get(
    "/accounts/{account_id}", response_model=AccountOut, summary="One account", responses=_NOT_FOUND
)
def get_oneaccount_out(
    account_id: uuid.UUID, session: SessionDep, principal: AdminDep
) -> AccountOut:
    return account_out(get_account(session, account_id))


@router.post(
    "/accounts/{account_id}/disable",
    response_model=AccountOut,
    summary="Disable an account: its keys stop working at once",
    description="Idempotent. 409 `cannot_disable_self` for your own account.",
    responses=_NOT_FOUND,
)
def post_disable(
    account_id: uuid.UUID, session: SessionDep, principal: AdminDep, idem: IdempotencyDep
) -> Any:
    if (replay := idem.replay()) is not None:
        return replay
    account = disable_account(session, account_id, by=principal.account_id)
    return idem.respond(200, account_out(account))


@router.post(
    "/accounts/{account_id}/keys",
    status_code=201,
    response_model=ApiKeyIssuedOut,
    summary="Issue an API key (the secret is shown once)",
    description="409 `account_disabled` for a disabled account.",
    responses=_NOT_FOUND,
)
def postapi_key_out(
    account_id: uuid.UUID,
    session: SessionDep,
    principal: AdminDep,
    idem: IdempotencyDep,
    body: ApiKeyIn | None = None,
) -> Any:
    if (replay := idem.replay()) is not None:
        return replay
    issued = issue_api_key(session, account_id, label=(body or ApiKeyIn()).label)
    shown = issued_key_out(issued)
    idem.respond(201, shown.model_copy(update={"key": None}))
    return JSONResponse(
        jsonable_encoder(shown), status_code=201, headers={"Cache-Control": "no-store"}
    )


@router.get(
    "/accounts/{account_id}/keys",
    response_model=Page[ApiKeyOut],
    summary="List an account's keys (prefix and label, never the secret)",
    responses=_NOT_FOUND,
)
def list_keys(
    account_id: uuid.UUID,
    session: SessionDep,
    principal: AdminDep,
    cursor: Annotated[str | None, Query()] = None,
    limit: Annotated[int, Query()] = LIMIT_DEFAULT,
) -> Page[ApiKeyOut]:
    check_limit(limit)
    get_account(session, account_id)
    after = cursor_key(cursor, datetime, uuid.UUID)
    rows = queries.api_keys_page(session, account_id, after=after, limit=limit + 1)
    items, next_cursor = page(rows, limit, lambda k: (k.created_at, k.id))
    return Page[ApiKeyOut](items=[api_key_out(k) for k in items], next_cursor=next_cursor)


@router.post(
    "/accounts/{account_id}/keys/{key_id}/revoke",
    response_model=ApiKeyOut,
    summary="Revoke a key (idempotent); requests with it get 401 from now on",
    responses=_NOT_FOUND,
)
def post_revokeapi_key_out(
    account_id: uuid.UUID,
    key_id: uuid.UUID,
    session: SessionDep,
    principal: AdminDep,
    idem: IdempotencyDep,
) -> Any:
    if (replay := idem.replay()) is not None:
        return replay
    queries.get_api_key(session, account_id, key_id)
    return idem.respond(200, api_key_out(revoke_api_key(session, key_id)))
