"""``GET /v1/me``: who the presented API key belongs to."""

from __future__ import annotations

import uuid

from fastapi import APIRouter
from pydantic import BaseModel

from api.deps import PrincipalDep, SessionDep

router = APIRouter(tags=["accounts"])


class MeOut(BaseModel):
    account_id: uuid.UUID
    role: str
    display_name: str
    key_prefix: str
    owner_addresses: list[str]


@router.get("/me", response_model=MeOut, summary="The account behind the API key")
def me(principal: PrincipalDep, session: SessionDep) -> MeOut:
    return MeOut(
        account_id=principal.account_id,
        role=principal.role,
        display_name=principal.display_name,
        key_prefix=principal.key_prefix,
        owner_addresses=sorted(principal.owner_addresses(session)),
    )
