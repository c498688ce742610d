"""The demo. Until the full story lands it runs the foundation smoke flow:
migrate, compile and deploy a contract, call it, and run a task on the worker."""

from __future__ import annotations

import time
import uuid

from rich.console import Console

from api import embedded
from api.embedded.process import SetupError
from ledger.settings import get_settings


def run_demo(console: Console) -> None:
    settings = get_settings()
    console.rule("[bold]usefirst smoke flow")
    console.print("1. starting services (reusing running ones) and migrating the database")
    embedded.up(settings)
    from ledger.db import current_revision

    console.print(f"   database at revision [bold]{current_revision(settings)}[/]")

    console.print("2. compiling RoyaltyToken with py-solc-x and deploying it to the chain")
    from web3 import Web3

    from contracts.compiler import compiler_version, get_contract

    compiled = get_contract("RoyaltyToken")
    w3 = Web3(Web3.HTTPProvider(settings.effective_eth_rpc_url))
    deployer = w3.eth.accounts[0]
    token = w3.eth.contract(abi=compiled.abi, bytecode=compiled.bytecode)
    tx_hash = token.constructor(deployer).transact({"from": deployer})
    receipt = w3.eth.wait_for_transaction_receipt(tx_hash)
    deployed = w3.eth.contract(address=receipt["contractAddress"], abi=compiled.abi)
    mint_hash = deployed.functions.mint(deployer, 1_000_000).transact({"from": deployer})
    w3.eth.wait_for_transaction_receipt(mint_hash)
    balance = deployed.functions.balanceOf(deployer).call()
    console.print(
        f"   compiler {compiler_version()}; token at {receipt['contractAddress']}; "
        f"minted balance {balance} base units"
    )

    console.print("3. running a task on the Celery worker")
    from api.tasks import ping

    nonce = uuid.uuid4().hex
    started = time.monotonic()
    result = ping.delay(nonce).get(timeout=60)
    if result["nonce"] != nonce:
        raise SetupError("the worker answered a different task; check the broker configuration")
    console.print(
        f"   worker pid {result['worker_pid']} answered in {time.monotonic() - started:.2f}s"
    )
    console.rule("[green]smoke flow complete")
