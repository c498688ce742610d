"""Accounts (who logs in) and owners (who holds rights and is paid), and EVM address rules.

An owner's address is its identity: it signs rights confirmations and receives payouts,
so it is validated strictly (:func:`normalize_address`) and cannot be changed later;
a new address is a new owner.
"""

from __future__ import annotations

import re
import uuid
from typing import Final

from eth_utils import to_checksum_address
from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlmodel import Session

from ledger.errors import Conflict, ErrorCollector, NotFound, ValidationFailed
from ledger.owners.models import ACCOUNT_ROLES, Account, Owner

ZERO_ADDRESS: Final = "0x" + "0" * 40
DISPLAY_NAME_MAX = 200
CONTACT_MAX = 320

_HEX40 = re.compile(r"[0-9a-fA-F]{40}")


class _Unset:
    """Marks an update argument the caller did not pass (``None`` may be a real value)."""

    def __repr__(self) -> str:
        return "UNSET"


UNSET: Final = _Unset()


def address_problem(value: object) -> tuple[str, str] | None:
    """``(code, message)`` saying why ``value`` is not an acceptable EVM address, or None.

    Accepted: ``0x`` followed by 40 hex digits, either all one case (no checksum) or in
    EIP-55 mixed case with a correct checksum. Refused: anything else, and the zero
    address (nobody holds its key, so nothing paid to it can ever be claimed).
    """
    if not isinstance(value, str):
        return "address_invalid", f"must be a string like 0x…, got {type(value).__name__}"
    text = value.strip()
    if not text.startswith(("0x", "0X")):
        return "address_invalid", f"{text!r} must start with 0x followed by 40 hex digits"
    digits = text[2:]
    if len(digits) != 40:
        return (
            "address_invalid",
            f"{text!r} has {len(digits)} characters after 0x; an EVM address has exactly "
            "40 hex digits (20 bytes)",
        )
    if not _HEX40.fullmatch(digits):
        bad = next(c for c in digits if c not in "0123456789abcdefABCDEF")
        return "address_invalid", f"{text!r} contains {bad!r}, which is not a hex digit"
    if int(digits, 16) == 0:
        return (
            "address_zero",
            "the zero address cannot own rights or receive payouts; use the owner's own address",
        )
    mixed_case = digits != digits.lower() and digits != digits.upper()
    if mixed_case and "0x" + digits != to_checksum_address("0x" + digits):
        return (
            "address_checksum",
            f"{text!r} fails its EIP-55 checksum (the mix of upper and lower case), so it "
            "probably has a typo; copy the address again from the wallet, or send it in "
            "lower case to skip the checksum",
        )
    return None


def normalize_address(value: object, field: str = "address") -> str:
    """The EIP-55 checksummed form of ``value``; raises ValidationFailed naming ``field``
    with code ``address_invalid``, ``address_zero`` or ``address_checksum``."""
    problem = address_problem(value)
    if problem is not None:
        code, message = problem
        raise ValidationFailed(f"{field}: {message}", field=field, code=code)
    assert isinstance(value, str)
    return to_checksum_address(value.strip())


def _check_text(
    errors: ErrorCollector, field: str, value: object, max_len: int, *, required: bool
) -> str | None:
    """Trimmed ``value``; adds an error when it is missing (if required) or too long."""
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value.strip():
        if required:
            errors.add(field, f"{field}_required", f"{field} must be a non-empty string")
        elif value is not None:
            errors.add(field, f"{field}_invalid", f"{field} must be a string or omitted")
        return None
    text = value.strip()
    if len(text) > max_len:
        errors.add(
            field,
            f"{field}_too_long",
            f"{field} has {len(text)} characters; at most {max_len} are allowed",
        )
    return text


# --- accounts -------------------------------------------------------------------------


def create_account(
    session: Session, *, role: str, display_name: str, contact: str | None = None
) -> Account:
    """Create an account with ``role`` in owner/model_team/finance/admin (flushed)."""
    errors = ErrorCollector()
    if role not in ACCOUNT_ROLES:
        errors.add(
            "role",
            "role_invalid",
            f"role {role!r} is not one of {', '.join(ACCOUNT_ROLES)}",
        )
    name = _check_text(errors, "display_name", display_name, DISPLAY_NAME_MAX, required=True)
    contact_text = _check_text(errors, "contact", contact, CONTACT_MAX, required=False)
    errors.raise_if_any()
    assert name is not None
    account = Account(role=role, display_name=name, contact=contact_text)
    session.add(account)
    session.flush()
    return account


def get_account(session: Session, account_id: uuid.UUID) -> Account:
    """The account, or NotFound (``account_not_found``)."""
    account = session.get(Account, account_id)
    if account is None:
        raise NotFound(
            f"account {account_id} does not exist", field="account_id", code="account_not_found"
        )
    return account


# --- owners ---------------------------------------------------------------------------


def create_owner(
    session: Session,
    *,
    address: str,
    display_name: str,
    contact: str | None = None,
    account_id: uuid.UUID | None = None,
) -> Owner:
    """Register an owner with a validated address (stored EIP-55 checksummed).

    Raises ValidationFailed for a bad address or name, NotFound for an unknown account,
    Conflict (``owner_exists``) when the address already belongs to an owner.
    """
    errors = ErrorCollector()
    problem = address_problem(address)
    if problem is not None:
        errors.add("address", problem[0], f"address: {problem[1]}")
    name = _check_text(errors, "display_name", display_name, DISPLAY_NAME_MAX, required=True)
    contact_text = _check_text(errors, "contact", contact, CONTACT_MAX, required=False)
    errors.raise_if_any()
    assert name is not None
    checksummed = normalize_address(address)
    if account_id is not None:
        get_account(session, account_id)
    existing = get_owner_by_address(session, checksummed)
    if existing is not None:
        raise Conflict(
            f"address {checksummed} is already registered as owner {existing.id}; "
            "update that owner instead",
            field="address",
            code="owner_exists",
        )
    owner = Owner(
        address=checksummed, display_name=name, contact=contact_text, account_id=account_id
    )
    session.add(owner)
    session.flush()
    return owner


def update_owner(
    session: Session,
    owner_id: uuid.UUID,
    *,
    display_name: str | _Unset = UNSET,
    contact: str | _Unset | None = UNSET,
    account_id: uuid.UUID | _Unset | None = UNSET,
) -> Owner:
    """Change an owner's display name, contact or managing account (only what is passed).

    The address cannot change: it is what co-owners signed with and what payouts go to.
    """
    owner = get_owner(session, owner_id)
    errors = ErrorCollector()
    name = (
        _check_text(errors, "display_name", display_name, DISPLAY_NAME_MAX, required=True)
        if not isinstance(display_name, _Unset)
        else None
    )
    contact_text = (
        _check_text(errors, "contact", contact, CONTACT_MAX, required=False)
        if not isinstance(contact, _Unset)
        else None
    )
    errors.raise_if_any()
    if name is not None:
        owner.display_name = name
    if not isinstance(contact, _Unset):
        owner.contact = contact_text
    if not isinstance(account_id, _Unset):
        if account_id is not None:
            get_account(session, account_id)
        owner.account_id = account_id
    session.add(owner)
    session.flush()
    return owner


def get_owner(session: Session, owner_id: uuid.UUID) -> Owner:
    """The owner, or NotFound (``owner_not_found``)."""
    owner = session.get(Owner, owner_id)
    if owner is None:
        raise NotFound(f"owner {owner_id} does not exist", field="owner_id", code="owner_not_found")
    return owner


def get_owner_by_address(session: Session, address: str) -> Owner | None:
    """The owner holding ``address`` (any case), or None."""
    checksummed = normalize_address(address)
    return session.execute(
        select(Owner).where(Owner.address == checksummed)  # type: ignore[arg-type]
    ).scalar_one_or_none()


def ensure_owner(session: Session, address: str, display_name: str | None = None) -> Owner:
    """The owner of ``address``, created on first sight (named ``display_name`` or the
    address) so a dataset can name co-owners who have no account yet."""
    checksummed = normalize_address(address)
    name = (display_name or "").strip()[:DISPLAY_NAME_MAX] or checksummed
    # ON CONFLICT: two registrations naming the same new co-owner at once must not fail.
    session.execute(
        pg_insert(Owner)
        .values(id=uuid.uuid4(), address=checksummed, display_name=name)
        .on_conflict_do_nothing(index_elements=["address"])
    )
    owner = get_owner_by_address(session, checksummed)
    assert owner is not None
    return owner
