"""RoyaltySettlement on a real anvil: funded roots, challenge window, claims, guardian limits."""

from __future__ import annotations

import os
import random

import pytest
from eth_account.signers.local import LocalAccount
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from web3.logs import DISCARD

from contracts.client import ClaimLine, SettlementStatus, UsefirstChain
from contracts.errors import ContractRevert
from contracts.merkle import leaf_hash, node_hash, process_proof
from tests.contracts.conftest import (
    STATEMENT_HASH,
    advance_time,
    deploy_contract,
    make_statement,
    new_id,
    publish,
    random_address,
)


def revert_name(excinfo: pytest.ExceptionInfo[ContractRevert]) -> str:
    return excinfo.value.error_name


# --- publish -------------------------------------------------------------------------------


def test_publish_pulls_exactly_the_total_and_records_the_root(chain: UsefirstChain) -> None:
    statement = make_statement([700, 300])
    settler = chain.keys.settler.address
    chain.mint_test_tokens(settler, 1_000)
    before_settler = chain.token_balance(settler)
    before_contract = chain.token_balance(chain.settlement.address)
    published = chain.publish_settlement(
        statement.settlement_id, statement.tree.root, 1_000, STATEMENT_HASH
    )
    record = published.record
    assert record.status is SettlementStatus.PUBLISHED
    assert record.merkle_root == statement.tree.root
    assert (record.total_units, record.remaining_units) == (1_000, 1_000)
    assert record.statement_hash == STATEMENT_HASH
    assert chain.token_balance(settler) == before_settler - 1_000
    assert chain.token_balance(chain.settlement.address) == before_contract + 1_000


def test_publish_without_allowance_reverts_and_leaves_nothing(chain: UsefirstChain) -> None:
    statement = make_statement([5])
    settler = chain.keys.settler
    chain.mint_test_tokens(settler.address, 5)
    token = chain.token()
    chain.transactor.send(settler, token.functions.approve(chain.settlement.address, 0))
    before = chain.token_balance(settler.address)
    fn = chain.settlement.functions.publish(
        statement.settlement_id, statement.tree.root, 5, chain.token_address, STATEMENT_HASH
    )
    with pytest.raises(ContractRevert) as excinfo:
        chain.transactor.send(settler, fn)
    assert revert_name(excinfo) == "ERC20InsufficientAllowance"
    assert chain.get_settlement(statement.settlement_id) is None
    assert chain.token_balance(settler.address) == before


def test_publish_without_funds_reverts(chain: UsefirstChain) -> None:
    statement = make_statement([chain.token_balance(chain.keys.settler.address) + 1])
    with pytest.raises(ContractRevert) as excinfo:
        chain.publish_settlement(
            statement.settlement_id, statement.tree.root, statement.total, STATEMENT_HASH
        )
    assert revert_name(excinfo) == "ERC20InsufficientBalance"
    assert chain.get_settlement(statement.settlement_id) is None


def test_republishing_an_id_reverts_even_with_the_same_root(chain: UsefirstChain) -> None:
    statement = make_statement([42])
    publish(chain, statement)
    chain.mint_test_tokens(chain.keys.settler.address, 42)
    fn = chain.settlement.functions.publish(
        statement.settlement_id, statement.tree.root, 42, chain.token_address, STATEMENT_HASH
    )
    with pytest.raises(ContractRevert) as excinfo:
        chain.transactor.send(chain.keys.settler, fn)
    assert revert_name(excinfo) == "AlreadyPublished"


def test_fee_on_transfer_tokens_are_refused(chain: UsefirstChain) -> None:
    fot = deploy_contract(chain, "FeeOnTransferToken")
    settler = chain.keys.settler
    chain.transactor.send(chain.keys.deployer, fot.functions.mint(settler.address, 10_000))
    statement = make_statement([10_000])
    with pytest.raises(ContractRevert) as excinfo:
        chain.publish_settlement(
            statement.settlement_id,
            statement.tree.root,
            10_000,
            STATEMENT_HASH,
            token=fot.address,
        )
    assert revert_name(excinfo) == "TransferAmountMismatch"
    assert excinfo.value.error_args[1:] == (10_000, 9_900)
    assert chain.get_settlement(statement.settlement_id) is None


@pytest.mark.parametrize(
    ("root", "total", "error"),
    [(b"\x00" * 32, 1, "InvalidMerkleRoot"), (b"\x01" * 32, 0, "ZeroTotal")],
)
def test_publish_refuses_empty_roots_and_totals(
    chain: UsefirstChain, root: bytes, total: int, error: str
) -> None:
    fn = chain.settlement.functions.publish(new_id(), root, total, chain.token_address, b"\0" * 32)
    with pytest.raises(ContractRevert) as excinfo:
        chain.transactor.send(chain.keys.settler, fn)
    assert revert_name(excinfo) == error


# --- roles ---------------------------------------------------------------------------------


def test_only_the_settler_publishes_and_only_the_guardian_revokes_or_pauses(
    chain: UsefirstChain, anvil_accounts: list[LocalAccount]
) -> None:
    outsider = anvil_accounts[7]
    statement = make_statement([1])
    calls = [
        chain.settlement.functions.publish(
            statement.settlement_id, statement.tree.root, 1, chain.token_address, STATEMENT_HASH
        ),
        chain.settlement.functions.revoke(statement.settlement_id),
        chain.settlement.functions.pause(),
        chain.settlement.functions.unpause(),
        chain.settlement.functions.setChallengeWindow(0),
    ]
    for fn in calls:
        with pytest.raises(ContractRevert) as excinfo:
            chain.transactor.send(outsider, fn)
        assert revert_name(excinfo) == "AccessControlUnauthorizedAccount"
        assert excinfo.value.error_args[0] == outsider.address
    # The settler cannot act as guardian either, nor the guardian as settler.
    with pytest.raises(ContractRevert):
        chain.transactor.send(chain.keys.settler, chain.settlement.functions.pause())
    with pytest.raises(ContractRevert):
        chain.transactor.send(chain.keys.guardian, calls[0])


def test_the_challenge_window_is_bounded(chain: UsefirstChain) -> None:
    fn = chain.settlement.functions.setChallengeWindow(31 * 86_400)
    with pytest.raises(ContractRevert) as excinfo:
        chain.transactor.send(chain.keys.deployer, fn)
    assert revert_name(excinfo) == "ChallengeWindowTooLong"


# --- challenge window ----------------------------------------------------------------------


def test_claims_open_only_after_the_challenge_window(windowed_chain: UsefirstChain) -> None:
    chain = windowed_chain
    statement = make_statement([1_000, 2_000])
    publish(chain, statement)
    account = statement.lines[0][0]
    with pytest.raises(ContractRevert) as excinfo:
        chain.claim(statement.settlement_id, account, 1_000, statement.proof(account))
    assert revert_name(excinfo) == "ClaimNotOpen"
    advance_time(chain.w3, 601)
    chain.claim(statement.settlement_id, account, 1_000, statement.proof(account))
    assert chain.token_balance(account) == 1_000


def test_a_revoked_settlement_returns_its_funds_and_pays_no_claim(
    windowed_chain: UsefirstChain,
) -> None:
    chain = windowed_chain
    statement = make_statement([400, 600])
    settler = chain.keys.settler.address
    publish(chain, statement)
    after_publish = chain.token_balance(settler)
    chain.revoke_settlement(statement.settlement_id)
    assert chain.token_balance(settler) == after_publish + 1_000
    record = chain.get_settlement(statement.settlement_id)
    assert record is not None
    assert (record.status, record.remaining_units) == (SettlementStatus.REVOKED, 0)
    advance_time(chain.w3, 601)
    account = statement.lines[0][0]
    with pytest.raises(ContractRevert) as excinfo:
        chain.claim(statement.settlement_id, account, 400, statement.proof(account))
    assert revert_name(excinfo) == "SettlementIsRevoked"
    # A revoked id stays used: the corrected statement needs a new id.
    fn = chain.settlement.functions.publish(
        statement.settlement_id, statement.tree.root, 1_000, chain.token_address, STATEMENT_HASH
    )
    with pytest.raises(ContractRevert) as excinfo:
        chain.transactor.send(chain.keys.settler, fn)
    assert revert_name(excinfo) == "AlreadyPublished"


def test_the_guardian_cannot_revoke_once_claims_are_open(windowed_chain: UsefirstChain) -> None:
    chain = windowed_chain
    statement = make_statement([77])
    publish(chain, statement)
    advance_time(chain.w3, 601)
    with pytest.raises(ContractRevert) as excinfo:
        chain.revoke_settlement(statement.settlement_id)
    assert revert_name(excinfo) == "ChallengeWindowClosed"
    record = chain.get_settlement(statement.settlement_id)
    assert record is not None and record.remaining_units == 77


# --- claims --------------------------------------------------------------------------------


def test_a_line_pays_once_and_only_to_its_account(
    chain: UsefirstChain, anvil_accounts: list[LocalAccount]
) -> None:
    statement = make_statement([250, 750])
    publish(chain, statement)
    account, amount = statement.lines[1]
    relayer = anvil_accounts[8]
    relayer_before = chain.token_balance(relayer.address)
    result = chain.claim(
        statement.settlement_id, account, amount, statement.proof(account), sender=relayer
    )
    assert chain.token_balance(account) == amount
    assert chain.token_balance(relayer.address) == relayer_before
    assert chain.is_claimed(statement.settlement_id, account)
    claimed = chain.settlement.events.Claimed().process_receipt(result.receipt, errors=DISCARD)
    assert [(e["args"]["account"], e["args"]["amount"]) for e in claimed] == [(account, amount)]
    with pytest.raises(ContractRevert) as excinfo:
        chain.claim(statement.settlement_id, account, amount, statement.proof(account))
    assert revert_name(excinfo) == "AlreadyClaimed"
    assert chain.token_balance(account) == amount


def test_a_proof_for_another_amount_or_account_is_rejected(chain: UsefirstChain) -> None:
    statement = make_statement([100, 200, 300])
    publish(chain, statement)
    (a, amount_a), (b, _) = statement.lines[0], statement.lines[1]
    proof_a = statement.proof(a)
    for account, amount in [(a, amount_a + 1), (b, amount_a), (random_address(), amount_a)]:
        with pytest.raises(ContractRevert) as excinfo:
            chain.claim(statement.settlement_id, account, amount, proof_a)
        assert revert_name(excinfo) == "InvalidProof"
        assert not chain.verify_line(statement.settlement_id, account, amount, proof_a)
    assert chain.verify_line(statement.settlement_id, a, amount_a, proof_a)
    record = chain.get_settlement(statement.settlement_id)
    assert record is not None and record.remaining_units == 600


def test_claims_of_an_unknown_settlement_revert(chain: UsefirstChain) -> None:
    with pytest.raises(ContractRevert) as excinfo:
        chain.claim(new_id(), random_address(), 1, [])
    assert revert_name(excinfo) == "SettlementNotFound"


def test_paused_claims_revert_until_unpaused(chain: UsefirstChain) -> None:
    statement = make_statement([9])
    publish(chain, statement)
    account = statement.lines[0][0]
    chain.pause()
    try:
        with pytest.raises(ContractRevert) as excinfo:
            chain.claim(statement.settlement_id, account, 9, statement.proof(account))
        assert revert_name(excinfo) == "EnforcedPause"
        with pytest.raises(ContractRevert):
            chain.claim_many([statement.claim_line(account)])
    finally:
        chain.unpause()
    chain.claim(statement.settlement_id, account, 9, statement.proof(account))
    assert chain.token_balance(account) == 9


def test_claims_can_never_take_more_than_the_settlement_holds(chain: UsefirstChain) -> None:
    # A faulty statement whose lines add up to more than its funded total: the shortfall stays
    # inside this settlement and never reaches another settlement's funds.
    other = make_statement([5_000])
    publish(chain, other)
    faulty = make_statement([600, 600])
    publish(chain, faulty, total=1_000)
    (a, amount_a), (b, amount_b) = faulty.lines
    chain.claim(faulty.settlement_id, a, amount_a, faulty.proof(a))
    with pytest.raises(ContractRevert) as excinfo:
        chain.claim(faulty.settlement_id, b, amount_b, faulty.proof(b))
    assert revert_name(excinfo) == "ClaimExceedsRemaining"
    assert excinfo.value.error_args[1:] == (600, 400)
    other_account = other.lines[0][0]
    chain.claim(other.settlement_id, other_account, 5_000, other.proof(other_account))
    assert chain.token_balance(other_account) == 5_000


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    amounts=st.lists(st.integers(min_value=1, max_value=10**9), min_size=1, max_size=6),
    shortfall=st.integers(min_value=0, max_value=10**9),
    order=st.randoms(use_true_random=False),
)
def test_the_sum_of_claims_never_exceeds_the_total(
    chain: UsefirstChain, amounts: list[int], shortfall: int, order: random.Random
) -> None:
    statement = make_statement(amounts)
    total = max(1, statement.total - shortfall)
    publish(chain, statement, total=total)
    lines = list(statement.lines)
    order.shuffle(lines)
    paid = 0
    for account, amount in lines:
        try:
            chain.claim(statement.settlement_id, account, amount, statement.proof(account))
            paid += amount
        except ContractRevert as exc:
            assert exc.error_name == "ClaimExceedsRemaining"
        # Claiming again never pays twice.
        with pytest.raises(ContractRevert):
            chain.claim(statement.settlement_id, account, amount, statement.proof(account))
    record = chain.get_settlement(statement.settlement_id)
    assert record is not None
    assert paid <= total
    assert record.remaining_units == total - paid
    assert sum(chain.token_balance(account) for account, _ in statement.lines) == paid


# --- storage bounds: 96-bit remaining, 176-bit root prefix ----------------------------------

UINT96_MAX = 2**96 - 1


def test_publish_refuses_a_total_above_96_bits(chain: UsefirstChain) -> None:
    statement = make_statement([2**96])
    fn = chain.settlement.functions.publish(
        statement.settlement_id, statement.tree.root, 2**96, chain.token_address, STATEMENT_HASH
    )
    with pytest.raises(ContractRevert) as excinfo:
        chain.transactor.send(chain.keys.settler, fn)
    assert revert_name(excinfo) == "TotalTooLarge"
    assert excinfo.value.error_args == (2**96, UINT96_MAX)
    assert chain.get_settlement(statement.settlement_id) is None


def test_a_96_bit_total_is_paid_out_to_the_last_unit(chain: UsefirstChain) -> None:
    statement = make_statement([UINT96_MAX - 1, 1])
    publish(chain, statement)
    record = chain.get_settlement(statement.settlement_id)
    assert record is not None
    assert (record.total_units, record.remaining_units) == (UINT96_MAX, UINT96_MAX)
    for account, amount in statement.lines:
        chain.claim(statement.settlement_id, account, amount, statement.proof(account))
        assert chain.token_balance(account) == amount
    record = chain.get_settlement(statement.settlement_id)
    assert record is not None and record.remaining_units == 0
    assert record.merkle_root == statement.tree.root


def test_a_line_above_96_bits_is_not_truncated_into_the_remaining(chain: UsefirstChain) -> None:
    # A line larger than any total can never be paid: compared as uint256, not cut to 96 bits.
    statement = make_statement([2**96 + 5, 5])
    publish(chain, statement, total=UINT96_MAX)
    big, small = statement.lines
    with pytest.raises(ContractRevert) as excinfo:
        chain.claim(statement.settlement_id, big[0], big[1], statement.proof(big[0]))
    assert revert_name(excinfo) == "ClaimExceedsRemaining"
    assert excinfo.value.error_args[1:] == (2**96 + 5, UINT96_MAX)
    with pytest.raises(ContractRevert) as excinfo:
        chain.claim_many([statement.claim_line(big[0])])
    assert revert_name(excinfo) == "ClaimExceedsRemaining"
    chain.claim(statement.settlement_id, small[0], 5, statement.proof(small[0]))
    record = chain.get_settlement(statement.settlement_id)
    assert record is not None and record.remaining_units == UINT96_MAX - 5
    assert not chain.is_claimed(statement.settlement_id, big[0])


def _altered(root: bytes, index: int) -> bytes:
    return root[:index] + bytes([root[index] ^ 0x01]) + root[index + 1 :]


@pytest.mark.parametrize("index", [0, 10, 19, 20, 21])
def test_a_proof_whose_root_differs_inside_the_176_bit_prefix_is_rejected(
    chain: UsefirstChain, index: int
) -> None:
    # Bytes 0-19 live in the slot with `remaining`, bytes 20-21 in the slot with the token:
    # a root equal to the proof's in one part but not the other is refused either way.
    statement = make_statement([300, 700])
    published_root = _altered(statement.tree.root, index)
    chain.mint_test_tokens(chain.keys.settler.address, statement.total)
    chain.publish_settlement(
        statement.settlement_id, published_root, statement.total, STATEMENT_HASH
    )
    record = chain.get_settlement(statement.settlement_id)
    assert record is not None and record.merkle_root == published_root
    account, amount = statement.lines[0]
    proof = statement.proof(account)
    with pytest.raises(ContractRevert) as excinfo:
        chain.claim(statement.settlement_id, account, amount, proof)
    assert revert_name(excinfo) == "InvalidProof"
    with pytest.raises(ContractRevert) as excinfo:
        chain.claim_many([statement.claim_line(account)])
    assert revert_name(excinfo) == "InvalidProof"
    assert not chain.verify_line(statement.settlement_id, account, amount, proof)
    assert not chain.is_claimed(statement.settlement_id, account)


def test_a_root_holding_the_prefix_in_its_low_bytes_is_rejected(chain: UsefirstChain) -> None:
    # The proof's 22-byte prefix appears in the published root, but at the wrong end.
    statement = make_statement([40, 60])
    root = statement.tree.root
    published_root = b"\x11" * 10 + root[:22]
    chain.mint_test_tokens(chain.keys.settler.address, statement.total)
    chain.publish_settlement(
        statement.settlement_id, published_root, statement.total, STATEMENT_HASH
    )
    account, amount = statement.lines[1]
    with pytest.raises(ContractRevert) as excinfo:
        chain.claim(statement.settlement_id, account, amount, statement.proof(account))
    assert revert_name(excinfo) == "InvalidProof"


@pytest.mark.parametrize("index", [22, 31])
def test_claims_check_the_176_bit_prefix_and_views_the_full_root(
    chain: UsefirstChain, index: int
) -> None:
    # Documented behaviour: the settler published a root that differs from the proof's only
    # below the 176-bit prefix. A claim, which compares the prefix, pays; getSettlement returns
    # the full published root and verifyLine, which compares all 256 bits, says no.
    statement = make_statement([123, 877])
    published_root = _altered(statement.tree.root, index)
    chain.mint_test_tokens(chain.keys.settler.address, statement.total)
    chain.publish_settlement(
        statement.settlement_id, published_root, statement.total, STATEMENT_HASH
    )
    record = chain.get_settlement(statement.settlement_id)
    assert record is not None and record.merkle_root == published_root
    account, amount = statement.lines[0]
    proof = statement.proof(account)
    assert not chain.verify_line(statement.settlement_id, account, amount, proof)
    chain.claim(statement.settlement_id, account, amount, proof)
    assert chain.token_balance(account) == amount
    record = chain.get_settlement(statement.settlement_id)
    assert record is not None
    assert (record.merkle_root, record.remaining_units) == (published_root, 877)


@pytest.mark.parametrize("size", [1, 2, 3, 33])
def test_the_contract_computes_the_same_roots_as_the_standard_merkle_tree(
    chain: UsefirstChain, size: int
) -> None:
    # The contract hashes proofs in its own loop; every line of trees with empty, short and
    # unbalanced proofs verifies, and a changed amount or sibling does not.
    statement = make_statement(list(range(1, size + 1)))
    publish(chain, statement)
    for account, amount in statement.lines:
        proof = statement.proof(account)
        assert chain.verify_line(statement.settlement_id, account, amount, proof)
        assert not chain.verify_line(statement.settlement_id, account, amount + 1, proof)
        if proof:
            changed = [*proof[:-1], _altered(proof[-1], 31)]
            assert not chain.verify_line(statement.settlement_id, account, amount, changed)
    account, amount = statement.lines[-1]
    chain.claim(statement.settlement_id, account, amount, statement.proof(account))
    assert chain.token_balance(account) == amount


def test_a_sibling_equal_to_the_node_hashes_like_the_library(chain: UsefirstChain) -> None:
    account, amount = random_address(), 31
    leaf = leaf_hash(account, amount)
    root = node_hash(leaf, leaf)
    settlement_id = new_id()
    chain.mint_test_tokens(chain.keys.settler.address, amount)
    chain.publish_settlement(settlement_id, root, amount, STATEMENT_HASH)
    assert chain.verify_line(settlement_id, account, amount, [leaf])
    chain.claim(settlement_id, account, amount, [leaf])
    assert chain.token_balance(account) == amount


def _publish_with_proof_depth(
    chain: UsefirstChain, account: str, amount: int, depth: int
) -> tuple[bytes, list[bytes], int]:
    """Publish a root with ``(account, amount)`` ``depth`` levels deep (random siblings, as in a
    large tree); returns the id, the proof and the settlement's sequence number."""
    proof = [os.urandom(32) for _ in range(depth)]
    root = process_proof(leaf_hash(account, amount), proof)
    settlement_id = new_id()
    chain.mint_test_tokens(chain.keys.settler.address, amount)
    published = chain.publish_settlement(settlement_id, root, amount, STATEMENT_HASH)
    return settlement_id, proof, published.record.sequence


def test_a_repeat_owner_claim_with_a_100000_line_proof_costs_at_most_70000_gas(
    chain: UsefirstChain,
) -> None:
    # Issue #9's target, with the proof depth of a 100,000-line statement (17 siblings): the
    # payee holds the token and already claimed a settlement of the same claimed-bits word.
    # scripts/bench_gas.py measures the exact figures on a real tree.
    owner, amount = random_address(), 987_654_321
    first_id, first_proof, first_sequence = _publish_with_proof_depth(chain, owner, amount, 17)
    chain.claim(first_id, owner, amount, first_proof)
    next_id, next_proof, next_sequence = _publish_with_proof_depth(chain, owner, amount, 17)
    if next_sequence >> 8 != first_sequence >> 8:  # a new 256-settlement word: start over
        chain.claim(next_id, owner, amount, next_proof)
        next_id, next_proof, _ = _publish_with_proof_depth(chain, owner, amount, 17)
    before = chain.token_balance(owner)
    gas_used = chain.claim(next_id, owner, amount, next_proof).gas_used
    assert chain.token_balance(owner) == before + amount
    assert gas_used <= 70_000


# --- claimMany -----------------------------------------------------------------------------


def test_claim_many_skips_claimed_lines_and_pays_the_others(chain: UsefirstChain) -> None:
    statement = make_statement([10, 20, 30, 40])
    publish(chain, statement)
    first = statement.lines[0][0]
    chain.claim(statement.settlement_id, first, 10, statement.proof(first))
    lines = [statement.claim_line(account) for account, _ in statement.lines]
    result = chain.claim_many(lines)
    assert result.paid_lines == 3
    assert [chain.token_balance(account) for account, _ in statement.lines] == [10, 20, 30, 40]
    again = chain.claim_many(lines)
    assert again.paid_lines == 0
    paid = chain.claims(statement.settlement_id)
    assert sorted((c.account, c.amount_units) for c in paid) == sorted(statement.lines)
    assert {c.tx_hash for c in paid[1:]} == {result.tx.tx_hash}
    record = chain.get_settlement(statement.settlement_id)
    assert record is not None and record.remaining_units == 0


def test_claim_many_sends_one_transfer_per_account_and_token(chain: UsefirstChain) -> None:
    owner, other = random_address(), random_address()
    first = make_statement([100, 1], [owner, other])
    second = make_statement([200], [owner])
    third = make_statement([300, 2], [owner, other])
    for statement in (first, second, third):
        publish(chain, statement)
    lines = [s.claim_line(owner) for s in (first, second, third)]
    lines += [first.claim_line(other), third.claim_line(other)]
    result = chain.claim_many(lines)
    assert result.paid_lines == 5
    transfers = chain.token().events.Transfer().process_receipt(result.tx.receipt, errors=DISCARD)
    assert sorted((t["args"]["to"], t["args"]["value"]) for t in transfers) == sorted(
        [(owner, 600), (other, 3)]
    )
    assert chain.token_balance(owner) == 600


def test_claim_many_reverts_the_batch_on_a_bad_proof(chain: UsefirstChain) -> None:
    statement = make_statement([5, 6])
    publish(chain, statement)
    good = statement.claim_line(statement.lines[0][0])
    bad = ClaimLine(statement.settlement_id, statement.lines[1][0], 7, good.proof)
    with pytest.raises(ContractRevert) as excinfo:
        chain.claim_many([good, bad])
    assert revert_name(excinfo) == "InvalidProof"
    assert not chain.is_claimed(statement.settlement_id, good.account)


# --- re-entrancy ---------------------------------------------------------------------------


def test_a_reentrant_token_gains_nothing(chain: UsefirstChain) -> None:
    evil = deploy_contract(chain, "ReentrantToken")
    settler = chain.keys.settler
    attacker = random_address()
    statement = make_statement([1_000, 5_000], [attacker, random_address()])
    chain.transactor.send(chain.keys.deployer, evil.functions.mint(settler.address, 6_000))
    chain.publish_settlement(
        statement.settlement_id, statement.tree.root, 6_000, STATEMENT_HASH, token=evil.address
    )
    proof = statement.proof(attacker)
    # On the payout transfer the token calls claim again for the same line.
    reenter = chain.settlement.functions.claim(
        statement.settlement_id, attacker, 1_000, proof
    )._encode_transaction_data()
    chain.transactor.send(
        chain.keys.deployer, evil.functions.arm(chain.settlement.address, reenter)
    )
    chain.claim(statement.settlement_id, attacker, 1_000, proof)
    assert evil.functions.attackAttempted().call()
    assert not evil.functions.attackSucceeded().call()
    assert evil.functions.balanceOf(attacker).call() == 1_000
    assert evil.functions.balanceOf(chain.settlement.address).call() == 5_000
    record = chain.get_settlement(statement.settlement_id)
    assert record is not None and record.remaining_units == 5_000


def test_a_reentrant_token_cannot_reenter_claim_many(chain: UsefirstChain) -> None:
    evil = deploy_contract(chain, "ReentrantToken")
    settler = chain.keys.settler
    a, b = random_address(), random_address()
    statement = make_statement([1_000, 2_000], [a, b])
    chain.transactor.send(chain.keys.deployer, evil.functions.mint(settler.address, 3_000))
    chain.publish_settlement(
        statement.settlement_id, statement.tree.root, 3_000, STATEMENT_HASH, token=evil.address
    )
    reenter = chain.settlement.functions.claimMany(
        [statement.claim_line(a).as_tuple(), statement.claim_line(b).as_tuple()]
    )._encode_transaction_data()
    chain.transactor.send(
        chain.keys.deployer, evil.functions.arm(chain.settlement.address, reenter)
    )
    chain.claim_many([statement.claim_line(a), statement.claim_line(b)])
    assert evil.functions.attackAttempted().call()
    assert not evil.functions.attackSucceeded().call()
    assert evil.functions.balanceOf(a).call() == 1_000
    assert evil.functions.balanceOf(b).call() == 2_000
    assert evil.functions.balanceOf(chain.settlement.address).call() == 0
