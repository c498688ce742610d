"""Contract-security properties of issue #8 that test_settlement.py does not already prove.

docs/SECURITY.md maps each property to its tests: proofs of another settlement, statement lines
larger than the funds (the guard of the unchecked `remaining` subtraction, single and batched),
who may pause and what a pause stops, and that the zero address or a repeated address can never
be a co-owner (what Slither's `uninitialized-local` finding on `_validate.previous` relies on).
"""

from __future__ import annotations

import os
import time

import pytest
from eth_account.signers.local import LocalAccount

from contracts.client import ClaimLine, DatasetRegistration, UsefirstChain
from contracts.errors import ContractRevert
from tests.contracts.conftest import make_statement, publish, random_address

MAX_UINT256 = 2**256 - 1


def test_a_proof_of_another_settlement_is_rejected(chain: UsefirstChain) -> None:
    # The same line (account, 100) in two statements with different trees.
    account = random_address()
    first = make_statement([100, 200], [account, random_address()])
    second = make_statement([100, 300], [account, random_address()])
    publish(chain, first)
    publish(chain, second)
    proof_first = first.proof(account)
    assert chain.verify_line(first.settlement_id, account, 100, proof_first)
    assert not chain.verify_line(second.settlement_id, account, 100, proof_first)
    with pytest.raises(ContractRevert) as excinfo:
        chain.claim(second.settlement_id, account, 100, proof_first)
    assert excinfo.value.error_name == "InvalidProof"
    with pytest.raises(ContractRevert) as excinfo:
        chain.claim_many([ClaimLine(second.settlement_id, account, 100, tuple(proof_first))])
    assert excinfo.value.error_name == "InvalidProof"
    assert not chain.is_claimed(second.settlement_id, account)

    # Claiming the line of the first settlement pays from the first only and leaves the same line
    # of the second unclaimed: claimed bits are per settlement.
    chain.claim(first.settlement_id, account, 100, proof_first)
    assert chain.is_claimed(first.settlement_id, account)
    assert not chain.is_claimed(second.settlement_id, account)
    first_record = chain.get_settlement(first.settlement_id)
    second_record = chain.get_settlement(second.settlement_id)
    assert first_record is not None and first_record.remaining_units == 200
    assert second_record is not None and second_record.remaining_units == 400
    chain.claim(second.settlement_id, account, 100, second.proof(account))
    assert chain.token_balance(account) == 200


def test_a_line_larger_than_the_funds_cannot_wrap_the_remaining_balance(
    chain: UsefirstChain,
) -> None:
    # `remaining - amount` is computed without overflow checks once `amount <= remaining` held:
    # a line of 2**256 - 1 against 1,000 funded units must revert, not wrap `remaining`.
    account = random_address()
    huge = make_statement([MAX_UINT256], [account])
    publish(chain, huge, total=1_000)
    with pytest.raises(ContractRevert) as excinfo:
        chain.claim(huge.settlement_id, account, MAX_UINT256, huge.proof(account))
    assert excinfo.value.error_name == "ClaimExceedsRemaining"
    assert excinfo.value.error_args[1:] == (MAX_UINT256, 1_000)
    with pytest.raises(ContractRevert) as excinfo:
        chain.claim_many([huge.claim_line(account)])
    assert excinfo.value.error_name == "ClaimExceedsRemaining"
    record = chain.get_settlement(huge.settlement_id)
    assert record is not None and record.remaining_units == 1_000
    assert not chain.is_claimed(huge.settlement_id, account)
    assert chain.token_balance(account) == 0


def test_a_batch_cannot_take_more_than_a_settlement_holds(chain: UsefirstChain) -> None:
    # Lines adding up to more than the funded total, claimed together: the whole batch reverts.
    faulty = make_statement([600, 600])
    publish(chain, faulty, total=1_000)
    lines = [faulty.claim_line(account) for account, _ in faulty.lines]
    with pytest.raises(ContractRevert) as excinfo:
        chain.claim_many(lines)
    assert excinfo.value.error_name == "ClaimExceedsRemaining"
    record = chain.get_settlement(faulty.settlement_id)
    assert record is not None and record.remaining_units == 1_000
    assert all(chain.token_balance(account) == 0 for account, _ in faulty.lines)


def test_only_the_guardian_pauses_and_a_pause_stops_publication_but_not_revocation(
    windowed_chain: UsefirstChain, anvil_accounts: list[LocalAccount]
) -> None:
    chain = windowed_chain
    # Neither the admin, nor the settler, nor anyone else may pause or unpause.
    others = [chain.keys.deployer, chain.keys.settler, anvil_accounts[7]]
    for sender in others:
        with pytest.raises(ContractRevert) as excinfo:
            chain.transactor.send(sender, chain.settlement.functions.pause())
        assert excinfo.value.error_name == "AccessControlUnauthorizedAccount"
        assert excinfo.value.error_args[0] == sender.address
    assert not chain.is_paused()

    pending = make_statement([10])
    publish(chain, pending)  # inside its 10-minute challenge window
    chain.pause()
    try:
        for sender in others:
            with pytest.raises(ContractRevert) as excinfo:
                chain.transactor.send(sender, chain.settlement.functions.unpause())
            assert excinfo.value.error_name == "AccessControlUnauthorizedAccount"
        with pytest.raises(ContractRevert) as excinfo:
            publish(chain, make_statement([5]))
        assert excinfo.value.error_name == "EnforcedPause"
        # The guardian can still send a settlement's funds back to the settler while paused.
        settler = chain.keys.settler.address
        before = chain.token_balance(settler)
        chain.revoke_settlement(pending.settlement_id)
        assert chain.token_balance(settler) == before + 10
    finally:
        chain.unpause()
    assert not chain.is_paused()


@pytest.mark.parametrize(
    ("co_owners", "bad_index"),
    [
        (("0x" + "00" * 20, "0x" + "11" * 20), 0),  # the zero address, sorted first
        (("0x" + "11" * 20, "0x" + "11" * 20), 1),  # the same co-owner twice
    ],
)
def test_the_zero_address_or_a_repeated_co_owner_is_refused(
    chain: UsefirstChain, co_owners: tuple[str, str], bad_index: int
) -> None:
    registration = DatasetRegistration(
        dataset_id=os.urandom(16).rjust(32, b"\0"),
        content_root=os.urandom(32),
        terms_hash=os.urandom(32),
        allowed_uses=3,
        co_owners=co_owners,
        shares_bps=(5_000, 5_000),
        valid_from=int(time.time()) - 3_600,
        valid_until=0,
    )
    with pytest.raises(ContractRevert) as excinfo:
        chain.register_dataset(registration, [])
    assert excinfo.value.error_name == "CoOwnersNotSorted"
    assert excinfo.value.error_args == (bad_index,)
