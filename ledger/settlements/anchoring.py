"""Anchoring a closed period on chain: prepare → publish → confirm (``closed → anchored``).

Each step takes ids, is idempotent and restartable, and writes in its own short transaction:

1. :func:`prepare_settlement` (caller's session): converts the statement's payable lines to
   token base units exactly, builds the OpenZeppelin tree and stores the ``prepared``
   settlement. A period with no payable line publishes nothing: it moves ``closed → anchored →
   paid`` here and the step returns None.
2. :func:`publish_settlement`: looks at the chain first (``find_publish``): a publication of
   this settlement id with the same root, total, token and statement hash is recorded, never
   sent again; a recorded publish transaction still pending is waited for. Otherwise (on the
   local chain, after minting the settler's shortfall) it approves and publishes; the publish
   transaction's hash is **committed before its receipt is awaited**, so a process that dies
   in between finds it on the next run. One publisher per settler key at a time (a Postgres
   session advisory lock): approve-then-publish must not interleave across processes.
3. :func:`confirm_settlement`: waits for ``chain_confirmations``, re-reads the contract, and in
   one transaction marks the settlement ``confirmed``, moves the period ``closed → anchored``
   and posts the funding (royalty payable → settlement escrow, see ``postings.py``).

:func:`anchor_period` runs the three.

Revocations: when confirmation reads the settlement revoked on chain (the guardian, during the
challenge window) it applies the revocation (``revocations.apply_revocation``, the function
the indexer uses: funding reversed if posted, settlement ``revoked``, period back to
``closed``) and fails with ``settlement_revoked``. Anchoring that period again prepares the
next attempt: the same statement under a new settlement id (``ids.settlement_key_for``), as
the contract never accepts a revoked id again.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, NoReturn

from sqlalchemy import text, update
from sqlmodel import Session, col
from web3.exceptions import TransactionNotFound

from contracts.client import RevocationEvent, SettlementStatus, UsefirstChain
from contracts.errors import ContractRevert
from ledger.db import get_engine, session_scope
from ledger.errors import StateError
from ledger.faults import fault_point
from ledger.periods import service as periods
from ledger.periods.close import load_statement
from ledger.periods.models import Period
from ledger.settings import Settings, get_settings
from ledger.settlements import postings, queries, revocations
from ledger.settlements.ids import ATTEMPTS_MAX, settlement_key_for
from ledger.settlements.models import Settlement
from ledger.settlements.tree import statement_settlement_tree, units_per_minor
from ledger.types import utcnow

log = logging.getLogger(__name__)

# RoyaltySettlement keeps a settlement's remaining amount in a uint96 (publish reverts with
# TotalTooLarge above it); refused here first, before anything is sent.
SETTLEMENT_TOTAL_UNITS_MAX = 2**96 - 1
NO_PAYABLE_NOTE = (
    "no line of this statement is payable (no revenue, or every balance is below the minimum "
    "payout and carried forward): nothing was published on chain; the period is marked "
    "anchored and paid"
)

# (step, message) for progress reporting, e.g. by the CLI.
Progress = Callable[[str, str], None]


@dataclass(frozen=True)
class AnchorOutcome:
    period_id: uuid.UUID
    period_state: str
    settlement_id: uuid.UUID | None
    settlement_key: str | None
    settlement_state: str | None
    merkle_root: str | None
    total_units: int
    line_count: int
    publish_tx_hash: str | None
    publish_block: int | None
    note: str | None


def _hex_bytes(value: str) -> bytes:
    return bytes.fromhex(value.removeprefix("0x"))


# --- 1. prepare --------------------------------------------------------------------------


def prepare_settlement(
    session: Session,
    period_id: uuid.UUID,
    *,
    chain: UsefirstChain | None = None,
    reanchor: bool = False,
) -> Settlement | None:
    """The ``prepared`` settlement of a closed period, created on the first call.

    Returns the existing settlement on later calls, and None for a period without a payable
    line (moved to ``paid`` here with no settlement). A settlement revoked on chain becomes the
    next attempt (same row, new settlement id, ``prepared`` again) only when ``reanchor`` says
    so: a guardian's revoke means something was wrong, and a retry of an anchor job started
    before it must not publish again on its own (StateError ``settlement_revoked``). Its
    revocation is applied first if the ledger had not recorded it. Raises StateError when the
    period is not closed yet (code ``period_not_closed``), its statement lines differ from its
    canonical statement (``statement_lines_differ``) or it was revoked ``ATTEMPTS_MAX`` times
    (``settlement_attempts_exhausted``), ValidationFailed when the token cannot represent the
    currency's minor unit (``token_decimals_too_few``). Flushes; the caller commits.
    """
    existing = queries.settlement_for_period(session, period_id)
    if existing is not None and existing.state == "revoked":
        chain = chain or UsefirstChain.connect()
        # Before the period lock: apply_revocation locks the settlement, then the period.
        _ensure_revocation_recorded(session, chain, existing)
    period = periods.lock_period_for_update(session, period_id)
    existing = queries.settlement_for_period(session, period_id)
    if existing is not None and existing.state not in ("prepared", "revoked"):
        return existing
    if existing is None and period.state in ("anchored", "paid"):
        return None  # anchored earlier without anything to publish
    if period.state != "closed":
        raise StateError(
            f"period {period.key} of model {period.model_id} is {period.state}; close it "
            "before anchoring (usefirst period close)",
            field="period_id",
            code="period_not_closed",
        )
    if existing is not None and existing.state == "revoked" and not reanchor:
        raise StateError(
            f"the guardian revoked settlement {existing.settlement_key} of period {period.key} "
            "(its funding is reversed); once the reason is understood, anchor it again "
            "explicitly (usefirst anchor --reanchor, or POST /v1/periods/{id}/anchor with "
            '{"reanchor": true})',
            field="reanchor",
            code="settlement_revoked",
        )
    attempt = 0
    if existing is not None:
        attempt = existing.attempt + 1 if existing.state == "revoked" else existing.attempt
    if attempt >= ATTEMPTS_MAX:
        raise StateError(
            f"the settlement of period {period.key} was revoked {attempt} times; it is not "
            "anchored again automatically (investigate why the guardian revokes it)",
            field="period_id",
            code="settlement_attempts_exhausted",
        )
    chain = chain or UsefirstChain.connect()
    statement = load_statement(session, period)
    scale = units_per_minor(
        chain.token_decimals(),
        statement.currency,
        configured_units_per_minor=chain.settings.chain_units_per_minor,
    )
    built = statement_settlement_tree(statement, scale)
    if built.total_units > SETTLEMENT_TOTAL_UNITS_MAX:
        raise StateError(
            f"period {period.key} pays {built.total_units} token base units in total; one "
            f"settlement holds at most {SETTLEMENT_TOTAL_UNITS_MAX} (the contract keeps the "
            "remaining amount in 96 bits); a token with fewer decimals "
            "(USEFIRST_CHAIN_UNITS_PER_MINOR) or a shorter period fits",
            field="period_id",
            code="settlement_total_too_large",
        )
    ledger_lines = queries.payable_lines(session, period_id)
    stated = sorted((line.account, line.payable_minor) for line in built.lines)
    if stated != sorted(ledger_lines):
        raise StateError(
            f"the statement lines stored for period {period.key} differ from its canonical "
            "statement; the close is inconsistent and must be investigated before anchoring",
            field="period_id",
            code="statement_lines_differ",
        )
    if built.tree is None:
        if existing is not None:  # pragma: no cover - a prepared settlement has lines
            raise StateError("a prepared settlement has no payable line", code="invalid_state")
        periods.transition(session, period_id, "closed", "anchored")
        periods.transition(session, period_id, "anchored", "paid")
        log.info("period %s: %s", period_id, NO_PAYABLE_NOTE)
        return None
    assert period.statement_hash is not None
    # A prepared settlement sent nothing yet: it follows the chain we are connected to now
    # (e.g. the local chain was redeployed).
    fields: dict[str, Any] = {
        "chain_id": chain.chain_id,
        "contract_address": chain.settlement.address,
        "token_address": chain.token_address,
        "settlement_key": "0x" + settlement_key_for(period.model_id, period.id, attempt).hex(),
        "attempt": attempt,
        "merkle_root": built.tree.root_hex,
        "statement_hash": "0x" + period.statement_hash,
        "total_units": built.total_units,
        "units_per_minor": scale,
        "line_count": len(built.lines),
        "tree_dump": built.tree.dump(),
    }
    if existing is None:
        settlement = Settlement(period_id=period_id, **fields)
    else:
        settlement = existing
        if existing.state == "revoked":
            # The revoked attempt is on record (settlement_revocation); this row now follows
            # the next one from scratch.
            fields.update(
                state="prepared",
                approve_tx_hash=None,
                publish_tx_hash=None,
                publish_block=None,
                claimed_units=0,
                confirmed_at=None,
            )
            log.info(
                "period %s: settlement %s was revoked; preparing attempt %d",
                period_id,
                existing.settlement_key,
                attempt,
            )
        for name, value in fields.items():
            setattr(settlement, name, value)
    session.add(settlement)
    session.flush()
    return settlement


def _ensure_revocation_recorded(
    session: Session, chain: UsefirstChain, settlement: Settlement
) -> None:
    """Apply a revocation the ledger knows only as the settlement's state (settlements revoked
    before migration 0009); a no-op once it is recorded."""
    recorded = queries.revocation_by_key(
        session, settlement.chain_id, settlement.contract_address, settlement.settlement_key
    )
    if recorded is not None:
        return
    same_contract = (
        settlement.chain_id == chain.chain_id
        and settlement.contract_address == chain.settlement.address
    )
    _apply_revocation(
        session, settlement, _revocation_event(chain, settlement) if same_contract else None
    )


def _revocation_event(chain: UsefirstChain, settlement: Settlement) -> RevocationEvent | None:
    return revocations.find_revocation_event(
        chain, settlement.settlement_key, settlement.publish_block
    )


def _apply_revocation(
    session: Session, settlement: Settlement, event: RevocationEvent | None
) -> None:
    """The revocation of this settlement's attempt, applied once (see ``revocations``)."""
    revocations.apply_revocation(
        session,
        chain_id=settlement.chain_id,
        contract_address=settlement.contract_address,
        settlement_key=settlement.settlement_key,
        event=event,
    )


# --- 2. publish --------------------------------------------------------------------------


@contextmanager
def _publisher_lock(settings: Settings, chain: UsefirstChain) -> Iterator[None]:
    """One publisher per (chain, settler) across processes, on a dedicated connection.

    A session-level advisory lock survives the short transactions of the publish step and is
    released by the server if the process dies.
    """
    key = f"publish:{chain.chain_id}:{chain.keys.settler.address}"
    with get_engine(settings).connect() as conn:
        conn.execute(text("SELECT pg_advisory_lock(hashtextextended(:k, 0))"), {"k": key})
        conn.commit()
        try:
            yield
        finally:
            conn.execute(text("SELECT pg_advisory_unlock(hashtextextended(:k, 0))"), {"k": key})
            conn.commit()


def _set(
    settings: Settings, settlement_id: uuid.UUID, states: tuple[str, ...], **values: object
) -> None:
    with session_scope(settings) as session:
        session.execute(
            update(Settlement)
            .where(col(Settlement.id) == settlement_id, col(Settlement.state).in_(states))
            .values(**values)
        )


def _load(settings: Settings, period_id: uuid.UUID) -> Settlement:
    with session_scope(settings) as session:
        return queries.require_settlement(session, period_id)


def _recorded_tx_outcome(chain: UsefirstChain, tx_hash: str) -> str:
    """What became of a publish transaction we recorded: ``mined``, ``reverted`` or
    ``dropped`` (unknown to the node); waits while it is pending."""
    try:
        chain.w3.eth.get_transaction(tx_hash)  # type: ignore[arg-type]
    except TransactionNotFound:
        return "dropped"
    try:
        chain.transactor.wait(tx_hash, confirmations=1)
    except ContractRevert:
        return "reverted"
    return "mined"


def publish_settlement(
    period_id: uuid.UUID,
    *,
    chain: UsefirstChain | None = None,
    settings: Settings | None = None,
    progress: Progress | None = None,
) -> Settlement:
    """Publish the period's prepared settlement exactly once; returns it ``sent`` (or later).

    Raises NotFound (``settlement_not_prepared``), StateError when the settler cannot fund it
    off the local chain (``settler_underfunded``) or the settlement was revoked,
    SettlementConflict when the id is on chain with other contents, and the chain errors of
    :class:`contracts.transactions.Transactor`.
    """
    settings = settings or get_settings()
    chain = chain or UsefirstChain.connect(settings)
    report = progress or (lambda step, message: None)
    with _publisher_lock(settings, chain):
        settlement = _load(settings, period_id)
        if settlement.state in ("sent", "confirmed") and settlement.publish_block is not None:
            return settlement
        if settlement.state == "revoked":
            raise StateError(
                f"settlement {settlement.settlement_key} was revoked on chain; anchor the period "
                "again to publish it under a new settlement id",
                field="period_id",
                code="settlement_revoked",
            )
        key = _hex_bytes(settlement.settlement_key)
        root = _hex_bytes(settlement.merkle_root)
        statement_hash = _hex_bytes(settlement.statement_hash)
        total_units = int(settlement.total_units)
        token = settlement.token_address

        def record(tx_hash: str | None, block: int | None) -> Settlement:
            values: dict[str, object] = {"state": "sent", "publish_block": block}
            if tx_hash is not None:
                values["publish_tx_hash"] = tx_hash
            _set(settings, settlement.id, ("prepared", "sent"), **values)
            return _load(settings, period_id)

        found = chain.find_publish(key)
        if found is None and settlement.publish_tx_hash is not None:
            outcome = _recorded_tx_outcome(chain, settlement.publish_tx_hash)
            report("publish", f"recorded transaction {settlement.publish_tx_hash} {outcome}")
            if outcome == "mined":
                found = chain.find_publish(key)
            if found is None:
                # Reverted or dropped: nothing is published, so sending anew is safe (the
                # contract accepts an id once, whatever we send).
                log.warning(
                    "publish %s of settlement %s was %s; publishing again",
                    settlement.publish_tx_hash,
                    settlement.settlement_key,
                    outcome,
                )
                _set(settings, settlement.id, ("sent",), state="prepared", publish_tx_hash=None)
        if found is not None:
            chain.check_publication(found.record, root, total_units, token, statement_hash)
            report("publish", f"already on chain (tx {found.tx_hash}, block {found.block_number})")
            return record(found.tx_hash or settlement.publish_tx_hash, found.block_number)

        _fund_settler(chain, token, total_units, report)

        def on_approve_sent(tx_hash: str) -> None:
            _set(settings, settlement.id, ("prepared", "sent"), approve_tx_hash=tx_hash)

        def on_sent(tx_hash: str) -> None:
            _set(
                settings, settlement.id, ("prepared", "sent"), state="sent", publish_tx_hash=tx_hash
            )
            report("publish", f"sent {tx_hash}")
            fault_point("after_publish_sent", settings)

        published = chain.publish_settlement(
            key,
            root,
            total_units,
            statement_hash,
            token=token,
            on_sent=on_sent,
            on_approve_sent=on_approve_sent,
        )
        report("publish", f"mined in block {published.block_number}")
        return record(published.tx_hash, published.block_number)


def _fund_settler(chain: UsefirstChain, token: str, total_units: int, report: Progress) -> None:
    """Make sure the settler holds ``total_units``: mint the shortfall on the local chain."""
    settler = chain.keys.settler.address
    balance = chain.token_balance(settler, token)
    if balance >= total_units:
        return
    if chain.is_local and token.lower() == chain.token_address.lower():
        chain.mint_test_tokens(settler, total_units - balance)
        report("publish", f"minted {total_units - balance} test token units to the settler")
        return
    raise StateError(
        f"the settler {settler} holds {balance} base units of token {token} but the settlement "
        f"needs {total_units}; fund the settler and run the anchoring again",
        code="settler_underfunded",
    )


# --- 3. confirm --------------------------------------------------------------------------


def confirm_settlement(
    period_id: uuid.UUID,
    *,
    chain: UsefirstChain | None = None,
    settings: Settings | None = None,
) -> Settlement:
    """Mark a published settlement ``confirmed``, its period ``anchored``, and post the funding.

    Waits until the publish transaction has ``settings.chain_confirmations`` blocks; a settlement
    confirmed before is returned after checking that the guardian has not revoked it since.
    Raises StateError when the settlement is not published yet (``settlement_not_published``)
    or the guardian revoked it (``settlement_revoked``: the revocation is applied first, see
    :func:`_apply_observed_revocation`), SettlementConflict when the chain holds other contents.
    """
    settings = settings or get_settings()
    chain = chain or UsefirstChain.connect(settings)
    settlement = _load(settings, period_id)
    if settlement.state == "confirmed":
        confirmed = chain.get_settlement(_hex_bytes(settlement.settlement_key))
        if confirmed is not None and confirmed.status == SettlementStatus.REVOKED:
            _apply_observed_revocation(settings, chain, settlement)
        return settlement
    if settlement.state != "sent":
        raise _not_sent(settlement.settlement_key, settlement.state)
    block = settlement.publish_block
    if settlement.publish_tx_hash is not None:
        receipt = chain.transactor.wait(
            settlement.publish_tx_hash, confirmations=settings.chain_confirmations
        )
        block = receipt.block_number
    key = _hex_bytes(settlement.settlement_key)
    record = chain.get_settlement(key)
    if record is None:
        raise StateError(
            f"settlement {settlement.settlement_key} is not on chain although its publication "
            "was recorded (a reorganisation?); run the publish step again",
            field="period_id",
            code="settlement_not_published",
        )
    if record.status == SettlementStatus.REVOKED:
        _apply_observed_revocation(settings, chain, settlement)
    chain.check_publication(
        record,
        _hex_bytes(settlement.merkle_root),
        int(settlement.total_units),
        settlement.token_address,
        _hex_bytes(settlement.statement_hash),
    )
    with session_scope(settings) as session:
        return record_confirmation(
            session, period_id, settlement_key=settlement.settlement_key, block=block
        )


def record_confirmation(
    session: Session, period_id: uuid.UUID, *, settlement_key: str, block: int | None
) -> Settlement:
    """Confirmation's ledger side, once the chain showed the publication of ``settlement_key``
    (the period's current attempt) confirmed and not revoked: settlement ``confirmed``, period
    ``closed → anchored``, the funding posted. Returns a settlement confirmed before as it is.
    Raises StateError (``settlement_revoked``, ``settlement_not_published``) when the settlement
    changed since the chain was read. Flushes; the caller commits.
    """
    locked = queries.require_settlement(session, period_id, lock=True)
    if locked.settlement_key != settlement_key:
        # Revoked and prepared again since the chain was read (the indexer applied it).
        raise _not_sent(settlement_key, "revoked")
    if locked.state == "confirmed":
        return locked
    if locked.state != "sent":
        # E.g. the indexer applied a revocation since the chain was read: never fund then.
        raise _not_sent(locked.settlement_key, locked.state)
    period = periods.lock_period_for_update(session, period_id)
    if period.state == "closed":
        periods.transition(session, period_id, "closed", "anchored")
    locked.state = "confirmed"
    locked.confirmed_at = utcnow()
    locked.publish_block = block
    session.add(locked)
    postings.post_funding(
        session,
        settlement_id=locked.id,
        settlement_key=locked.settlement_key,
        period_id=period_id,
        currency=queries.period_currency(session, period),
        lines=queries.payable_lines(session, period_id),
        attempt=locked.attempt,
    )
    session.flush()
    # Claims may have been indexed before this confirmation (claims open at publication
    # when the challenge window is 0).
    queries.mark_paid_if_complete(session, locked)
    return locked


def _not_sent(settlement_key: str, state: str) -> StateError:
    """Why a settlement in ``state`` (not ``sent``) cannot be confirmed."""
    if state == "revoked":
        return StateError(
            f"settlement {settlement_key} was revoked on chain by the guardian; its funding is "
            "reversed and the period is closed again: anchor it again to publish the statement "
            "under a new settlement id",
            field="period_id",
            code="settlement_revoked",
        )
    return StateError(
        f"settlement {settlement_key} is {state}; publish it first",
        field="period_id",
        code="settlement_not_published",
    )


def _apply_observed_revocation(
    settings: Settings, chain: UsefirstChain, settlement: Settlement
) -> NoReturn:
    """Anchoring read the settlement revoked on chain: apply it as the indexer would (funding
    reversed if posted, settlement revoked, period closed) in its own transaction, then raise
    StateError ``settlement_revoked``."""
    event = _revocation_event(chain, settlement)
    with session_scope(settings) as session:
        _apply_revocation(session, settlement, event)
    raise _not_sent(settlement.settlement_key, "revoked")


# --- all three ----------------------------------------------------------------------------


def anchor_period(
    period_id: uuid.UUID,
    *,
    chain: UsefirstChain | None = None,
    settings: Settings | None = None,
    progress: Progress | None = None,
    reanchor: bool = False,
) -> AnchorOutcome:
    """Prepare, publish and confirm the period's settlement; safe to run again at any point.
    ``reanchor``: publish the next attempt of a settlement the guardian revoked (see
    :func:`prepare_settlement`)."""
    settings = settings or get_settings()
    chain = chain or UsefirstChain.connect(settings)
    report = progress or (lambda step, message: None)
    with session_scope(settings) as session:
        settlement = prepare_settlement(session, period_id, chain=chain, reanchor=reanchor)
    if settlement is None:
        report("prepare", NO_PAYABLE_NOTE)
        return _outcome(settings, period_id, note=NO_PAYABLE_NOTE)
    report(
        "prepare",
        f"settlement {settlement.settlement_key}: {settlement.line_count} lines, "
        f"{settlement.total_units} token units, root {settlement.merkle_root}",
    )
    if settlement.state in ("prepared", "sent"):
        settlement = publish_settlement(period_id, chain=chain, settings=settings, progress=report)
        report("publish", f"published in tx {settlement.publish_tx_hash}")
    # Also for a settlement confirmed earlier: it reports a revocation since then.
    settlement = confirm_settlement(period_id, chain=chain, settings=settings)
    report("confirm", f"confirmed; period anchored (block {settlement.publish_block})")
    return _outcome(settings, period_id, note=None)


def _outcome(settings: Settings, period_id: uuid.UUID, *, note: str | None) -> AnchorOutcome:
    with session_scope(settings) as session:
        period = session.get(Period, period_id, populate_existing=True)
        assert period is not None
        settlement = queries.settlement_for_period(session, period_id)
    return AnchorOutcome(
        period_id=period_id,
        period_state=period.state,
        settlement_id=settlement.id if settlement else None,
        settlement_key=settlement.settlement_key if settlement else None,
        settlement_state=settlement.state if settlement else None,
        merkle_root=settlement.merkle_root if settlement else None,
        total_units=int(settlement.total_units) if settlement else 0,
        line_count=settlement.line_count if settlement else 0,
        publish_tx_hash=settlement.publish_tx_hash if settlement else None,
        publish_block=settlement.publish_block if settlement else None,
        note=note,
    )
