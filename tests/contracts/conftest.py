"""Factories for the contract tests: fresh deployments, statements, funds and time travel.

Every module deploys its own contracts (its own deployment record directory), and every test
uses fresh settlement and dataset ids and fresh payee addresses, so tests never depend on each
other's state on the shared session chain.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from eth_account import Account
from eth_account.signers.local import LocalAccount
from web3 import Web3
from web3.contract import Contract

from contracts.client import ClaimLine, UsefirstChain
from contracts.compiler import get_contract
from contracts.merkle import StandardMerkleTree, statement_tree
from ledger.settings import Settings

STATEMENT_HASH = b"\x5a" * 32


def chain_for(chain_settings: Settings, data_dir: Path, **overrides: Any) -> UsefirstChain:
    """A client whose contracts are deployed into ``data_dir``'s own deployment record."""
    settings = chain_settings.model_copy(update={"data_dir": data_dir, **overrides})
    return UsefirstChain.connect(settings, deploy=True)


@pytest.fixture(scope="module")
def chain(chain_settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> UsefirstChain:
    """Contracts with a zero challenge window: claims open at publication."""
    return chain_for(chain_settings, tmp_path_factory.mktemp("chain"), chain_challenge_window_s=0)


@pytest.fixture(scope="module")
def windowed_chain(
    chain_settings: Settings, tmp_path_factory: pytest.TempPathFactory
) -> UsefirstChain:
    """Contracts with a 10-minute challenge window."""
    return chain_for(
        chain_settings, tmp_path_factory.mktemp("windowed"), chain_challenge_window_s=600
    )


def random_address() -> str:
    return Web3.to_checksum_address(os.urandom(20))


def new_id() -> bytes:
    return os.urandom(32)


@dataclass
class Statement:
    settlement_id: bytes
    tree: StandardMerkleTree
    lines: list[tuple[str, int]]

    @property
    def total(self) -> int:
        return sum(amount for _, amount in self.lines)

    def proof(self, account: str) -> list[bytes]:
        return self.tree.line_proof(account)[1]

    def claim_line(self, account: str) -> ClaimLine:
        amount, proof = self.tree.line_proof(account)
        return ClaimLine(self.settlement_id, account, amount, tuple(proof))


def make_statement(amounts: list[int], accounts: list[str] | None = None) -> Statement:
    accounts = accounts or [random_address() for _ in amounts]
    lines = list(zip(accounts, amounts, strict=True))
    return Statement(new_id(), statement_tree(lines), lines)


def publish(
    chain: UsefirstChain,
    statement: Statement,
    *,
    total: int | None = None,
    token: str | None = None,
) -> None:
    """Fund the settler with the local token (when it is the token) and publish."""
    total = statement.total if total is None else total
    if token is None or token == chain.token_address:
        chain.mint_test_tokens(chain.keys.settler.address, total)
    chain.publish_settlement(
        statement.settlement_id, statement.tree.root, total, STATEMENT_HASH, token=token
    )


def advance_time(w3: Web3, seconds: int) -> None:
    w3.provider.make_request("evm_increaseTime", [seconds])  # type: ignore[arg-type]
    w3.provider.make_request("evm_mine", [])  # type: ignore[arg-type]


def deploy_contract(chain: UsefirstChain, name: str, *args: Any) -> Contract:
    """Deploy a (test) contract from the deployer key."""
    compiled = get_contract(name)
    factory = chain.w3.eth.contract(abi=compiled.abi, bytecode=compiled.bytecode)
    result = chain.transactor.send(chain.keys.deployer, factory.constructor(*args))
    assert result.contract_address is not None
    return chain.w3.eth.contract(address=result.contract_address, abi=compiled.abi)


def new_account() -> LocalAccount:
    return Account.create()


@pytest.fixture
def fund_eth(chain: UsefirstChain) -> Callable[[str], None]:
    """Give an address 1 ETH from the deployer so it can send its own transactions."""

    def fund(address: str) -> None:
        chain.w3.provider.make_request(
            "anvil_setBalance",  # type: ignore[arg-type]
            [address, hex(10**18)],
        )

    return fund
