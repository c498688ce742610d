"""The journal as CSV for an accounting import: one row per entry.

``amount_minor`` is signed in the ledger (debit > 0, credit < 0); here it is split
into ``debit_minor`` and ``credit_minor``, one of them zero, both non-negative, plus
the same amounts in major units (``debit``, ``credit``) as exact decimal text.
Every transaction's debits equal its credits per currency (the journal enforces it).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from functools import lru_cache
from typing import Final

from sqlmodel import Session

from ledger.currencies import currency_exponent, major_text
from ledger.reports import queries
from ledger.reports.streams import Progress, csv_chunks, safe_text

COLUMNS: Final = (
    "transaction_id",
    "posted_at",
    "kind",
    "description",
    "account_code",
    "account_kind",
    "currency",
    "debit_minor",
    "credit_minor",
    "debit",
    "credit",
    "reference",
)


@lru_cache(maxsize=64)
def _exponent(currency: str) -> int:
    return currency_exponent(currency)


def _rows(session: Session, start: datetime, end: datetime) -> Iterator[list[object]]:
    for entry in queries.stream_journal(session, start, end):
        exponent = _exponent(entry.currency)
        debit_minor = max(entry.amount_minor, 0)
        credit_minor = max(-entry.amount_minor, 0)
        reference = (
            ""
            if entry.reference is None
            else json.dumps(entry.reference, sort_keys=True, separators=(",", ":"))
        )
        yield [
            entry.transaction_id,
            entry.posted_at.astimezone(UTC).isoformat(),
            entry.kind,
            safe_text(entry.description),
            entry.account_code,
            entry.account_kind,
            entry.currency,
            debit_minor,
            credit_minor,
            major_text(debit_minor, exponent),
            major_text(credit_minor, exponent),
            reference,
        ]


def iter_journal_csv(
    session: Session, start: datetime, end: datetime, progress: Progress | None = None
) -> Iterator[bytes]:
    """Entries of transactions posted in ``[start, end)`` as CSV chunks (``COLUMNS``)."""
    total = queries.journal_entry_count(session, start, end)
    return csv_chunks(COLUMNS, _rows(session, start, end), total=total, progress=progress)
