"""API keys: create (shown once), verify, revoke."""

from __future__ import annotations

import hashlib
import secrets
import uuid
from dataclasses import dataclass

from sqlalchemy import select, update
from sqlmodel import Session

from ledger.access.models import ApiKey
from ledger.errors import NotFound, Unauthorized
from ledger.owners.models import Account
from ledger.types import utcnow

KEY_PREFIX = "uf"
PREFIX_LEN = 8  # hex characters identifying the key in logs


@dataclass(frozen=True)
class IssuedKey:
    """A freshly created key. ``plaintext`` exists only here: it is never stored."""

    record: ApiKey
    plaintext: str


def _digest(plaintext: str) -> str:
    return hashlib.sha256(plaintext.encode()).hexdigest()


def create_api_key(session: Session, account_id: uuid.UUID, label: str = "") -> IssuedKey:
    """Create a key for ``account_id``; the caller shows ``plaintext`` once."""
    if session.get(Account, account_id) is None:
        raise NotFound(f"account {account_id} does not exist", field="account_id")
    prefix = secrets.token_hex(PREFIX_LEN // 2)
    plaintext = f"{KEY_PREFIX}_{prefix}_{secrets.token_urlsafe(24)}"
    record = ApiKey(
        account_id=account_id, prefix=prefix, key_sha256=_digest(plaintext), label=label
    )
    session.add(record)
    session.flush()
    return IssuedKey(record=record, plaintext=plaintext)


def key_prefix(plaintext: str) -> str | None:
    """The loggable prefix of a presented key, or None when it is not one of ours."""
    parts = plaintext.split("_", 2)
    if len(parts) != 3 or parts[0] != KEY_PREFIX or len(parts[1]) != PREFIX_LEN:
        return None
    return parts[1]


def authenticate(session: Session, plaintext: str) -> tuple[ApiKey, Account]:
    """Return the key and its account, or raise Unauthorized (unknown, revoked, disabled)."""
    prefix = key_prefix(plaintext)
    if prefix is None:
        raise Unauthorized(
            "the API key is malformed; send `Authorization: Bearer uf_<prefix>_<secret>`"
        )
    row = session.execute(
        select(ApiKey, Account)
        .join(Account, Account.id == ApiKey.account_id)  # type: ignore[arg-type]
        .where(ApiKey.key_sha256 == _digest(plaintext))  # type: ignore[arg-type]
    ).first()
    if row is None:
        raise Unauthorized(f"API key {prefix}… is not known; check the key or ask an admin")
    key, account = row
    if key.revoked_at is not None:
        raise Unauthorized(f"API key {prefix}… was revoked; ask an admin for a new key")
    if account.disabled_at is not None:
        raise Unauthorized(f"the account of API key {prefix}… is disabled")
    return key, account


def revoke_api_key(session: Session, key_id: uuid.UUID) -> ApiKey:
    key = session.get(ApiKey, key_id)
    if key is None:
        raise NotFound(f"API key {key_id} does not exist", field="key_id")
    if key.revoked_at is None:
        session.execute(
            update(ApiKey)
            .where(ApiKey.id == key_id)  # type: ignore[arg-type]
            .values(revoked_at=utcnow())
        )
        session.refresh(key)
    return key
