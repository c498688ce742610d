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
Dr escrow, Cr royalty_paid. Both are idempotent by their key (a line is claimed once).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from sqlmodel import Session

from ledger.journal import service as journal
from ledger.journal.models import JournalTransaction


def payable_account(address: str) -> str:
    return f"payee:{address}:royalty_payable"


def escrow_account(settlement_key: str) -> str:
    return f"settlement:{settlement_key}:escrow"


def paid_account(address: str) -> str:
    return f"payee:{address}:royalty_paid"


def funding_key(settlement_id: uuid.UUID) -> str:
    return f"settlement:{settlement_id}:funding"


def payout_key(settlement_id: uuid.UUID, account: str) -> str:
    return f"settlement:{settlement_id}:claim:{account.lower()}"


def post_funding(
    session: Session,
    *,
    settlement_id: uuid.UUID,
    settlement_key: str,
    period_id: uuid.UUID,
    currency: str,
    lines: Sequence[tuple[str, int]],
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
        idempotency_key=funding_key(settlement_id),
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
) -> JournalTransaction:
    """Settlement escrow → paid to ``account`` for one claimed line."""
    return journal.post(
        session,
        idempotency_key=payout_key(settlement_id, account),
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
