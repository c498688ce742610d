"""Contracts compile through py-solc-x (via the solc launcher) and run on the chain."""

from __future__ import annotations

import subprocess

from eth_account.signers.local import LocalAccount
from web3 import Web3

from contracts.compiler import LAUNCHER, SOLC_VERSION, compile_all, find_solc, get_contract


def test_launcher_answers_version_like_native_solc() -> None:
    out = subprocess.run([str(LAUNCHER), "--version"], capture_output=True, text=True, check=True)
    assert f"Version: {SOLC_VERSION}+" in out.stdout


def test_launcher_rejects_unknown_arguments_with_one_line() -> None:
    out = subprocess.run([str(LAUNCHER), "--bin", "x.sol"], capture_output=True, text=True)
    assert out.returncode == 2
    assert "unsupported argument" in out.stderr


def test_pinned_compiler_is_selected() -> None:
    _, version = find_solc()
    assert version.startswith(SOLC_VERSION + "+")


def test_compiled_token_deploys_and_answers_calls(
    w3: Web3, anvil_accounts: list[LocalAccount]
) -> None:
    compiled = get_contract("RoyaltyToken")
    assert compiled.bytecode.startswith("0x60")
    owner = anvil_accounts[0].address
    factory = w3.eth.contract(abi=compiled.abi, bytecode=compiled.bytecode)
    receipt = w3.eth.wait_for_transaction_receipt(
        factory.constructor(owner).transact({"from": owner})
    )
    token = w3.eth.contract(address=receipt["contractAddress"], abi=compiled.abi)
    assert token.functions.decimals().call() == 6
    holder = anvil_accounts[5].address
    w3.eth.wait_for_transaction_receipt(
        token.functions.mint(holder, 1_234_567).transact({"from": owner})
    )
    assert token.functions.balanceOf(holder).call() == 1_234_567


def test_compilation_is_cached_by_content() -> None:
    first = compile_all()
    second = compile_all()
    assert first["RoyaltyToken"].bytecode == second["RoyaltyToken"].bytecode
