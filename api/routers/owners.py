"""Owners: the EVM addresses an owner account controls.

Who may do what: only an owner account (other roles get 403). An owner sees only the
addresses linked to itself; there is no route that names another account's address.

Linking needs proof of control (decision): the address signs the challenge text of
``GET /v1/owners/addresses/challenge`` with EIP-191 ``personal_sign`` (or ERC-1271 for a
contract wallet). Without it, any owner could link a payee's address and read that
payee's datasets, statements and claims. The challenge names the account, so a proof
cannot be replayed for another account. An address already linked to another account is
409 ``address_taken`` (told only to someone who just proved control of it).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query

from api.deps import Principal, SessionDep, require_roles
from api.idempotency import IdempotencyDep
from api.pagination import LIMIT_DEFAULT, Page, check_limit, cursor_key, page
from api.schemas.accounts import (
    AddressChallengeOut,
    OwnerAddressIn,
    OwnerAddressOut,
    owner_address_out,
)
from ledger.owners import queries
from ledger.owners.service import address_proof_message, link_owner_address, normalize_address

router = APIRouter(tags=["owners: addresses"])
OwnerDep = Annotated[Principal, Depends(require_roles("owner"))]


@router.get(
    "/owners/addresses/challenge",
    response_model=AddressChallengeOut,
    summary="The text an address signs to prove you control it",
)
def get_challenge(
    principal: OwnerDep,
    address: Annotated[str, Query(examples=["0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed"])],
) -> AddressChallengeOut:
    checksummed = normalize_address(address)
    return AddressChallengeOut(
        address=checksummed, message=address_proof_message(principal.account_id, checksummed)
    )


@router.post(
    "/owners/addresses",
    status_code=201,
    response_model=OwnerAddressOut,
    summary="Link an address you control to your account",
    description="201 when linked now, 200 when it already was linked to you. 422 "
    "`address_proof_invalid` when the signature is not the address's; 409 `address_taken` "
    "when another account linked it.",
    responses={200: {"model": OwnerAddressOut, "description": "Already linked to you."}},
)
def post_address(
    body: OwnerAddressIn, session: SessionDep, principal: OwnerDep, idem: IdempotencyDep
) -> Any:
    if (replay := idem.replay()) is not None:
        return replay
    linked = link_owner_address(
        session,
        principal.account_id,
        body.address,
        body.signature,
        display_name=body.display_name,
        contact=body.contact,
    )
    return idem.respond(201 if linked.linked_now else 200, owner_address_out(linked.owner))


@router.get(
    "/owners/addresses",
    response_model=Page[OwnerAddressOut],
    summary="Your linked addresses",
)
def list_addresses(
    session: SessionDep,
    principal: OwnerDep,
    cursor: Annotated[str | None, Query()] = None,
    limit: Annotated[int, Query()] = LIMIT_DEFAULT,
) -> Page[OwnerAddressOut]:
    check_limit(limit)
    after = cursor_key(cursor, str)
    rows = queries.owner_addresses_page(session, principal.account_id, after=after, limit=limit + 1)
    items, next_cursor = page(rows, limit, lambda o: o.address)
    return Page[OwnerAddressOut](
        items=[owner_address_out(o) for o in items], next_cursor=next_cursor
    )
