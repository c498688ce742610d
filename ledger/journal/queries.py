"""Balances derived from journal entries (never stored).

Signs follow the entries: debits positive, credits negative. An asset or expense
account normally has a positive balance, a liability, income or equity account a
negative one. Over any set of whole transactions the balances sum to zero per
currency; :class:`TrialBalance` reports that sum so callers can assert it.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from sqlalchemy import text
from sqlmodel import Session


@dataclass(frozen=True, slots=True)
class AccountBalance:
    code: str
    kind: str
    currency: str
    balance_minor: int


@dataclass(frozen=True)
class TrialBalance:
    """Every account's balance, and per currency the sum of all of them (zero when the
    journal is balanced, which the database guarantees for committed transactions)."""

    accounts: tuple[AccountBalance, ...]
    totals_minor: dict[str, int]

    @property
    def is_balanced(self) -> bool:
        return all(total == 0 for total in self.totals_minor.values())


def balance(session: Session, account_code: str, currency: str) -> int:
    """Signed balance of one account in minor units (0 when it has no entries or
    does not exist)."""
    session.flush()
    total = session.execute(
        text(
            """
            SELECT COALESCE(sum(e.amount_minor), 0)
              FROM journal_account a JOIN journal_entry e ON e.account_id = a.id
             WHERE a.code = :code AND a.currency = :currency
            """
        ),
        {"code": account_code, "currency": currency},
    ).scalar_one()
    return int(total)


def trial_balance(session: Session, *, code_prefix: str | None = None) -> TrialBalance:
    """Balances of all accounts (or those whose code starts with ``code_prefix``),
    ordered by currency and code, with the total per currency."""
    session.flush()
    rows = session.execute(
        text(
            """
            SELECT a.code, a.kind, a.currency, sum(e.amount_minor) AS balance_minor
              FROM journal_account a JOIN journal_entry e ON e.account_id = a.id
             WHERE CAST(:prefix AS text) IS NULL
                OR left(a.code, length(CAST(:prefix AS text))) = :prefix
             GROUP BY a.code, a.kind, a.currency
             ORDER BY a.currency, a.code
            """
        ),
        {"prefix": code_prefix},
    ).all()
    accounts = tuple(
        AccountBalance(row.code, row.kind, row.currency, int(row.balance_minor)) for row in rows
    )
    totals: dict[str, int] = {}
    for account in accounts:
        totals[account.currency] = totals.get(account.currency, 0) + account.balance_minor
    return TrialBalance(accounts=accounts, totals_minor=totals)


def transaction_entries(
    session: Session, transaction_id: uuid.UUID
) -> list[tuple[str, str, int, str]]:
    """The entries of one transaction as ``(account_code, account_kind, amount_minor,
    currency)``, in the order they were posted."""
    session.flush()
    rows = session.execute(
        text(
            """
            SELECT a.code, a.kind, e.amount_minor, e.currency
              FROM journal_entry e JOIN journal_account a ON a.id = e.account_id
             WHERE e.transaction_id = :transaction_id
             ORDER BY e.id
            """
        ),
        {"transaction_id": transaction_id},
    ).all()
    return [(row.code, row.kind, int(row.amount_minor), row.currency) for row in rows]
