"""Accounts (who logs in) and owners (who holds rights and is paid), and EVM address rules.

An owner's address is its identity: it signs rights confirmations and receives payouts,
so it is validated strictly (:func:`normalize_address`) and cannot be changed later;
a new address is a new owner.

An owner *account* sees the datasets, statements and claims of the addresses linked to it,
so linking an address needs proof of control (:func:`link_owner_address`): an EIP-191
signature by the address of :func:`address_proof_message`, which names the account, so a
proof cannot be replayed to link the address to anyone else.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from typing import Final

from eth_account.messages import encode_defunct
from eth_utils import to_checksum_address
from sqlalchemy import select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlmodel import Session, col

from ledger.access.service import IssuedKey, create_api_key
from ledger.errors import (
    Conflict,
    ErrorCollector,
    Forbidden,
    NotFound,
    StateError,
    ValidationFailed,
)
from ledger.owners.models import ACCOUNT_ROLES, Account, Owner
from ledger.rights.signatures import (
    ChainReader,
    Web3ChainReader,
    check_signature,
    parse_signature,
    typed_data_digest,
)
from ledger.types import utcnow

ZERO_ADDRESS: Final = "0x" + "0" * 40
DISPLAY_NAME_MAX = 200
CONTACT_MAX = 320
LABEL_MAX = 200

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


def check_no_nul(errors: ErrorCollector, field: str, value: object) -> None:
    """Refuse U+0000 in text (code ``<field>_invalid``): PostgreSQL text cannot store it."""
    if isinstance(value, str) and "\x00" in value:
        errors.add(
            field, f"{field}_invalid", f"{field} must not contain the NUL character (U+0000)"
        )


def _check_text(
    errors: ErrorCollector, field: str, value: object, max_len: int, *, required: bool
) -> str | None:
    """Trimmed ``value``; adds an error when it is missing (if required), too long or
    holds a NUL character."""
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
    check_no_nul(errors, field, text)
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


def disable_account(
    session: Session, account_id: uuid.UUID, *, by: uuid.UUID | None = None
) -> Account:
    """Disable the account: its API keys stop authenticating at once (flushed).

    Disabling a disabled account returns it unchanged. ``by`` is the admin doing it; an
    admin cannot disable its own account (StateError ``cannot_disable_self``), so the last
    admin cannot lock everyone out by accident. NotFound for an unknown account.
    """
    account = get_account(session, account_id)
    if by is not None and by == account_id:
        raise StateError(
            "you cannot disable your own account; ask another admin",
            field="account_id",
            code="cannot_disable_self",
        )
    if account.disabled_at is None:
        # Conditional update: a concurrent disable keeps the first timestamp.
        session.execute(
            update(Account)
            .where(col(Account.id) == account_id, col(Account.disabled_at).is_(None))
            .values(disabled_at=utcnow())
        )
        session.refresh(account)
    return account


def issue_api_key(session: Session, account_id: uuid.UUID, label: str = "") -> IssuedKey:
    """A new API key for an active account (its plaintext exists only in the result).

    NotFound (``account_not_found``); StateError (``account_disabled``): its keys would not
    authenticate."""
    errors = ErrorCollector()
    if len(label) > LABEL_MAX:
        errors.add("label", "label_too_long", f"label must have at most {LABEL_MAX} characters")
    check_no_nul(errors, "label", label)
    errors.raise_if_any()
    account = get_account(session, account_id)
    if account.disabled_at is not None:
        raise StateError(
            f"account {account_id} is disabled; its keys would not work",
            field="account_id",
            code="account_disabled",
        )
    return create_api_key(session, account_id, label=label)


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


# --- linking addresses to owner accounts ------------------------------------------------


@dataclass(frozen=True)
class LinkedAddress:
    """The owner record of a linked address; ``linked_now`` is False when the address was
    already linked to this account (a repeated request changes nothing)."""

    owner: Owner
    linked_now: bool


def address_proof_message(account_id: uuid.UUID, address: str) -> str:
    """The text (signed with EIP-191 ``personal_sign``) proving ``address`` is controlled
    by whoever links it to ``account_id``. It names both, so it proves nothing else."""
    checksummed = normalize_address(address)
    return (
        f"usefirst: I control {checksummed} and link it to account {account_id}.\n"
        "Signing this moves no funds and grants no allowance."
    )


def _active_owner_account(session: Session, account_id: uuid.UUID) -> Account:
    account = get_account(session, account_id)
    if account.role != "owner" or account.disabled_at is not None:
        raise Forbidden(
            f"account {account_id} is {account.role}"
            f"{' (disabled)' if account.disabled_at else ''}; addresses are linked to active "
            "owner accounts",
            field="account_id",
            code="not_owner_account",
        )
    return account


def link_owner_address(
    session: Session,
    account_id: uuid.UUID,
    address: str,
    signature: bytes | str,
    *,
    display_name: str | None = None,
    contact: str | None = None,
    chain: ChainReader | None = None,
) -> LinkedAddress:
    """Link ``address`` to the owner account ``account_id`` once ``signature`` proves control.

    ``signature`` is the address's EIP-191 signature of :func:`address_proof_message`
    (ECDSA, or ERC-1271 for a contract wallet, asked of ``chain`` only when ECDSA does not
    recover the address). The owner record is created if new (named ``display_name`` or the
    address), or adopted if a dataset already named the address as a co-owner.

    Raises ValidationFailed (``address_*``, ``signature_format``, ``address_proof_invalid``),
    Forbidden (``not_owner_account``), NotFound (``account_not_found``), Conflict
    (``address_taken``) when another account has linked it.
    """
    _active_owner_account(session, account_id)
    checksummed = normalize_address(address)
    errors = ErrorCollector()
    name = _check_text(errors, "display_name", display_name, DISPLAY_NAME_MAX, required=False)
    contact_text = _check_text(errors, "contact", contact, CONTACT_MAX, required=False)
    raw = parse_signature(signature)
    if raw is None:
        errors.add("signature", "signature_format", "signature must be 0x-prefixed hex")
    errors.raise_if_any()
    assert raw is not None
    digest = typed_data_digest(encode_defunct(text=address_proof_message(account_id, checksummed)))
    verdict = check_signature(checksummed, digest, raw, chain or Web3ChainReader.from_settings())
    if not verdict.valid:
        got = f"it recovers to {verdict.recovered}" if verdict.recovered else "it recovers nothing"
        raise ValidationFailed(
            f"signature does not prove control of {checksummed} ({got}); sign the challenge "
            "text of GET /v1/owners/addresses/challenge with that address (personal_sign)",
            field="signature",
            code="address_proof_invalid",
        )
    ensure_owner(session, checksummed, name)
    owner = session.execute(
        select(Owner)
        .where(col(Owner.address) == checksummed)
        .with_for_update()
        .execution_options(populate_existing=True)
    ).scalar_one()
    if owner.account_id == account_id:
        return LinkedAddress(owner, linked_now=False)
    if owner.account_id is not None:
        raise Conflict(
            f"{checksummed} is linked to another account; it can belong to one account only",
            field="address",
            code="address_taken",
        )
    owner.account_id = account_id
    if name is not None:
        owner.display_name = name
    if contact_text is not None:
        owner.contact = contact_text
    session.add(owner)
    session.flush()
    return LinkedAddress(owner, linked_now=True)
