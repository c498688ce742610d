"""The claim indexer: ``Claimed`` events → settlement claims, payouts in the journal, paid periods.

:func:`index_claims` reads the settlement contract's ``Claimed`` events from the block after
the chain cursor up to the newest block with ``chain_confirmations`` confirmations, in ranges
of at most ``chain_log_block_range`` blocks, one transaction per range (claims, journal
payouts, claimed totals, paid periods and the cursor commit together). Replays change nothing:
a claim is unique by ``(tx_hash, log_index)`` and by line, its payout by its idempotency key.
Concurrent indexers of one contract serialise on an advisory lock and skip ranges already done.

A claim the ledger cannot match to its published line (unknown account, other amount) is
still recorded (it happened on chain) but gets no journal payout; ``reconcile`` reports it.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field

from sqlalchemy import select, text, update
from sqlalchemy.dialects.postgresql import insert
from sqlmodel import Session, col

from contracts.client import ClaimEvent, UsefirstChain
from ledger.db import session_scope
from ledger.periods.models import Period
from ledger.settings import Settings, get_settings
from ledger.settlements import postings, queries
from ledger.settlements.models import ChainCursor, Settlement, SettlementClaim

log = logging.getLogger(__name__)


@dataclass
class IndexOutcome:
    from_block: int
    to_block: int
    events_seen: int = 0
    claims_recorded: int = 0
    # Claimed events of settlement ids the ledger does not know (not ours, or never prepared).
    unknown_events: int = 0
    # Claims recorded without a journal payout (no matching line): see reconcile.
    unmatched_claims: int = 0
    periods_paid: list[uuid.UUID] = field(default_factory=list)


def block_ranges(from_block: int, to_block: int, size: int) -> Iterator[tuple[int, int]]:
    """``[from_block, to_block]`` in consecutive inclusive ranges of at most ``size`` blocks."""
    start = from_block
    while start <= to_block:
        end = min(start + size - 1, to_block)
        yield start, end
        start = end + 1


def confirmed_head(chain: UsefirstChain, settings: Settings) -> int:
    """The newest block with ``chain_confirmations`` confirmations (itself included)."""
    return int(chain.w3.eth.block_number) - (settings.chain_confirmations - 1)


def index_claims(
    *,
    chain: UsefirstChain | None = None,
    settings: Settings | None = None,
    to_block: int | None = None,
) -> IndexOutcome:
    """Index ``Claimed`` events up to the confirmed head (or ``to_block``); see the module doc."""
    settings = settings or get_settings()
    chain = chain or UsefirstChain.connect(settings)
    contract = chain.settlement.address
    head = confirmed_head(chain, settings)
    if to_block is not None:
        head = min(head, to_block)
    with session_scope(settings) as session:
        cursor = session.get(ChainCursor, (chain.chain_id, contract))
        start = cursor.last_block + 1 if cursor else chain.settlement_from_block
    outcome = IndexOutcome(from_block=start, to_block=head)
    for range_start, range_end in block_ranges(start, head, settings.chain_log_block_range):
        events = chain.claim_events(range_start, range_end)
        with session_scope(settings) as session:
            session.execute(
                text("SELECT pg_advisory_xact_lock(hashtextextended(:k, 0))"),
                {"k": f"index:{chain.chain_id}:{contract}"},
            )
            cursor = session.get(ChainCursor, (chain.chain_id, contract), populate_existing=True)
            if cursor is not None and cursor.last_block >= range_end:
                continue  # another indexer got here first
            for event in events:
                outcome.events_seen += 1
                _record(session, chain, event, outcome)
            if cursor is None:
                cursor = ChainCursor(
                    chain_id=chain.chain_id, contract_address=contract, last_block=range_end
                )
            cursor.last_block = range_end
            session.add(cursor)
    return outcome


def _record(
    session: Session, chain: UsefirstChain, event: ClaimEvent, outcome: IndexOutcome
) -> None:
    settlement = session.execute(
        select(Settlement).where(
            col(Settlement.settlement_key) == "0x" + event.settlement_id.hex(),
            col(Settlement.chain_id) == chain.chain_id,
            col(Settlement.contract_address) == chain.settlement.address,
        )
    ).scalar_one_or_none()
    if settlement is None:
        outcome.unknown_events += 1
        return
    claim_id = session.execute(
        insert(SettlementClaim)
        .values(
            settlement_id=settlement.id,
            account=event.account,
            amount_units=event.amount_units,
            tx_hash=event.tx_hash,
            log_index=event.log_index,
            block_number=event.block_number,
        )
        .on_conflict_do_nothing()
        .returning(col(SettlementClaim.id))
    ).scalar_one_or_none()
    if claim_id is None:
        return  # indexed before
    outcome.claims_recorded += 1
    session.execute(
        update(Settlement)
        .where(col(Settlement.id) == settlement.id)
        .values(claimed_units=col(Settlement.claimed_units) + event.amount_units)
    )
    line = queries.tree_lines(settlement).get(event.account.lower())
    scale = int(settlement.units_per_minor)
    if line is None or line[1] != event.amount_units or event.amount_units % scale:
        outcome.unmatched_claims += 1
        log.warning(
            "claim %s:%d on settlement %s matches no published line; recorded without payout",
            event.tx_hash,
            event.log_index,
            settlement.settlement_key,
        )
        return
    period = session.get(Period, settlement.period_id)
    assert period is not None
    posted = postings.post_payout(
        session,
        settlement_id=settlement.id,
        settlement_key=settlement.settlement_key,
        account=line[0],
        amount_minor=event.amount_units // scale,
        currency=queries.period_currency(session, period),
        tx_hash=event.tx_hash,
        log_index=event.log_index,
    )
    session.execute(
        update(SettlementClaim)
        .where(col(SettlementClaim.id) == claim_id)
        .values(journal_transaction_id=posted.id)
    )
    session.refresh(settlement)
    if queries.mark_paid_if_complete(session, settlement):
        outcome.periods_paid.append(settlement.period_id)
