"""Anchoring a closed period: exact token units, one publication, funding in the journal."""

from __future__ import annotations

import os
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
from eth_account import Account
from sqlalchemy import Engine
from sqlmodel import Session

from contracts.client import UsefirstChain, settlement_id_for
from contracts.errors import SettlementConflict
from contracts.merkle import statement_tree
from ledger.errors import NotFound, StateError, ValidationFailed
from ledger.journal import queries as journal_queries
from ledger.periods.models import Period
from ledger.settings import Settings
from ledger.settlements import postings, queries
from ledger.settlements.models import Settlement
from ledger.settlements.service import (
    NO_PAYABLE_NOTE,
    anchor_period,
    confirm_settlement,
    prepare_settlement,
    publish_settlement,
)
from ledger.settlements.tree import units_per_minor
from tests.ledger import factories
from tests.ledger.factories_settlement import ClosedPeriod, closed_period, deploy_chain

# RoyaltyToken has 6 decimals, EUR 2: one cent is 10,000 base units.
EUR_UNITS_PER_MINOR = 10**4


@pytest.fixture(scope="module")
def chain(
    chain_settings: Settings, database: Settings, tmp_path_factory: pytest.TempPathFactory
) -> UsefirstChain:
    return deploy_chain(chain_settings, tmp_path_factory.mktemp("anchoring"))


def payees(count: int) -> list[str]:
    return [Account.create().address for _ in range(count)]


def three_payees(engine: Engine) -> ClosedPeriod:
    a, b, c = payees(3)
    return closed_period(engine, {a: 1, b: 2, c: 7})


def prepared(engine: Engine, chain: UsefirstChain, closed: ClosedPeriod) -> Settlement:
    with Session(engine, expire_on_commit=False) as session:
        settlement = prepare_settlement(session, closed.period_id, chain=chain)
        session.commit()
    assert settlement is not None
    return settlement


def load(engine: Engine, model: type, key: object) -> object:
    with Session(engine, expire_on_commit=False) as session:
        return session.get(model, key)


def test_units_per_minor_is_exact_and_refuses_a_coarser_token() -> None:
    assert units_per_minor(6, "EUR") == 10**4
    assert units_per_minor(18, "JPY") == 10**18
    assert units_per_minor(3, "BHD") == 1
    with pytest.raises(ValidationFailed) as refused:
        units_per_minor(2, "BHD")
    assert refused.value.code == "token_decimals_too_few"
    assert "USEFIRST_CHAIN_UNITS_PER_MINOR" in refused.value.message
    assert units_per_minor(2, "BHD", configured_units_per_minor=1) == 1


def test_prepare_converts_each_payable_line_to_token_units_and_builds_the_tree(
    db_engine: Engine, chain: UsefirstChain
) -> None:
    closed = three_payees(db_engine)
    with Session(db_engine, expire_on_commit=False) as session:
        settlement = prepare_settlement(session, closed.period_id, chain=chain)
        session.commit()
        assert settlement is not None
        expected = [(a, m * EUR_UNITS_PER_MINOR) for a, m in closed.payable.items()]
        assert settlement.state == "prepared"
        assert int(settlement.units_per_minor) == EUR_UNITS_PER_MINOR
        assert int(settlement.total_units) == sum(m for m in closed.payable.values()) * 10**4
        assert settlement.line_count == 3
        assert settlement.merkle_root == statement_tree(expected).root_hex
        assert settlement.settlement_key == (
            "0x" + settlement_id_for(closed.model_id, closed.period_id).hex()
        )
        period = session.get(Period, closed.period_id)
        assert period is not None
        assert settlement.statement_hash == f"0x{period.statement_hash}"
        # Idempotent: the second call returns the same row.
        again = prepare_settlement(session, closed.period_id, chain=chain)
        assert again is not None and again.id == settlement.id


def test_prepare_refuses_a_period_that_is_not_closed(
    db_engine: Engine, chain: UsefirstChain
) -> None:
    with Session(db_engine, expire_on_commit=False) as session:
        model = factories.make_model(session)
        period = factories.make_period(session, model.id, factories.SINCE.replace(year=2026))
        with pytest.raises(StateError) as refused:
            prepare_settlement(session, period.id, chain=chain)
    assert refused.value.code == "period_not_closed"


def test_anchor_publishes_once_funds_the_contract_and_posts_the_funding(
    db_engine: Engine, chain: UsefirstChain
) -> None:
    closed = three_payees(db_engine)
    contract_before = chain.token_balance(chain.settlement.address)
    steps: list[str] = []

    outcome = anchor_period(
        closed.period_id,
        chain=chain,
        settings=chain.settings,
        progress=lambda step, message: steps.append(step),
    )

    assert outcome.period_state == "anchored"
    assert outcome.settlement_state == "confirmed"
    assert {"prepare", "publish", "confirm"} <= set(steps)
    total_minor = sum(closed.payable.values())
    assert outcome.total_units == total_minor * EUR_UNITS_PER_MINOR
    record = chain.get_settlement(settlement_id_for(closed.model_id, closed.period_id))
    assert record is not None
    period = load(db_engine, Period, closed.period_id)
    assert isinstance(period, Period) and period.statement_hash is not None
    assert record.merkle_root.hex() == (outcome.merkle_root or "")[2:]
    assert record.total_units == outcome.total_units == record.remaining_units
    assert record.token == chain.token_address
    assert record.statement_hash.hex() == period.statement_hash
    assert chain.token_balance(chain.settlement.address) - contract_before == outcome.total_units

    with Session(db_engine, expire_on_commit=False) as session:
        for address, payable_minor in closed.payable.items():
            assert payable_minor > 0
            payable = journal_queries.balance(session, postings.payable_account(address), "EUR")
            assert payable == 0  # the close credited it, the funding debited it
        escrow = postings.escrow_account(outcome.settlement_key or "")
        assert journal_queries.balance(session, escrow, "EUR") == -total_minor

    # Running it again sends nothing and changes nothing.
    block = chain.w3.eth.block_number
    again = anchor_period(closed.period_id, chain=chain, settings=chain.settings)
    assert again == outcome
    assert chain.w3.eth.block_number == block


def test_a_period_without_a_payable_line_is_anchored_and_paid_without_publishing(
    db_engine: Engine, chain: UsefirstChain
) -> None:
    a, b = payees(2)
    # Both balances are below the minimum payout: they carry forward, nothing is payable.
    closed = closed_period(db_engine, {a: 1, b: 1}, revenue_minor=1_000, min_payout_minor=10_000)
    assert closed.lines and not closed.payable
    block = chain.w3.eth.block_number

    outcome = anchor_period(closed.period_id, chain=chain, settings=chain.settings)

    assert outcome.note == NO_PAYABLE_NOTE
    assert outcome.period_state == "paid"
    assert outcome.settlement_id is None
    assert chain.w3.eth.block_number == block
    assert anchor_period(closed.period_id, chain=chain, settings=chain.settings) == outcome


def test_a_recorded_publish_the_node_never_saw_is_sent_again_once(
    db_engine: Engine, chain: UsefirstChain
) -> None:
    closed = three_payees(db_engine)
    with Session(db_engine, expire_on_commit=False) as session:
        settlement = prepare_settlement(session, closed.period_id, chain=chain)
        assert settlement is not None
        # As if the node lost the transaction after we recorded its hash (e.g. it restarted).
        settlement.state = "sent"
        settlement.publish_tx_hash = "0x" + os.urandom(32).hex()
        session.add(settlement)
        session.commit()
        lost = settlement.publish_tx_hash

    published = publish_settlement(closed.period_id, chain=chain, settings=chain.settings)

    assert published.state == "sent" and published.publish_tx_hash != lost
    assert published.publish_block is not None
    key = settlement_id_for(closed.model_id, closed.period_id)
    assert chain.find_publish(key) is not None
    confirmed = confirm_settlement(closed.period_id, chain=chain, settings=chain.settings)
    assert confirmed.state == "confirmed"


def test_publish_refuses_an_id_already_on_chain_with_other_contents(
    db_engine: Engine, chain: UsefirstChain
) -> None:
    closed = three_payees(db_engine)
    settlement = prepared(db_engine, chain, closed)
    key = settlement_id_for(closed.model_id, closed.period_id)
    other = statement_tree([(Account.create().address, 5)])
    chain.mint_test_tokens(chain.keys.settler.address, 5)
    chain.publish_settlement(key, other.root, 5, bytes(32))

    with pytest.raises(SettlementConflict):
        publish_settlement(closed.period_id, chain=chain, settings=chain.settings)
    refreshed = load(db_engine, Settlement, settlement.id)
    assert isinstance(refreshed, Settlement) and refreshed.state == "prepared"


def test_confirm_refuses_a_settlement_that_was_not_published(
    db_engine: Engine, chain: UsefirstChain
) -> None:
    closed = three_payees(db_engine)
    prepared(db_engine, chain, closed)
    with pytest.raises(StateError) as refused:
        confirm_settlement(closed.period_id, chain=chain, settings=chain.settings)
    assert refused.value.code == "settlement_not_published"


def test_anchoring_an_unknown_period_names_it(db_engine: Engine, chain: UsefirstChain) -> None:
    missing_id = uuid.uuid4()
    with Session(db_engine, expire_on_commit=False) as session, pytest.raises(NotFound) as missing:
        prepare_settlement(session, missing_id, chain=chain)
    assert str(missing_id) in missing.value.message


def test_two_anchorers_racing_for_one_period_publish_it_once(
    db_engine: Engine, chain: UsefirstChain
) -> None:
    closed = three_payees(db_engine)
    # Separate clients, as two worker processes would have; they meet in the database.
    clients = [UsefirstChain.connect(chain.settings) for _ in range(2)]
    first_new_block = chain.w3.eth.block_number + 1

    with ThreadPoolExecutor(max_workers=2) as pool:
        outcomes = list(
            pool.map(
                lambda client: anchor_period(
                    closed.period_id, chain=client, settings=client.settings
                ),
                clients,
            )
        )

    assert outcomes[0] == outcomes[1]
    assert outcomes[0].period_state == "anchored"
    key = settlement_id_for(closed.model_id, closed.period_id)
    published = chain.settlement.events.SettlementPublished().get_logs(
        from_block=first_new_block, argument_filters={"settlementId": key}
    )
    assert len(published) == 1


def test_a_total_above_what_one_settlement_holds_is_refused_before_anything_is_sent(
    db_engine: Engine, chain: UsefirstChain
) -> None:
    # 10^27 token units per minor unit: a few euros already exceed the contract's 96 bits.
    coarse = UsefirstChain.connect(
        chain.settings.model_copy(update={"chain_units_per_minor": 10**27})
    )
    closed = three_payees(db_engine)
    with Session(db_engine) as session, pytest.raises(StateError) as refused:
        prepare_settlement(session, closed.period_id, chain=coarse)
    assert refused.value.code == "settlement_total_too_large"
    assert str(2**96 - 1) in refused.value.message
    with Session(db_engine) as session:
        assert queries.settlement_for_period(session, closed.period_id) is None
