"""Claim indexing (payouts, paid periods) and reconciliation of ledger against chain."""

from __future__ import annotations

import uuid

import pytest
from eth_account import Account
from sqlalchemy import Engine, text
from sqlmodel import Session, select

from contracts.client import UsefirstChain
from contracts.merkle import StandardMerkleTree
from ledger.journal import queries as journal_queries
from ledger.periods.models import Period
from ledger.settings import Settings
from ledger.settlements import postings
from ledger.settlements.models import ReconciliationFinding, ReconciliationRun, Settlement
from ledger.settlements.service import (
    anchor_period,
    index_claims,
    prepare_settlement,
    reconcile,
)
from tests.ledger.factories_settlement import closed_period, deploy_chain


@pytest.fixture(scope="module")
def chain(
    chain_settings: Settings, database: Settings, tmp_path_factory: pytest.TempPathFactory
) -> UsefirstChain:
    return deploy_chain(chain_settings, tmp_path_factory.mktemp("reconcile"))


def anchored(engine: Engine, chain: UsefirstChain, payees: int = 3) -> Settlement:
    """A confirmed settlement of a fresh period with ``payees`` random payees."""
    weights = {Account.create().address: weight for weight in range(1, payees + 1)}
    closed = closed_period(engine, weights)
    anchor_period(closed.period_id, chain=chain, settings=chain.settings)
    with Session(engine, expire_on_commit=False) as session:
        return session.exec(
            select(Settlement).where(Settlement.period_id == closed.period_id)
        ).one()


def claim(chain: UsefirstChain, settlement: Settlement, accounts: list[str] | None = None) -> None:
    """Claim lines on chain, relayed by the settler key (the tokens go to each account)."""
    tree = StandardMerkleTree.load(settlement.tree_dump)
    key = bytes.fromhex(settlement.settlement_key[2:])
    for account, amount in tree.values:
        if accounts is None or account in accounts:
            chain.claim(key, account, amount, tree.get_proof(tree.index_of(account)))


def findings(chain: UsefirstChain, settlement: Settlement) -> set[str]:
    report = reconcile(chain=chain, settings=chain.settings, settlement_ids=[settlement.id])
    assert report.settlements_checked == 1
    return {finding.kind for finding in report.findings}


def tamper(engine: Engine, sql: str, **params: object) -> None:
    """Change a ledger row behind the services' back (what reconciliation must notice)."""
    with Session(engine) as session:
        session.execute(text(sql), params)
        session.commit()


def period_state(engine: Engine, period_id: uuid.UUID) -> str:
    with Session(engine) as session:
        period = session.get(Period, period_id)
        assert period is not None
        return period.state


def test_index_records_claims_posts_payouts_and_marks_the_period_paid(
    db_engine: Engine, chain: UsefirstChain
) -> None:
    settlement = anchored(db_engine, chain)
    tree = StandardMerkleTree.load(settlement.tree_dump)
    accounts = [account for account, _ in tree.values]
    scale = int(settlement.units_per_minor)

    claim(chain, settlement, accounts[:2])
    first = index_claims(chain=chain, settings=chain.settings)
    assert first.claims_recorded == 2 and first.unmatched_claims == 0
    assert period_state(db_engine, settlement.period_id) == "anchored"
    assert findings(chain, settlement) == set()

    claim(chain, settlement, accounts[2:])
    second = index_claims(chain=chain, settings=chain.settings)
    assert second.claims_recorded == 1
    assert second.periods_paid == [settlement.period_id]
    assert period_state(db_engine, settlement.period_id) == "paid"

    with Session(db_engine) as session:
        escrow = postings.escrow_account(settlement.settlement_key)
        assert journal_queries.balance(session, escrow, "EUR") == 0
        for account, amount_units in tree.values:
            paid = journal_queries.balance(session, postings.paid_account(account), "EUR")
            assert paid == -(amount_units // scale)
            assert journal_queries.balance(session, postings.payable_account(account), "EUR") == 0
        claimed = session.get(Settlement, settlement.id)
        assert claimed is not None and int(claimed.claimed_units) == int(settlement.total_units)
    assert findings(chain, settlement) == set()

    # Indexing again finds nothing new and posts nothing.
    again = index_claims(chain=chain, settings=chain.settings)
    assert again.claims_recorded == 0 and again.events_seen == 0


def test_reindexing_from_an_earlier_block_changes_nothing(
    db_engine: Engine, chain: UsefirstChain
) -> None:
    settlement = anchored(db_engine, chain, payees=2)
    claim(chain, settlement)
    index_claims(chain=chain, settings=chain.settings)
    tamper(
        db_engine,
        "UPDATE chain_cursor SET last_block = :b WHERE chain_id = :c AND contract_address = :a",
        b=chain.settlement_from_block,
        c=chain.chain_id,
        a=chain.settlement.address,
    )
    replay = index_claims(chain=chain, settings=chain.settings)
    assert replay.events_seen >= 2 and replay.claims_recorded == 0
    assert findings(chain, settlement) == set()


def test_reconcile_reports_a_claim_the_ledger_has_not_indexed(
    db_engine: Engine, chain: UsefirstChain
) -> None:
    index_claims(chain=chain, settings=chain.settings)  # earlier tests' claims
    settlement = anchored(db_engine, chain)
    claim(chain, settlement)

    report = reconcile(chain=chain, settings=chain.settings, settlement_ids=[settlement.id])

    kinds = [finding.kind for finding in report.findings]
    assert kinds.count("claim_not_indexed") == 3
    assert "escrow_balance_mismatch" in kinds
    assert "period_state_mismatch" in kinds
    with Session(db_engine) as session:
        run = session.get(ReconciliationRun, report.run_id)
        assert run is not None and run.findings_count == len(report.findings)
        assert run.finished_at is not None
        stored = session.exec(
            select(ReconciliationFinding).where(ReconciliationFinding.run_id == report.run_id)
        ).all()
        assert sorted(f.kind for f in stored) == sorted(kinds)

    index_claims(chain=chain, settings=chain.settings)
    assert findings(chain, settlement) == set()


def test_reconcile_detects_a_tampered_claim_amount(db_engine: Engine, chain: UsefirstChain) -> None:
    settlement = anchored(db_engine, chain)
    claim(chain, settlement)
    index_claims(chain=chain, settings=chain.settings)
    tamper(
        db_engine,
        "UPDATE settlement_claim SET amount_units = amount_units + 1 WHERE id = "
        "(SELECT min(id) FROM settlement_claim WHERE settlement_id = :s)",
        s=settlement.id,
    )

    assert findings(chain, settlement) == {"claim_amount_mismatch", "claimed_units_mismatch"}


def test_reconcile_detects_a_tampered_statement_line(
    db_engine: Engine, chain: UsefirstChain
) -> None:
    settlement = anchored(db_engine, chain)
    tamper(
        db_engine,
        "UPDATE statement_line SET payable_minor = payable_minor + 1 WHERE period_id = :p "
        "AND address = (SELECT min(address) FROM statement_line WHERE period_id = :p)",
        p=settlement.period_id,
    )

    assert findings(chain, settlement) == {"ledger_root_mismatch", "ledger_total_mismatch"}


def test_reconcile_reports_a_settlement_missing_on_chain_and_one_never_recorded(
    db_engine: Engine, chain: UsefirstChain
) -> None:
    closed = closed_period(db_engine, {Account.create().address: 1})
    with Session(db_engine, expire_on_commit=False) as session:
        settlement = prepare_settlement(session, closed.period_id, chain=chain)
        assert settlement is not None
        settlement.state = "sent"  # as if published, but nothing was sent
        session.add(settlement)
        session.commit()
    assert findings(chain, settlement) == {"missing_on_chain"}

    # Published on chain while the ledger still says prepared (a lost record).
    tamper(db_engine, "UPDATE settlement SET state = 'prepared' WHERE id = :s", s=settlement.id)
    tree = StandardMerkleTree.load(settlement.tree_dump)
    chain.mint_test_tokens(chain.keys.settler.address, int(settlement.total_units))
    chain.publish_settlement(
        bytes.fromhex(settlement.settlement_key[2:]),
        tree.root,
        int(settlement.total_units),
        bytes.fromhex(settlement.statement_hash[2:]),
    )
    assert findings(chain, settlement) == {"published_not_recorded"}

    # Anchoring again records it instead of publishing a second time.
    outcome = anchor_period(closed.period_id, chain=chain, settings=chain.settings)
    assert outcome.settlement_state == "confirmed"
    assert findings(chain, settlement) == set()
