"""Journal postings of on-chain settlement, in the statement's currency (minor units).

Chart of accounts used here (codes ``<scope>:<id>:<name>``):

- ``payee:<address>:royalty_payable`` (liability): credited by the period close for each
  payable line; debited here when the settlement that pays it is funded on chain.
- ``settlement:<settlement_key>:escrow`` (liability): what a published, funded settlement still
  owes its payees. Credited with the settlement total at funding, debited by each claim;
  its balance is ``-(total − claimed)`` and reaches 0 when every line is claimed.
- ``payee:<address>:royalty_paid`` (asset, credit balance): funds that reached the payee on
  chain; its balance is minus what the payee has been paid in total.

Funding (kind ``settlement_funding``, key ``settlement:<id>:funding``): Dr royalty_payable per
payee, Cr escrow. Payout (kind ``royalty_payout``, key ``settlement:<id>:claim:<address>``):
Dr escrow, Cr royalty_paid. Funding reversal (kind ``settlement_funding_reversal``, key
``<funding key>:reversal``), when the guardian revoked the settlement on chain: the funding's
entries with opposite signs (Dr escrow, Cr royalty_payable per payee), so the payees are owed
again until a re-anchor funds them. All are idempotent by their key (a line is claimed once, a
funding reversed once); the journal is append-only, so a revocation never edits the funding.

Keys carry the settlement's attempt from the first re-anchor on (``settlement:<id>:attempt:<n>:…``);
attempt 0 keeps the keys it always had.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from sqlmodel import Session

from ledger.journal import queries as journal_queries
from ledger.journal import service as journal
from ledger.journal.models import JournalTransaction


def payable_account(address: str) -> str:
    return f"payee:{address}:royalty_payable"


def escrow_account(settlement_key: str) -> str:
    return f"settlement:{settlement_key}:escrow"


def paid_account(address: str) -> str:
    return f"payee:{address}:royalty_paid"


def _scope(settlement_id: uuid.UUID, attempt: int) -> str:
    assert attempt >= 0
    return (
        f"settlement:{settlement_id}"
        if attempt == 0
        else f"settlement:{settlement_id}:attempt:{attempt}"
    )


def funding_key(settlement_id: uuid.UUID, attempt: int = 0) -> str:
    return f"{_scope(settlement_id, attempt)}:funding"


def funding_reversal_key(settlement_id: uuid.UUID, attempt: int = 0) -> str:
    return f"{funding_key(settlement_id, attempt)}:reversal"


def payout_key(settlement_id: uuid.UUID, account: str, attempt: int = 0) -> str:
    return f"{_scope(settlement_id, attempt)}:claim:{account.lower()}"


def post_funding(
    session: Session,
    *,
    settlement_id: uuid.UUID,
    settlement_key: str,
    period_id: uuid.UUID,
    currency: str,
    lines: Sequence[tuple[str, int]],
    attempt: int = 0,
) -> JournalTransaction:
    """Royalty payable → settlement escrow for every ``(address, payable_minor > 0)`` line."""
    total_minor = sum(amount for _, amount in lines)
    assert total_minor > 0 and all(amount > 0 for _, amount in lines)
    entries: list[journal.EntryLike] = [
        journal.debit(payable_account(address), "liability", amount, currency)
        for address, amount in lines
    ]
    entries.append(
        journal.credit(escrow_account(settlement_key), "liability", total_minor, currency)
    )
    return journal.post(
        session,
        idempotency_key=funding_key(settlement_id, attempt),
        kind="settlement_funding",
        description=f"settlement {settlement_key} funded on chain",
        entries=entries,
        reference={"settlement_id": str(settlement_id), "period_id": str(period_id)},
    )


def post_payout(
    session: Session,
    *,
    settlement_id: uuid.UUID,
    settlement_key: str,
    account: str,
    amount_minor: int,
    currency: str,
    tx_hash: str,
    log_index: int,
    attempt: int = 0,
) -> JournalTransaction:
    """Settlement escrow → paid to ``account`` for one claimed line."""
    return journal.post(
        session,
        idempotency_key=payout_key(settlement_id, account, attempt),
        kind="royalty_payout",
        description=f"{account} claimed their line of settlement {settlement_key}",
        entries=[
            journal.debit(escrow_account(settlement_key), "liability", amount_minor, currency),
            journal.credit(paid_account(account), "asset", amount_minor, currency),
        ],
        reference={
            "settlement_id": str(settlement_id),
            "tx_hash": tx_hash,
            "log_index": log_index,
        },
    )


def post_funding_reversal(
    session: Session,
    *,
    funding: JournalTransaction,
    settlement_id: uuid.UUID,
    settlement_key: str,
    period_id: uuid.UUID,
    attempt: int = 0,
) -> JournalTransaction:
    """Reverse ``funding`` (settlement escrow → royalty payable): its entries, same accounts,
    amounts and currency, opposite signs, in a new transaction."""
    entries: list[journal.EntryLike] = [
        journal.Entry(code, kind, -amount_minor, currency)
        for code, kind, amount_minor, currency in journal_queries.transaction_entries(
            session, funding.id
        )
    ]
    assert entries, f"funding transaction {funding.id} has no entries"
    return journal.post(
        session,
        idempotency_key=funding_reversal_key(settlement_id, attempt),
        kind="settlement_funding_reversal",
        description=f"settlement {settlement_key} revoked on chain: funding reversed",
        entries=entries,
        reference={
            "settlement_id": str(settlement_id),
            "period_id": str(period_id),
            "settlement_key": settlement_key,
            "reverses": str(funding.id),
        },
    )
