"""The chain indexer: ``Claimed`` events → settlement claims, payouts in the journal, paid
periods; ``SettlementRevoked`` events → reversed fundings, revoked settlements, closed periods.

:func:`index_claims` reads the settlement contract's ``Claimed`` and ``SettlementRevoked``
events from the block after the chain cursor up to the newest block with
``chain_confirmations`` confirmations, in ranges of at most ``chain_log_block_range`` blocks,
one transaction per range (claims, journal payouts and reversals, claimed totals, period
states and the cursor commit together), events in chain order. Replays change nothing: a claim
is unique by ``(tx_hash, log_index)`` and by line, its payout by its idempotency key; a
revocation is recorded once per settlement id (``revocations.apply_revocation``, which
anchoring uses too) and its reversal has its own idempotency key. Concurrent indexers of one
contract serialise on an advisory lock and skip ranges already done.

The cursor keeps one block per event kind: ``last_block`` for claims and
``revocations_last_block`` for revocations. A cursor written before revocations were indexed
(NULL) makes the next run read ``SettlementRevoked`` from the contract's deployment block,
once, so revocations that happened before the upgrade are applied too.

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

from contracts.client import ClaimEvent, RevocationEvent, UsefirstChain
from ledger.db import session_scope
from ledger.faults import fault_point
from ledger.periods.models import Period
from ledger.settings import Settings, get_settings
from ledger.settlements import postings, queries
from ledger.settlements.models import ChainCursor, Settlement, SettlementClaim
from ledger.settlements.revocations import apply_revocation

log = logging.getLogger(__name__)


@dataclass
class IndexOutcome:
    from_block: int
    to_block: int
    # Claimed and SettlementRevoked events read.
    events_seen: int = 0
    claims_recorded: int = 0
    # Events of settlement ids the ledger does not know (not ours, or never prepared).
    unknown_events: int = 0
    # Claims recorded without a journal payout (no matching line): see reconcile.
    unmatched_claims: int = 0
    periods_paid: list[uuid.UUID] = field(default_factory=list)
    # Revocations applied by this run (funding reversed, settlement revoked, period closed).
    revocations_applied: int = 0
    periods_revoked: list[uuid.UUID] = field(default_factory=list)


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
    """Index ``Claimed`` and ``SettlementRevoked`` events up to the confirmed head (or
    ``to_block``); see the module doc."""
    settings = settings or get_settings()
    chain = chain or UsefirstChain.connect(settings)
    contract = chain.settlement.address
    head = confirmed_head(chain, settings)
    if to_block is not None:
        head = min(head, to_block)
    with session_scope(settings) as session:
        cursor = session.get(ChainCursor, (chain.chain_id, contract))
        claims_from, revocations_from = _next_blocks(cursor, chain.settlement_from_block)
    start = min(claims_from, revocations_from)
    outcome = IndexOutcome(from_block=start, to_block=head)
    for range_start, range_end in block_ranges(start, head, settings.chain_log_block_range):
        claims: list[ClaimEvent] = []
        if range_end >= claims_from:
            claims = chain.claim_events(max(range_start, claims_from), range_end)
        revoked: list[RevocationEvent] = []
        if range_end >= revocations_from:
            revoked = chain.revocation_events(max(range_start, revocations_from), range_end)
        with session_scope(settings) as session:
            session.execute(
                text("SELECT pg_advisory_xact_lock(hashtextextended(:k, 0))"),
                {"k": f"index:{chain.chain_id}:{contract}"},
            )
            cursor = session.get(ChainCursor, (chain.chain_id, contract), populate_existing=True)
            claims_done_to, revocations_done_to = _done_blocks(cursor)
            done_claims = claims_done_to >= range_end
            done_revocations = revocations_done_to >= range_end
            if done_claims and done_revocations:
                continue  # another indexer got here first
            events: list[ClaimEvent | RevocationEvent] = [
                *(claims if not done_claims else []),
                *(revoked if not done_revocations else []),
            ]
            for event in sorted(events, key=lambda e: (e.block_number, e.log_index)):
                outcome.events_seen += 1
                if isinstance(event, RevocationEvent):
                    _revoke(session, chain, event, outcome)
                else:
                    _record(session, chain, event, outcome)
            if cursor is None:
                cursor = ChainCursor(
                    chain_id=chain.chain_id, contract_address=contract, last_block=range_end
                )
            cursor.last_block = max(cursor.last_block, range_end)
            cursor.revocations_last_block = max(_done_blocks(cursor)[1], range_end)
            session.add(cursor)
            session.flush()
            fault_point("index_before_commit", settings)  # claims and cursor written, not committed
    return outcome


def _next_blocks(cursor: ChainCursor | None, deployed_at: int) -> tuple[int, int]:
    """The first block of claims and of revocations still to index."""
    if cursor is None:
        return deployed_at, deployed_at
    if cursor.revocations_last_block is None:  # written before revocations were indexed
        return cursor.last_block + 1, deployed_at
    return cursor.last_block + 1, cursor.revocations_last_block + 1


def _done_blocks(cursor: ChainCursor | None) -> tuple[int, int]:
    """The last block indexed for claims and for revocations (-1: none yet)."""
    if cursor is None:
        return -1, -1
    revocations = cursor.revocations_last_block
    return cursor.last_block, -1 if revocations is None else revocations


def _revoke(
    session: Session, chain: UsefirstChain, event: RevocationEvent, outcome: IndexOutcome
) -> None:
    applied = apply_revocation(
        session,
        chain_id=chain.chain_id,
        contract_address=chain.settlement.address,
        settlement_key=event.settlement_key,
        event=event,
    )
    if applied is None:
        outcome.unknown_events += 1
        return
    if applied.applied:
        outcome.revocations_applied += 1
        outcome.periods_revoked.append(applied.period_id)


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
        attempt=settlement.attempt,
    )
    session.execute(
        update(SettlementClaim)
        .where(col(SettlementClaim.id) == claim_id)
        .values(journal_transaction_id=posted.id)
    )
    session.refresh(settlement)
    if queries.mark_paid_if_complete(session, settlement):
        outcome.periods_paid.append(settlement.period_id)
