"""A guardian's revocation, followed by the ledger (issue #9), on a real anvil and Postgres.

Close → anchor (challenge window > 0) → the guardian revokes on chain → the indexer (or
anchoring, when it reads the revoked record itself) reverses the funding once, marks the
settlement revoked and closes the period again → reconcile is clean → anchoring again publishes
the same statement under the next attempt's settlement id, and its claims are paid and indexed.

A state machine drives the ledger side of the life cycle (prepare → sent → confirm → revoke →
prepare the next attempt …, revocations seen again, stale confirmations) against the real
database: the journal and the period always say what the current attempt's state implies.
"""

from __future__ import annotations

import os
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from types import SimpleNamespace
from typing import cast

import pytest
from eth_account import Account
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)
from sqlalchemy import Engine, text
from sqlmodel import Session, select
from web3 import Web3

from contracts.client import RevocationEvent, SettlementStatus, UsefirstChain, settlement_id_for
from contracts.merkle import StandardMerkleTree
from ledger.db import session_scope
from ledger.errors import StateError
from ledger.journal import queries as journal_queries
from ledger.journal.models import JournalTransaction
from ledger.periods.models import Period
from ledger.settings import Settings
from ledger.settlements import postings
from ledger.settlements.anchoring import record_confirmation
from ledger.settlements.ids import ATTEMPTS_MAX, settlement_key_for
from ledger.settlements.models import Settlement, SettlementRevocation
from ledger.settlements.service import (
    anchor_period,
    apply_revocation,
    confirm_settlement,
    index_claims,
    prepare_settlement,
    publish_settlement,
    reconcile,
)
from tests.ledger.factories_settlement import ClosedPeriod, closed_period, deploy_chain

WINDOW_S = 3_600


@pytest.fixture(scope="module")
def chain(
    chain_settings: Settings, database: Settings, tmp_path_factory: pytest.TempPathFactory
) -> UsefirstChain:
    """Contracts whose settlements the guardian may revoke for an hour after publication."""
    return deploy_chain(
        chain_settings, tmp_path_factory.mktemp("revocation"), challenge_window_s=WINDOW_S
    )


def three_payees(engine: Engine) -> ClosedPeriod:
    a, b, c = (Account.create().address for _ in range(3))
    return closed_period(engine, {a: 1, b: 2, c: 7})


def settlement_of(engine: Engine, period_id: uuid.UUID) -> Settlement:
    with Session(engine) as session:
        return session.exec(select(Settlement).where(Settlement.period_id == period_id)).one()


def period_of(engine: Engine, period_id: uuid.UUID) -> Period:
    with Session(engine) as session:
        period = session.get(Period, period_id)
        assert period is not None
        return period


def key_bytes(settlement: Settlement) -> bytes:
    return bytes.fromhex(settlement.settlement_key.removeprefix("0x"))


def balances(engine: Engine, codes: list[str], currency: str = "EUR") -> dict[str, int]:
    with Session(engine) as session:
        return {code: journal_queries.balance(session, code, currency) for code in codes}


def payables(closed: ClosedPeriod) -> list[str]:
    return [postings.payable_account(address) for address in closed.payable]


def revocations(engine: Engine, settlement_id: uuid.UUID) -> list[SettlementRevocation]:
    with Session(engine) as session:
        return list(
            session.exec(
                select(SettlementRevocation)
                .where(SettlementRevocation.settlement_id == settlement_id)
                .order_by(SettlementRevocation.attempt)  # type: ignore[arg-type]
            ).all()
        )


def transactions_by_key(engine: Engine, key: str) -> list[JournalTransaction]:
    with Session(engine) as session:
        return list(
            session.exec(
                select(JournalTransaction).where(JournalTransaction.idempotency_key == key)
            ).all()
        )


def findings(chain: UsefirstChain, settlement: Settlement) -> list[str]:
    report = reconcile(chain=chain, settings=chain.settings, settlement_ids=[settlement.id])
    assert report.settlements_checked == 1
    return sorted(finding.kind for finding in report.findings)


def replay_cursor(engine: Engine, chain: UsefirstChain, block: int | None) -> None:
    """Move both indexer cursors back to ``block`` (claims) — and revocations too, or mark
    them never indexed with ``None`` (a cursor written before migration 0009)."""
    with Session(engine) as session:
        session.execute(
            text(
                "INSERT INTO chain_cursor (chain_id, contract_address, last_block, "
                "revocations_last_block) VALUES (:c, :a, :b, :r) "
                "ON CONFLICT (chain_id, contract_address) DO UPDATE "
                "SET last_block = :b, revocations_last_block = :r"
            ),
            {
                "c": chain.chain_id,
                "a": chain.settlement.address,
                "b": chain.settlement_from_block if block is None else block,
                "r": block,
            },
        )
        session.commit()


def advance_time(w3: Web3, seconds: int) -> None:
    w3.provider.make_request("evm_increaseTime", [seconds])  # type: ignore[arg-type]
    w3.provider.make_request("evm_mine", [])  # type: ignore[arg-type]


def claim_all(chain: UsefirstChain, settlement: Settlement) -> None:
    """Every line claimed on chain, relayed by the settler key (tokens go to each account)."""
    tree = StandardMerkleTree.load(settlement.tree_dump)
    for account, amount in tree.values:
        chain.claim(key_bytes(settlement), account, amount, tree.get_proof(tree.index_of(account)))


def test_attempt_zero_keeps_the_settlement_id_and_later_attempts_get_new_ones() -> None:
    model, period = uuid.uuid4(), uuid.uuid4()
    assert settlement_key_for(model, period) == settlement_id_for(model, period)
    assert settlement_key_for(str(model).upper(), str(period), 1) == settlement_key_for(
        model, period, 1
    )
    keys = {settlement_key_for(model, period, attempt) for attempt in range(5)}
    assert len(keys) == 5
    with pytest.raises(ValueError):
        settlement_key_for(model, period, -1)


def test_a_revocation_after_anchoring_is_reversed_once_and_the_period_anchored_again(
    db_engine: Engine, chain: UsefirstChain
) -> None:
    closed = three_payees(db_engine)
    total_minor = sum(closed.payable.values())
    before_anchor = balances(db_engine, payables(closed))
    assert before_anchor == {postings.payable_account(a): -m for a, m in closed.payable.items()}

    anchored = anchor_period(closed.period_id, chain=chain, settings=chain.settings)
    assert anchored.period_state == "anchored"
    first = settlement_of(db_engine, closed.period_id)
    assert first.attempt == 0 and first.state == "confirmed"
    escrow_first = postings.escrow_account(first.settlement_key)
    assert balances(db_engine, [*payables(closed), escrow_first]) == {
        **{code: 0 for code in payables(closed)},
        escrow_first: -total_minor,
    }
    settler_before = chain.token_balance(chain.keys.settler.address)

    revoked_tx = chain.revoke_settlement(key_bytes(first))

    assert chain.token_balance(chain.keys.settler.address) - settler_before == int(
        first.total_units
    )
    # Not indexed yet: reconcile reports it.
    assert "revoked_on_chain" in findings(chain, first)

    indexed = index_claims(chain=chain, settings=chain.settings)

    assert indexed.revocations_applied == 1
    assert indexed.periods_revoked == [closed.period_id]
    revoked = settlement_of(db_engine, closed.period_id)
    assert revoked.state == "revoked" and revoked.settlement_key == first.settlement_key
    period = period_of(db_engine, closed.period_id)
    assert period.state == "closed" and period.anchored_at is None
    # The journal has the reversal: the funding's entries with opposite signs, a new
    # transaction, and the balances of every account are back to where they were.
    [funding] = transactions_by_key(db_engine, postings.funding_key(first.id))
    [reversal] = transactions_by_key(db_engine, postings.funding_reversal_key(first.id))
    assert reversal.kind == "settlement_funding_reversal" and reversal.id != funding.id
    with Session(db_engine) as session:
        funded = journal_queries.transaction_entries(session, funding.id)
        reversed_entries = journal_queries.transaction_entries(session, reversal.id)
        assert journal_queries.trial_balance(session).is_balanced
    assert Counter(reversed_entries) == Counter(
        (code, kind, -amount, currency) for code, kind, amount, currency in funded
    )
    assert balances(db_engine, [*payables(closed), escrow_first]) == {
        **before_anchor,
        escrow_first: 0,
    }
    [recorded] = revocations(db_engine, first.id)
    assert recorded.attempt == 0 and recorded.settlement_key == first.settlement_key
    assert recorded.tx_hash == revoked_tx.tx_hash and recorded.state_before == "confirmed"
    assert int(recorded.refunded_units or 0) == int(first.total_units)
    assert (recorded.funding_transaction_id, recorded.reversal_transaction_id) == (
        funding.id,
        reversal.id,
    )
    assert findings(chain, first) == []

    # Indexing again, and re-reading the same blocks from the start, posts nothing more.
    assert index_claims(chain=chain, settings=chain.settings).revocations_applied == 0
    replay_cursor(db_engine, chain, chain.settlement_from_block)
    replayed = index_claims(chain=chain, settings=chain.settings)
    assert replayed.events_seen >= 1
    assert (replayed.revocations_applied, replayed.claims_recorded) == (0, 0)
    assert len(revocations(db_engine, first.id)) == 1
    assert len(transactions_by_key(db_engine, postings.funding_reversal_key(first.id))) == 1
    assert balances(db_engine, payables(closed)) == before_anchor

    # An anchor job started before the revoke, retried now, must not publish again by
    # itself: re-anchoring is finance's explicit decision.
    with pytest.raises(StateError) as retried:
        anchor_period(closed.period_id, chain=chain, settings=chain.settings)
    assert (retried.value.code, retried.value.field) == ("settlement_revoked", "reanchor")
    assert settlement_of(db_engine, closed.period_id).state == "revoked"
    assert balances(db_engine, payables(closed)) == before_anchor

    # Finance anchors again: the same statement under attempt 1's id.
    again = anchor_period(closed.period_id, chain=chain, settings=chain.settings, reanchor=True)

    assert again.period_state == "anchored" and again.settlement_id == first.id
    second = settlement_of(db_engine, closed.period_id)
    assert second.attempt == 1 and second.state == "confirmed"
    assert second.settlement_key == (
        "0x" + settlement_key_for(closed.model_id, closed.period_id, 1).hex()
    )
    assert second.merkle_root == first.merkle_root
    record = chain.get_settlement(key_bytes(second))
    assert record is not None and record.status == SettlementStatus.PUBLISHED
    escrow_second = postings.escrow_account(second.settlement_key)
    assert balances(db_engine, [*payables(closed), escrow_first, escrow_second]) == {
        **{code: 0 for code in payables(closed)},
        escrow_first: 0,
        escrow_second: -total_minor,
    }
    assert transactions_by_key(db_engine, postings.funding_key(first.id, 1))
    assert findings(chain, second) == []

    # Once its window has passed, every line of the new attempt is claimed and indexed.
    advance_time(chain.w3, WINDOW_S + 1)
    claim_all(chain, second)
    paid = index_claims(chain=chain, settings=chain.settings)

    assert paid.claims_recorded == len(closed.payable) and paid.unmatched_claims == 0
    assert paid.periods_paid == [closed.period_id]
    assert period_of(db_engine, closed.period_id).state == "paid"
    paid_codes = [postings.paid_account(address) for address in closed.payable]
    assert balances(db_engine, [*payables(closed), escrow_second, *paid_codes]) == {
        **{code: 0 for code in payables(closed)},
        escrow_second: 0,
        **{postings.paid_account(a): -m for a, m in closed.payable.items()},
    }
    for address in closed.payable:
        assert transactions_by_key(db_engine, postings.payout_key(first.id, address, 1))
    assert findings(chain, second) == []


def test_anchoring_that_reads_the_revocation_applies_it_and_the_indexer_does_not_again(
    db_engine: Engine, chain: UsefirstChain
) -> None:
    closed = three_payees(db_engine)
    before_anchor = balances(db_engine, payables(closed))
    with Session(db_engine, expire_on_commit=False) as session:
        prepare_settlement(session, closed.period_id, chain=chain)
        session.commit()
    sent = publish_settlement(closed.period_id, chain=chain, settings=chain.settings)
    revoked_tx = chain.revoke_settlement(key_bytes(sent))

    # Revoked while anchoring waited for its confirmation: nothing was funded.
    with pytest.raises(StateError) as refused:
        confirm_settlement(closed.period_id, chain=chain, settings=chain.settings)

    assert refused.value.code == "settlement_revoked"
    assert settlement_of(db_engine, closed.period_id).state == "revoked"
    assert period_of(db_engine, closed.period_id).state == "closed"
    [recorded] = revocations(db_engine, sent.id)
    assert recorded.state_before == "sent" and recorded.tx_hash == revoked_tx.tx_hash
    assert recorded.funding_transaction_id is None and recorded.reversal_transaction_id is None
    assert not transactions_by_key(db_engine, postings.funding_key(sent.id))
    assert balances(db_engine, payables(closed)) == before_anchor
    assert index_claims(chain=chain, settings=chain.settings).revocations_applied == 0
    assert len(revocations(db_engine, sent.id)) == 1
    assert findings(chain, sent) == []

    # Attempt 1 is confirmed, then revoked too: running the anchoring again notices, reverses
    # the funding and stops; the indexer finds it applied.
    anchor_period(closed.period_id, chain=chain, settings=chain.settings, reanchor=True)
    second = settlement_of(db_engine, closed.period_id)
    assert (second.attempt, second.state) == (1, "confirmed")
    chain.revoke_settlement(key_bytes(second))

    with pytest.raises(StateError) as refused_again:
        anchor_period(closed.period_id, chain=chain, settings=chain.settings)

    assert refused_again.value.code == "settlement_revoked"
    assert period_of(db_engine, closed.period_id).state == "closed"
    assert len(transactions_by_key(db_engine, postings.funding_reversal_key(sent.id, 1))) == 1
    assert index_claims(chain=chain, settings=chain.settings).revocations_applied == 0
    assert [r.attempt for r in revocations(db_engine, sent.id)] == [0, 1]
    assert balances(db_engine, payables(closed)) == before_anchor
    assert findings(chain, second) == []

    third = anchor_period(closed.period_id, chain=chain, settings=chain.settings, reanchor=True)
    assert third.period_state == "anchored"
    assert third.settlement_key == (
        "0x" + settlement_key_for(closed.model_id, closed.period_id, 2).hex()
    )
    assert findings(chain, settlement_of(db_engine, closed.period_id)) == []


def test_revocations_before_the_upgrade_are_applied_by_the_first_index_run(
    db_engine: Engine, chain: UsefirstChain
) -> None:
    index_claims(chain=chain, settings=chain.settings)
    closed = three_payees(db_engine)
    anchor_period(closed.period_id, chain=chain, settings=chain.settings)
    settlement = settlement_of(db_engine, closed.period_id)
    chain.revoke_settlement(key_bytes(settlement))
    # A cursor that indexed claims past the revocation but never read revocations.
    replay_cursor(db_engine, chain, None)
    with Session(db_engine) as session:
        session.execute(
            text("UPDATE chain_cursor SET last_block = :b WHERE contract_address = :a"),
            {"b": chain.w3.eth.block_number, "a": chain.settlement.address},
        )
        session.commit()

    indexed = index_claims(chain=chain, settings=chain.settings)

    assert indexed.from_block == chain.settlement_from_block
    assert indexed.revocations_applied == 1 and indexed.claims_recorded == 0
    assert period_of(db_engine, closed.period_id).state == "closed"
    assert findings(chain, settlement) == []


def test_a_settlement_revoked_before_revocations_were_recorded_is_anchored_again(
    db_engine: Engine, chain: UsefirstChain
) -> None:
    closed = three_payees(db_engine)
    with Session(db_engine, expire_on_commit=False) as session:
        prepare_settlement(session, closed.period_id, chain=chain)
        session.commit()
    sent = publish_settlement(closed.period_id, chain=chain, settings=chain.settings)
    revoked_tx = chain.revoke_settlement(key_bytes(sent))
    # What confirmation did before migration 0009: the state only, no revocation record.
    with Session(db_engine) as session:
        session.execute(
            text("UPDATE settlement SET state = 'revoked' WHERE id = :s"), {"s": sent.id}
        )
        session.commit()

    outcome = anchor_period(closed.period_id, chain=chain, settings=chain.settings, reanchor=True)

    assert outcome.period_state == "anchored"
    assert outcome.settlement_key == (
        "0x" + settlement_key_for(closed.model_id, closed.period_id, 1).hex()
    )
    [recorded] = revocations(db_engine, sent.id)
    assert (recorded.attempt, recorded.tx_hash) == (0, revoked_tx.tx_hash)
    assert findings(chain, settlement_of(db_engine, closed.period_id)) == []


def test_two_appliers_racing_for_one_revocation_reverse_the_funding_once(
    db_engine: Engine, chain: UsefirstChain
) -> None:
    index_claims(chain=chain, settings=chain.settings)
    closed = three_payees(db_engine)
    anchor_period(closed.period_id, chain=chain, settings=chain.settings)
    settlement = settlement_of(db_engine, closed.period_id)
    revoked_tx = chain.revoke_settlement(key_bytes(settlement))

    def apply(_: int) -> bool:
        with session_scope(chain.settings) as session:
            outcome = apply_revocation(
                session,
                chain_id=chain.chain_id,
                contract_address=chain.settlement.address,
                settlement_key=settlement.settlement_key,
            )
        assert outcome is not None
        return outcome.applied

    with ThreadPoolExecutor(max_workers=2) as pool:
        applied = sorted(pool.map(apply, range(2)))

    assert applied == [False, True]
    assert len(transactions_by_key(db_engine, postings.funding_reversal_key(settlement.id))) == 1
    # The indexer reads the event later: nothing is applied again, its transaction is recorded.
    assert index_claims(chain=chain, settings=chain.settings).revocations_applied == 0
    [recorded] = revocations(db_engine, settlement.id)
    assert recorded.tx_hash == revoked_tx.tx_hash
    assert findings(chain, settlement) == []


class _NoChain:
    """What ``prepare_settlement`` asks of the chain (token decimals, addresses), for a contract
    no other test reconciles; the state machine stands in for publication and the guardian."""

    def __init__(self) -> None:
        self.chain_id = 31337
        self.settlement = SimpleNamespace(address=Web3.to_checksum_address(os.urandom(20)))
        self.token_address = Web3.to_checksum_address(os.urandom(20))
        self.settings = SimpleNamespace(chain_units_per_minor=None)

    def token_decimals(self, token: str | None = None) -> int:
        return 6


class SettlementLifeCycle(RuleBasedStateMachine):
    """One closed period's settlement through publications, revocations and re-anchors."""

    engine: Engine

    def __init__(self) -> None:
        super().__init__()
        self.closed = three_payees(self.engine)
        self.chain = _NoChain()
        self.state: str | None = None  # of the current attempt
        self.key: str | None = None  # the current attempt's settlement id
        self.settlement_id: uuid.UUID | None = None
        self.revoked: dict[str, bool] = {}  # revoked settlement id → had been funded
        self.total_minor = sum(self.closed.payable.values())

    def _session(self) -> Session:
        return Session(self.engine, expire_on_commit=False)

    def _apply(self, key: str, *, with_event: bool) -> bool:
        event = RevocationEvent(
            settlement_id=bytes.fromhex(key[2:]),
            token=self.chain.token_address,
            settler=self.chain.token_address,
            refunded_units=1,
            tx_hash="0x" + os.urandom(32).hex(),
            block_number=1,
            log_index=0,
        )
        with self._session() as session:
            outcome = apply_revocation(
                session,
                chain_id=self.chain.chain_id,
                contract_address=self.chain.settlement.address,
                settlement_key=key,
                event=event if with_event else None,
            )
            session.commit()
        assert outcome is not None
        return outcome.applied

    @precondition(lambda self: self.state in (None, "revoked") and len(self.revoked) < 8)
    @rule()
    def prepare(self) -> None:
        with self._session() as session:
            prepared = prepare_settlement(
                session,
                self.closed.period_id,
                chain=cast(UsefirstChain, self.chain),
                reanchor=self.state == "revoked",
            )
            session.commit()
        assert prepared is not None and prepared.state == "prepared"
        assert prepared.attempt == len(self.revoked) < ATTEMPTS_MAX
        assert prepared.settlement_key not in self.revoked
        self.state, self.key, self.settlement_id = "prepared", prepared.settlement_key, prepared.id

    @precondition(lambda self: self.state == "prepared")
    @rule()
    def publish(self) -> None:
        # What publish_settlement records once the node accepted the publication.
        with self._session() as session:
            session.execute(
                text("UPDATE settlement SET state = 'sent', publish_block = 1 WHERE id = :s"),
                {"s": self.settlement_id},
            )
            session.commit()
        self.state = "sent"

    @precondition(lambda self: self.state == "sent")
    @rule()
    def confirm(self) -> None:
        assert self.key is not None
        with self._session() as session:
            record_confirmation(session, self.closed.period_id, settlement_key=self.key, block=1)
            session.commit()
        self.state = "confirmed"

    @precondition(lambda self: self.state in ("sent", "confirmed"))
    @rule(with_event=st.booleans())
    def guardian_revokes(self, with_event: bool) -> None:
        assert self.key is not None
        assert self._apply(self.key, with_event=with_event)
        self.revoked[self.key] = self.state == "confirmed"
        self.state = "revoked"

    @precondition(lambda self: bool(self.revoked))
    @rule(data=st.data(), with_event=st.booleans())
    def revocation_seen_again(self, data: st.DataObject, with_event: bool) -> None:
        key = data.draw(st.sampled_from(sorted(self.revoked)))
        assert not self._apply(key, with_event=with_event)

    @precondition(lambda self: bool(self.revoked))
    @rule(data=st.data())
    def stale_confirmation_is_refused(self, data: st.DataObject) -> None:
        key = data.draw(st.sampled_from(sorted(self.revoked)))
        with self._session() as session, pytest.raises(StateError) as refused:
            record_confirmation(session, self.closed.period_id, settlement_key=key, block=1)
        assert refused.value.code == "settlement_revoked"

    @invariant()
    def journal_and_period_follow_the_current_attempt(self) -> None:
        funded = self.state == "confirmed"
        codes = payables(self.closed)
        escrows = [postings.escrow_account(key) for key in [*self.revoked, self.key] if key]
        got = balances(self.engine, [*codes, *escrows])
        assert {code: got[code] for code in codes} == {
            postings.payable_account(a): 0 if funded else -m for a, m in self.closed.payable.items()
        }
        for key in self.revoked:
            assert got[postings.escrow_account(key)] == 0
        if self.key is not None and self.key not in self.revoked:
            expected = -self.total_minor if funded else 0
            assert got[postings.escrow_account(self.key)] == expected
        period = period_of(self.engine, self.closed.period_id)
        assert period.state == ("anchored" if funded else "closed")

    @invariant()
    def each_revocation_is_recorded_and_reversed_once(self) -> None:
        if self.settlement_id is None:
            return
        recorded = revocations(self.engine, self.settlement_id)
        assert {r.settlement_key: r.reversal_transaction_id is not None for r in recorded} == (
            self.revoked
        )
        with self._session() as session:
            kinds = Counter(
                session.execute(
                    text(
                        "SELECT kind FROM journal_transaction WHERE reference->>'settlement_id' "
                        "= :s"
                    ),
                    {"s": str(self.settlement_id)},
                ).scalars()
            )
        fundings = sum(self.revoked.values()) + (self.state == "confirmed")
        assert (
            kinds
            == Counter(
                {
                    "settlement_funding": fundings,
                    "settlement_funding_reversal": sum(self.revoked.values()),
                }
            )
            - Counter()
        )


def test_settlement_life_cycle_state_machine(db_engine: Engine) -> None:
    machine = type("BoundSettlementLifeCycle", (SettlementLifeCycle,), {"engine": db_engine})
    run_state_machine_as_test(
        machine,
        settings=settings(
            max_examples=15,
            stateful_step_count=12,
            deadline=None,
            # Rules are chosen by their preconditions (prepare only when nothing is pending,
            # confirm only after a send, …): most draws are filtered out by design.
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
        ),
    )
