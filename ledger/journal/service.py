"""Posting balanced, idempotent transactions to the double-entry journal.

An entry is ``(account_code, account_kind, amount_minor, currency)``; ``amount_minor``
is signed, debits positive and credits negative, so a transaction balances when its
amounts sum to zero in every currency. :func:`post` checks that before writing (a
precise ``ValidationFailed``), and the database checks it again at commit.

Accounts are created on first use, one per ``(code, currency)``; their kind is part
of their identity (an existing account posted with another kind is a conflict).

Idempotency: the transaction's ``idempotency_key`` is unique and stored with a hash
of the request (kind, description, entries as a multiset, reference). Posting the
same request again returns the stored transaction and writes nothing; the same key
with another request raises ``Conflict`` naming what differs.

Chart of accounts (codes are ``<scope>:<id>:<name>``; see docs/ARCHITECTURE.md):
``model:<m>:revenue_receivable`` (asset) and ``model:<m>:revenue`` (income) for
revenue recognition; royalty accounts are posted by the period close.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from sqlalchemy import text
from sqlmodel import Session

from ledger.errors import Conflict, ErrorCollector, ValidationFailed
from ledger.journal.models import ACCOUNT_KINDS, JournalTransaction

KEY_LENGTH_MAX: Final = 200
KIND_LENGTH_MAX: Final = 32
CODE_LENGTH_MAX: Final = 200
ENTRIES_MAX: Final = 1_000_000
# journal_entry.amount_minor is a signed 64-bit integer.
ENTRY_AMOUNT_MINOR_MAX: Final = 2**63 - 1

_CURRENCY = re.compile(r"[A-Z]{3}")
_KIND = re.compile(r"[a-z][a-z0-9_]*")


@dataclass(frozen=True, slots=True)
class Entry:
    """One line of a posting: ``amount_minor`` > 0 debits the account, < 0 credits it."""

    account_code: str
    account_kind: str
    amount_minor: int
    currency: str


EntryLike = Entry | tuple[str, str, int, str]


def debit(account_code: str, account_kind: str, amount_minor: int, currency: str) -> Entry:
    """An entry debiting ``amount_minor`` (> 0) to the account."""
    return Entry(account_code, account_kind, amount_minor, currency)


def credit(account_code: str, account_kind: str, amount_minor: int, currency: str) -> Entry:
    """An entry crediting ``amount_minor`` (> 0) to the account."""
    return Entry(account_code, account_kind, -amount_minor, currency)


def post(
    session: Session,
    idempotency_key: str,
    kind: str,
    description: str,
    entries: Sequence[EntryLike],
    reference: Mapping[str, Any] | None = None,
) -> JournalTransaction:
    """Post one balanced transaction, or return the one already posted under the key.

    Raises ``ValidationFailed`` for malformed input or a transaction that does not
    balance in some currency (code ``unbalanced``, naming the currency and the
    difference), ``Conflict`` when the key was used for a different request (code
    ``idempotency_conflict``) or an account exists with another kind (code
    ``account_kind_mismatch``). Flushes; the caller commits.
    """
    normalized = _validate(idempotency_key, kind, description, entries)
    reference_json: dict[str, Any] | None = (
        None if reference is None else json.loads(json.dumps(reference, default=str))
    )
    request_hash = _request_hash(kind, description, normalized, reference_json)
    session.flush()

    existing = _transaction_by_key(session, idempotency_key)
    if existing is not None:
        return _replayed(existing, request_hash, kind, description, reference_json)

    _ensure_accounts(session, normalized)
    # A concurrent poster of the same key waits here for the other to commit, then
    # inserts nothing and replays below.
    transaction_id = session.execute(
        text(
            """
            INSERT INTO journal_transaction
                   (id, idempotency_key, request_hash, kind, description, reference)
            VALUES (gen_random_uuid(), :key, :hash, :kind, :description, CAST(:reference AS jsonb))
                ON CONFLICT (idempotency_key) DO NOTHING
            RETURNING id
            """
        ),
        {
            "key": idempotency_key,
            "hash": request_hash,
            "kind": kind,
            "description": description,
            "reference": None if reference_json is None else json.dumps(reference_json),
        },
    ).scalar_one_or_none()
    if transaction_id is None:
        raced = _transaction_by_key(session, idempotency_key)
        assert raced is not None
        return _replayed(raced, request_hash, kind, description, reference_json)

    # One set-based statement however many entries (a period close posts tens of
    # thousands); account ids are resolved in SQL, not shipped back and forth.
    inserted = session.execute(
        text(
            """
            INSERT INTO journal_entry (transaction_id, account_id, amount_minor, currency)
            SELECT :transaction_id, a.id, e.amount_minor, e.currency
              FROM unnest(CAST(:codes AS text[]), CAST(:amounts AS bigint[]),
                          CAST(:currencies AS text[]))
                   WITH ORDINALITY AS e(code, amount_minor, currency, ord)
              JOIN journal_account a ON a.code = e.code AND a.currency = e.currency
             ORDER BY e.ord
            """
        ),
        {
            "transaction_id": transaction_id,
            "codes": [e.account_code for e in normalized],
            "amounts": [e.amount_minor for e in normalized],
            "currencies": [e.currency for e in normalized],
        },
    ).rowcount  # type: ignore[attr-defined]
    assert inserted == len(normalized), "every entry's account exists after _ensure_accounts"
    transaction = session.get(JournalTransaction, transaction_id)
    assert transaction is not None
    return transaction


def _validate(
    idempotency_key: str, kind: str, description: str, entries: Sequence[EntryLike]
) -> list[Entry]:
    errors = ErrorCollector()
    if not isinstance(idempotency_key, str) or not 0 < len(idempotency_key) <= KEY_LENGTH_MAX:
        errors.add(
            "idempotency_key",
            "invalid_value",
            f"idempotency_key must be a string of 1 to {KEY_LENGTH_MAX} characters",
        )
    if not isinstance(kind, str) or not _KIND.fullmatch(kind) or len(kind) > KIND_LENGTH_MAX:
        errors.add(
            "kind",
            "invalid_value",
            f"kind must be snake_case of at most {KIND_LENGTH_MAX} characters "
            f"(e.g. revenue_recognition), got {kind!r}",
        )
    if not isinstance(description, str) or not description.strip():
        errors.add("description", "invalid_value", "description must be a non-empty string")
    if len(entries) > ENTRIES_MAX:
        errors.add("entries", "too_many_entries", f"at most {ENTRIES_MAX} entries per transaction")
    errors.raise_if_any()

    normalized: list[Entry] = []
    kinds: dict[str, str] = {}
    totals: dict[str, int] = {}
    for index, raw in enumerate(entries):
        path = f"entries/{index}"
        if isinstance(raw, Entry):
            code, account_kind, amount, currency = (
                raw.account_code,
                raw.account_kind,
                raw.amount_minor,
                raw.currency,
            )
        elif isinstance(raw, tuple | list) and len(raw) == 4:
            code, account_kind, amount, currency = raw
        else:
            errors.add(
                path,
                "invalid_type",
                "an entry is (account_code, account_kind, amount_minor, currency)",
            )
            continue
        ok = True
        if not isinstance(code, str) or not 0 < len(code) <= CODE_LENGTH_MAX:
            ok = False
            errors.add(
                f"{path}/account_code",
                "invalid_value",
                f"account code must be a string of 1 to {CODE_LENGTH_MAX} characters",
            )
        if account_kind not in ACCOUNT_KINDS:
            ok = False
            errors.add(
                f"{path}/account_kind",
                "invalid_value",
                f"account kind {account_kind!r} is not one of {', '.join(ACCOUNT_KINDS)}",
            )
        elif ok and kinds.setdefault(code, account_kind) != account_kind:
            ok = False
            errors.add(
                f"{path}/account_kind",
                "account_kind_mismatch",
                f"account {code} appears as {kinds[code]} and as {account_kind} in one posting",
            )
        if type(amount) is not int or amount == 0 or abs(amount) > ENTRY_AMOUNT_MINOR_MAX:
            ok = False
            errors.add(
                f"{path}/amount_minor",
                "invalid_value",
                "amount_minor must be a non-zero integer (debit > 0, credit < 0) "
                f"with |amount| ≤ {ENTRY_AMOUNT_MINOR_MAX}, got {amount!r}",
            )
        if not isinstance(currency, str) or not _CURRENCY.fullmatch(currency):
            ok = False
            errors.add(
                f"{path}/currency",
                "invalid_value",
                f"currency must be an ISO 4217 code like EUR, got {currency!r}",
            )
        if ok:
            totals[currency] = totals.get(currency, 0) + amount
            normalized.append(Entry(code, account_kind, amount, currency))
    if len(normalized) < 2 and not errors.errors:
        errors.add("entries", "invalid_value", "a transaction needs at least two entries")
    errors.raise_if_any()
    unbalanced = ErrorCollector()
    for currency, total in sorted(totals.items()):
        if total != 0:
            unbalanced.add(
                "entries",
                "unbalanced",
                f"the entries do not balance in {currency}: debits minus credits = {total} "
                "minor units; every transaction must sum to zero per currency",
            )
    if unbalanced.errors:
        raise ValidationFailed(
            "; ".join(e.message for e in unbalanced.errors),
            code="unbalanced",
            errors=unbalanced.errors,
            details={"imbalance_minor": {c: t for c, t in sorted(totals.items()) if t}},
        )
    return normalized


def _request_hash(
    kind: str, description: str, entries: list[Entry], reference: dict[str, Any] | None
) -> str:
    # Entries as a multiset: the same lines in another order are the same request.
    lines = sorted((e.account_code, e.account_kind, e.amount_minor, e.currency) for e in entries)
    document = {"kind": kind, "description": description, "entries": lines, "ref": reference}
    canonical = json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(canonical.encode()).hexdigest()


def _transaction_by_key(session: Session, idempotency_key: str) -> JournalTransaction | None:
    transaction_id = session.execute(
        text("SELECT id FROM journal_transaction WHERE idempotency_key = :key"),
        {"key": idempotency_key},
    ).scalar_one_or_none()
    return None if transaction_id is None else session.get(JournalTransaction, transaction_id)


def _replayed(
    stored: JournalTransaction,
    request_hash: str,
    kind: str,
    description: str,
    reference: dict[str, Any] | None,
) -> JournalTransaction:
    if stored.request_hash == request_hash:
        return stored
    differing = [
        name
        for name, old, new in (
            ("kind", stored.kind, kind),
            ("description", stored.description, description),
            ("reference", stored.reference, reference),
        )
        if old != new
    ] or ["entries"]
    raise Conflict(
        f"idempotency key {stored.idempotency_key!r} was already used for another posting "
        f"(differs in: {', '.join(differing)}); use a new key for a new posting",
        field="idempotency_key",
        code="idempotency_conflict",
        details={"differing_fields": differing, "transaction_id": str(stored.id)},
    )


def _ensure_accounts(session: Session, entries: list[Entry]) -> None:
    """Create missing accounts; raise Conflict when an account exists with another kind."""
    wanted = sorted({(e.account_code, e.currency, e.account_kind) for e in entries})
    params = {
        "codes": [w[0] for w in wanted],
        "currencies": [w[1] for w in wanted],
        "kinds": [w[2] for w in wanted],
    }
    # Sorted inserts: concurrent posters creating the same accounts lock them in the
    # same order and cannot deadlock.
    created = session.execute(
        text(
            """
            INSERT INTO journal_account (id, code, currency, kind)
            SELECT gen_random_uuid(), w.code, w.currency, w.kind
              FROM unnest(CAST(:codes AS text[]), CAST(:currencies AS text[]),
                          CAST(:kinds AS text[])) AS w(code, currency, kind)
             ORDER BY w.code, w.currency
                ON CONFLICT (code, currency) DO NOTHING
            """
        ),
        params,
    ).rowcount  # type: ignore[attr-defined]
    if created == len(wanted):
        return  # all new: created with the kinds asked for
    mismatches = session.execute(
        text(
            """
            SELECT a.code, a.currency, a.kind AS stored_kind, w.kind
              FROM unnest(CAST(:codes AS text[]), CAST(:currencies AS text[]),
                          CAST(:kinds AS text[])) AS w(code, currency, kind)
              JOIN journal_account a ON a.code = w.code AND a.currency = w.currency
             WHERE a.kind <> w.kind
             ORDER BY a.code, a.currency
            """
        ),
        params,
    ).all()
    if mismatches:
        first = mismatches[0]
        raise Conflict(
            f"account {first.code} ({first.currency}) is a {first.stored_kind} account, "
            f"not {first.kind}; post to it with kind {first.stored_kind} or use another code",
            field="entries",
            code="account_kind_mismatch",
            details={"accounts": [f"{m.code}:{m.currency}" for m in mismatches]},
        )
