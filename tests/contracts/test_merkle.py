"""contracts.merkle is byte-compatible with @openzeppelin/merkle-tree's StandardMerkleTree."""

from __future__ import annotations

import json
import random
import subprocess
from pathlib import Path
from typing import Any

import pytest
from eth_utils import keccak
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from contracts.merkle import (
    MerkleTreeError,
    StandardMerkleTree,
    leaf_hash,
    statement_tree,
    verify,
)

OZ_SCRIPT = Path(__file__).with_name("oz_merkle.js")


def oz_reference(values: list[tuple[str, int]]) -> dict[str, Any]:
    """Root, proofs and dump computed by the JS library for ``values``."""
    payload = json.dumps({"values": [[account, str(amount)] for account, amount in values]})
    out = subprocess.run(
        ["node", str(OZ_SCRIPT)], input=payload, capture_output=True, text=True, check=True
    )
    return json.loads(out.stdout)


def assert_matches_oz(values: list[tuple[str, int]]) -> None:
    ours = StandardMerkleTree.of(values)
    theirs = oz_reference(values)
    assert ours.root_hex == theirs["root"]
    assert ours.dump() == theirs["dump"]
    for i in range(len(values)):
        assert ours.get_proof_hex(i) == theirs["proofs"][i]


FIXED = [
    ("0x1111111111111111111111111111111111111111", 5_000_000),
    ("0x2222222222222222222222222222222222222222", 2_500_000),
    ("0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266", 1),
    ("0x70997970C51812dc3A010C7d01b50e0d17dc79C8", 2**256 - 1),
    ("0x0000000000000000000000000000000000000000", 0),
]


def test_leaf_hash_is_the_contracts_double_keccak() -> None:
    account, amount = FIXED[0]
    encoded = bytes(12) + bytes.fromhex(account[2:]) + amount.to_bytes(32, "big")
    assert leaf_hash(account, amount) == keccak(keccak(encoded))


@pytest.mark.parametrize("size", [1, 2, 3, 5])
def test_fixed_sets_match_openzeppelin(size: int) -> None:
    assert_matches_oz(FIXED[:size])


def test_duplicate_values_keep_the_libraries_stable_order() -> None:
    assert_matches_oz([FIXED[0], FIXED[1], FIXED[0], FIXED[2]])


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_random_sets_match_openzeppelin(seed: int) -> None:
    rng = random.Random(seed)
    size = rng.randrange(6, 400)
    values = [
        ("0x" + rng.randbytes(20).hex(), rng.randrange(0, 2 ** rng.choice([8, 64, 256])))
        for _ in range(size)
    ]
    assert_matches_oz(values)


def test_a_javascript_dump_loads_and_proves_the_same_lines() -> None:
    values = [("0x" + bytes([i]).hex() * 20, i * 1_000) for i in range(1, 30)]
    dump = oz_reference(values)["dump"]
    loaded = StandardMerkleTree.load(dump)
    assert loaded.dump() == dump
    for i, (account, amount) in enumerate(values):
        assert verify(loaded.root, account, amount, loaded.get_proof(i))


def test_load_rejects_a_tampered_dump() -> None:
    dump = StandardMerkleTree.of(FIXED).dump()
    dump["values"][0]["value"][1] = "6000000"
    with pytest.raises(MerkleTreeError, match="is not at tree index"):
        StandardMerkleTree.load(dump)


def test_statement_tree_refuses_a_second_line_for_an_account() -> None:
    with pytest.raises(MerkleTreeError, match="more than one line"):
        statement_tree([(FIXED[0][0], 1), (FIXED[0][0].lower(), 2)])


def test_statement_tree_refuses_zero_amounts() -> None:
    with pytest.raises(MerkleTreeError, match="amount 0"):
        statement_tree([(FIXED[0][0], 0)])


def test_invalid_values_are_rejected_with_the_field_named() -> None:
    with pytest.raises(MerkleTreeError, match="not a 0x-prefixed"):
        StandardMerkleTree.of([("0x1234", 1)])
    with pytest.raises(MerkleTreeError, match="not a uint256"):
        StandardMerkleTree.of([(FIXED[0][0], -1)])
    with pytest.raises(MerkleTreeError, match="at least one value"):
        StandardMerkleTree.of([])


def test_a_100k_line_statement_builds_and_proves() -> None:
    # Build time is reported by scripts/bench_gas.py, never asserted in a test.
    rng = random.Random(7)
    lines = [("0x" + rng.randbytes(20).hex(), rng.randrange(1, 10**12)) for _ in range(100_000)]
    tree = statement_tree(lines)
    account, amount = lines[54_321]
    proof = tree.line_proof(account)[1]
    assert len(proof) == 17
    assert verify(tree.root, account, amount, proof)


addresses = st.binary(min_size=20, max_size=20).map(lambda b: "0x" + b.hex())
amounts = st.integers(min_value=1, max_value=2**256 - 1)
statements = st.dictionaries(addresses, amounts, min_size=1, max_size=40)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(lines=statements, data=st.data())
def test_every_proof_verifies_and_tampering_breaks_it(
    lines: dict[str, int], data: st.DataObject
) -> None:
    tree = statement_tree(lines.items())
    for account, amount in lines.items():
        proof = tree.line_proof(account)[1]
        assert verify(tree.root, account, amount, proof)
    account = data.draw(st.sampled_from(sorted(lines)))
    amount, proof = tree.line_proof(account)
    other_amount = data.draw(amounts.filter(lambda a: a != amount))
    assert not verify(tree.root, account, other_amount, proof)
    other_account = data.draw(addresses.filter(lambda a: a.lower() != account.lower()))
    assert not verify(tree.root, other_account, amount, proof)
