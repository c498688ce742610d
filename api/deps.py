"""Request dependencies: the unit of work (session) and the current principal.

One unit of work per request: the session commits when the route returns and
rolls back when it raises. Services only flush.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy import select
from sqlmodel import Session

from ledger.access.service import authenticate, key_prefix
from ledger.db import get_engine
from ledger.errors import Forbidden, Unauthorized
from ledger.owners.models import Owner


def get_session() -> Iterator[Session]:
    session = Session(get_engine(), expire_on_commit=False)
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


# scope="function": commit before the response is sent, so "accepted" means stored.
SessionDep = Annotated[Session, Depends(get_session, scope="function")]


@dataclass(frozen=True)
class Principal:
    """Who is calling: the account, its role, and the key prefix (for logs)."""

    account_id: uuid.UUID
    role: str
    display_name: str
    key_prefix: str

    def owner_addresses(self, session: Session) -> set[str]:
        """The EVM addresses this owner account manages."""
        rows = session.execute(
            select(Owner.address).where(Owner.account_id == self.account_id)  # type: ignore[call-overload]
        ).scalars()
        return set(rows)


def _presented_key(request: Request) -> str:
    auth = request.headers.get("authorization", "")
    if auth.lower().startswith("bearer "):
        return auth[7:].strip()
    key = request.headers.get("x-api-key", "").strip()
    if key:
        return key
    raise Unauthorized(
        "no API key: send `Authorization: Bearer <key>` (keys are issued by an admin)"
    )


def get_principal(request: Request, session: SessionDep) -> Principal:
    plaintext = _presented_key(request)
    _key, account = authenticate(session, plaintext)
    prefix = key_prefix(plaintext) or "?"
    request.scope.setdefault("state", {})["key_prefix"] = prefix
    return Principal(
        account_id=account.id,
        role=account.role,
        display_name=account.display_name,
        key_prefix=prefix,
    )


PrincipalDep = Annotated[Principal, Depends(get_principal)]


def require_roles(*roles: str) -> Callable[[Principal], Principal]:
    """A dependency that admits only the given roles (403 otherwise)."""

    def check(principal: PrincipalDep) -> Principal:
        if principal.role not in roles:
            raise Forbidden(
                f"this action needs the role {' or '.join(roles)}; "
                f"your key belongs to a {principal.role} account"
            )
        return principal

    return check
