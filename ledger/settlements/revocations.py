"""Following a guardian's revocation: funding reversed, settlement revoked, period re-anchorable.

The guardian may revoke a published settlement during its challenge window; the contract
returns its funds to the settler and emits ``SettlementRevoked``. :func:`apply_revocation` is
the ledger's one way to follow, called by the indexer for each ``SettlementRevoked`` event of
our settlements and by anchoring when it reads a revoked record on chain. In the caller's
transaction (it flushes, the caller commits) it:

1. records the revoked attempt as a ``settlement_revocation`` row, unique by its on-chain id:
   a revocation is applied **once**, whoever sees it first and however often it is re-read;
2. reverses the funding when it had been posted (``postings.post_funding_reversal``: a new
   journal transaction with the funding's entries negated, under its own idempotency key);
3. marks the settlement ``revoked`` and moves its period ``anchored → closed``, from where
   ``anchor`` publishes the same statement again under the next attempt's id (``ids.py``).

Locks: the settlement (``FOR UPDATE``), then the period (its conditional update), the order
confirmation and claim indexing use; an indexer and an anchorer applying the same revocation
serialise on the settlement row and the second finds the revocation recorded.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass

from sqlmodel import Session

from contracts.client import RevocationEvent, UsefirstChain
from ledger.periods import service as periods
from ledger.settlements import postings, queries
from ledger.settlements.models import Settlement, SettlementRevocation

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RevocationOutcome:
    settlement_id: uuid.UUID
    period_id: uuid.UUID
    settlement_key: str
    attempt: int
    # False when the revocation had been applied before (nothing was written).
    applied: bool
    reversal_transaction_id: uuid.UUID | None


def find_revocation_event(
    chain: UsefirstChain, settlement_key: str, from_block: int | None
) -> RevocationEvent | None:
    """The ``SettlementRevoked`` event of one settlement, or None when the node does not serve
    it (a pruned or log-limited node: the contract's state stays authoritative)."""
    key = bytes.fromhex(settlement_key.removeprefix("0x"))
    try:
        events = chain.revocation_events(
            from_block or chain.settlement_from_block, "latest", settlement_id=key
        )
    except Exception:  # any log failure leaves the state-based record
        log.warning("could not read the SettlementRevoked log of %s", settlement_key, exc_info=True)
        return None
    return events[0] if events else None


def apply_revocation(
    session: Session,
    *,
    chain_id: int,
    contract_address: str,
    settlement_key: str,
    event: RevocationEvent | None = None,
) -> RevocationOutcome | None:
    """Apply the on-chain revocation of ``settlement_key`` to the ledger, exactly once.

    The caller has seen it on chain: the ``event``, or a ``getSettlement`` record with status
    revoked (``event`` None). Returns None for an id that is not one of our settlements, the
    outcome with ``applied=False`` when it was applied before (the event's transaction is
    filled in if the first application did not know it). Flushes; the caller commits.
    """
    settlement_key = settlement_key.lower()
    known = queries.revocation_by_key(session, chain_id, contract_address, settlement_key)
    if known is None:
        locked = queries.settlement_by_key(
            session, chain_id, contract_address, settlement_key, lock=True
        )
        if locked is None:
            return None
        # Re-read under the lock: a concurrent applier may have recorded it while we waited.
        known = queries.revocation_by_key(session, chain_id, contract_address, settlement_key)
        if known is None:
            return _apply(session, locked, event)
    if event is not None and known.tx_hash is None:
        known.tx_hash = event.tx_hash
        known.log_index = event.log_index
        known.block_number = event.block_number
        known.refunded_units = event.refunded_units
        session.add(known)
        session.flush()
    return RevocationOutcome(
        settlement_id=known.settlement_id,
        period_id=known.period_id,
        settlement_key=known.settlement_key,
        attempt=known.attempt,
        applied=False,
        reversal_transaction_id=known.reversal_transaction_id,
    )


def _apply(
    session: Session, settlement: Settlement, event: RevocationEvent | None
) -> RevocationOutcome:
    funding = queries.funding_transaction(session, settlement.id, settlement.attempt)
    reversal = None
    if funding is not None:
        reversal = postings.post_funding_reversal(
            session,
            funding=funding,
            settlement_id=settlement.id,
            settlement_key=settlement.settlement_key,
            period_id=settlement.period_id,
            attempt=settlement.attempt,
        )
    # Unique by on-chain id and by attempt: the settlement's row lock serialises appliers, and
    # a second record would fail the transaction rather than post twice.
    session.add(
        SettlementRevocation(
            settlement_id=settlement.id,
            period_id=settlement.period_id,
            attempt=settlement.attempt,
            chain_id=settlement.chain_id,
            contract_address=settlement.contract_address,
            settlement_key=settlement.settlement_key,
            merkle_root=settlement.merkle_root,
            total_units=settlement.total_units,
            publish_tx_hash=settlement.publish_tx_hash,
            state_before=settlement.state,
            refunded_units=None if event is None else event.refunded_units,
            tx_hash=None if event is None else event.tx_hash,
            log_index=None if event is None else event.log_index,
            block_number=None if event is None else event.block_number,
            funding_transaction_id=None if funding is None else funding.id,
            reversal_transaction_id=None if reversal is None else reversal.id,
        )
    )
    state_before = settlement.state
    settlement.state = "revoked"
    session.add(settlement)
    session.flush()
    reopened = queries.reopen_anchored_period(session, settlement.period_id)
    period = periods.get_period(session, settlement.period_id)
    if period.state != "closed":
        # Claims open only after the challenge window and revocation only inside it, so a
        # revoked settlement has no claim and its period cannot be paid; reconcile reports it.
        log.error(
            "period %s of revoked settlement %s is %s, not closed",
            period.id,
            settlement.settlement_key,
            period.state,
        )
    log.warning(
        "settlement %s (attempt %d, was %s) revoked on chain: %s; period %s %s",
        settlement.settlement_key,
        settlement.attempt,
        state_before,
        "funding reversed" if reversal is not None else "no funding had been posted",
        period.key,
        "back to closed" if reopened else f"stays {period.state}",
    )
    return RevocationOutcome(
        settlement_id=settlement.id,
        period_id=settlement.period_id,
        settlement_key=settlement.settlement_key,
        attempt=settlement.attempt,
        applied=True,
        reversal_transaction_id=None if reversal is None else reversal.id,
    )
