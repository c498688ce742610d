"""The Python chain client: idempotent deployment, keys, sending, confirmations, retries."""

from __future__ import annotations

import json
import re
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
import requests
from eth_account.signers.local import LocalAccount
from pydantic import SecretStr

from contracts.client import UsefirstChain, settlement_id_for
from contracts.deploy import deployment_path, ensure_deployed, load_deployment
from contracts.errors import (
    ChainConfigError,
    ChainUnavailable,
    ConfirmationTimeout,
    ContractRevert,
    DeploymentError,
    SettlementConflict,
    TransactionReverted,
)
from contracts.transactions import Transactor, connect, load_keys
from ledger.settings import Settings
from tests.contracts.conftest import STATEMENT_HASH, make_statement, publish


@pytest.fixture
def isolated(chain_settings: Settings, tmp_path: Path) -> Settings:
    """Settings with their own, empty deployment record directory."""
    return chain_settings.model_copy(update={"data_dir": tmp_path})


# --- deployment ----------------------------------------------------------------------------


def test_deploy_is_idempotent(isolated: Settings) -> None:
    w3 = connect(isolated)
    first = ensure_deployed(w3, settings=isolated)
    block = w3.eth.block_number
    second = ensure_deployed(w3, settings=isolated)
    assert second == first
    assert w3.eth.block_number == block  # nothing was sent
    record = json.loads(deployment_path(isolated, first.chain_id).read_text())
    for name in ("DatasetRegistry", "RoyaltySettlement", "RoyaltyToken"):
        entry = record["contracts"][name]
        assert set(entry) >= {"address", "tx_hash", "block_number", "code_hash"}
    assert record["settler"] == load_keys(isolated, first.chain_id).settler.address


def test_a_record_that_does_not_match_the_chain_is_redeployed(isolated: Settings) -> None:
    w3 = connect(isolated)
    first = ensure_deployed(w3, settings=isolated)
    path = deployment_path(isolated, first.chain_id)
    record = json.loads(path.read_text())
    # As on a fresh chain: the recorded address holds no code.
    record["contracts"]["RoyaltySettlement"]["address"] = "0x" + "00" * 19 + "01"
    path.write_text(json.dumps(record))
    second = ensure_deployed(w3, settings=isolated)
    assert second.settlement_address != first.settlement_address
    assert w3.eth.get_code(second.settlement_address)
    assert load_deployment(isolated, first.chain_id) == second


def test_a_changed_challenge_window_redeploys_on_the_local_chain(isolated: Settings) -> None:
    first = UsefirstChain.connect(isolated, deploy=True)
    changed = isolated.model_copy(update={"chain_challenge_window_s": 120})
    second = UsefirstChain.connect(changed, deploy=True)
    assert second.deployment.settlement_address != first.deployment.settlement_address
    assert second.settlement.functions.challengeWindow().call() == 120


def test_connect_without_a_deployment_says_how_to_deploy(isolated: Settings) -> None:
    with pytest.raises(DeploymentError, match="deploy first"):
        UsefirstChain.connect(isolated)


# --- keys ----------------------------------------------------------------------------------


def test_anvil_keys_are_the_default_only_on_the_local_chain(
    chain_settings: Settings, anvil_accounts: list[LocalAccount]
) -> None:
    keys = load_keys(chain_settings, chain_settings.anvil_chain_id)
    assert [keys.deployer.address, keys.settler.address, keys.guardian.address] == [
        a.address for a in anvil_accounts[:3]
    ]
    with pytest.raises(ChainConfigError, match="USEFIRST_CHAIN_DEPLOYER_PRIVATE_KEY"):
        load_keys(chain_settings, 1)


def test_configured_keys_are_used_and_all_are_required_off_anvil(
    chain_settings: Settings, anvil_accounts: list[LocalAccount]
) -> None:
    keys = {
        f"chain_{role}_private_key": SecretStr("0x" + anvil_accounts[i + 5].key.hex())
        for i, role in enumerate(("deployer", "settler", "guardian"))
    }
    configured = chain_settings.model_copy(update=keys)
    loaded = load_keys(configured, 1)
    assert loaded.settler.address == anvil_accounts[6].address
    partial = chain_settings.model_copy(
        update={"chain_deployer_private_key": keys["chain_deployer_private_key"]}
    )
    with pytest.raises(ChainConfigError, match="USEFIRST_CHAIN_SETTLER_PRIVATE_KEY"):
        load_keys(partial, 1)
    broken = chain_settings.model_copy(update={"chain_deployer_private_key": SecretStr("0x12")})
    with pytest.raises(ChainConfigError, match="not a valid private key"):
        load_keys(broken, 31337)


# --- sending -------------------------------------------------------------------------------


def test_on_sent_receives_the_hash_before_the_receipt_is_awaited(
    chain: UsefirstChain, monkeypatch: pytest.MonkeyPatch
) -> None:
    events: list[tuple[str, str]] = []
    original_wait = chain.transactor.wait

    def wait(tx_hash: str, **kwargs: Any) -> Any:
        events.append(("wait", tx_hash))
        return original_wait(tx_hash, **kwargs)

    monkeypatch.setattr(chain.transactor, "wait", wait)
    fn = chain.token().functions.mint(chain.keys.settler.address, 1)
    result = chain.transactor.send(
        chain.keys.deployer, fn, on_sent=lambda h: events.append(("sent", h))
    )
    assert events == [("sent", result.tx_hash), ("wait", result.tx_hash)]


def test_concurrent_sends_from_one_key_get_distinct_nonces(chain: UsefirstChain) -> None:
    deployer = chain.keys.deployer
    start = chain.w3.eth.get_transaction_count(deployer.address)
    results: list[str] = []
    errors: list[BaseException] = []

    def mint() -> None:
        try:
            fn = chain.token().functions.mint(chain.keys.guardian.address, 1)
            results.append(chain.transactor.send(deployer, fn).tx_hash)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=mint) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert len(set(results)) == 8
    assert chain.w3.eth.get_transaction_count(deployer.address) == start + 8


def test_a_reverted_transaction_names_its_custom_error(chain: UsefirstChain) -> None:
    statement = make_statement([3])
    publish(chain, statement)
    account = statement.lines[0][0]
    chain.claim(statement.settlement_id, account, 3, statement.proof(account))
    fn = chain.settlement.functions.claim(
        statement.settlement_id, account, 3, statement.proof(account)
    )
    # An explicit gas limit skips estimation, so the revert happens on chain.
    with pytest.raises(TransactionReverted) as excinfo:
        chain.transactor.send(chain.keys.settler, fn, gas=200_000)
    assert excinfo.value.error_name == "AlreadyClaimed"
    assert excinfo.value.tx_hash is not None


def test_waiting_for_confirmations_times_out_with_the_hash(chain: UsefirstChain) -> None:
    transactor = Transactor(
        chain.w3, chain_id=chain.chain_id, confirmations=3, timeout_s=0.5, poll_interval_s=0.05
    )
    fn = chain.token().functions.mint(chain.keys.guardian.address, 1)
    sent: list[str] = []
    with pytest.raises(ConfirmationTimeout) as excinfo:
        transactor.send(chain.keys.deployer, fn, on_sent=sent.append)
    assert excinfo.value.tx_hash == sent[0]
    assert "1 of 3 confirmations" in str(excinfo.value)
    # Once two more blocks arrive, the same transaction is confirmed.
    chain.w3.provider.make_request("anvil_mine", [2])  # type: ignore[arg-type]
    result = transactor.wait(sent[0])
    assert result.tx_hash == sent[0]


def test_confirmations_arrive_while_waiting(chain: UsefirstChain) -> None:
    transactor = Transactor(
        chain.w3, chain_id=chain.chain_id, confirmations=2, timeout_s=10, poll_interval_s=0.05
    )
    fn = chain.token().functions.mint(chain.keys.guardian.address, 1)
    miner = threading.Timer(
        0.3,
        lambda: chain.w3.provider.make_request("evm_mine", []),  # type: ignore[arg-type]
    )
    miner.start()
    try:
        result = transactor.send(chain.keys.deployer, fn)
    finally:
        miner.join()
    assert chain.w3.eth.block_number >= result.block_number + 1


class FlakySession(requests.Session):
    """Refuses the first ``failures`` requests like a node that is restarting."""

    def __init__(self, failures: int) -> None:
        super().__init__()
        self.failures = failures
        self.attempts = 0

    def post(self, *args: Any, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        self.attempts += 1
        if self.attempts <= self.failures:
            raise requests.ConnectionError("connection refused")
        return super().post(*args, **kwargs)


def test_transient_rpc_errors_are_retried(chain_settings: Settings) -> None:
    fast = chain_settings.model_copy(update={"chain_rpc_retries": 4, "chain_rpc_backoff_s": 0.01})
    session = FlakySession(failures=2)
    w3 = connect(fast, session=session)
    assert w3.eth.chain_id > 0
    assert session.attempts >= 3


class LostAnswerSession(requests.Session):
    """Delivers the first eth_sendRawTransaction but loses the node's answer (a timeout)."""

    def __init__(self) -> None:
        super().__init__()
        self.lost = 0

    def post(self, *args: Any, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        response = super().post(*args, **kwargs)
        body = kwargs.get("data") or b""
        if self.lost == 0 and b"eth_sendRawTransaction" in body:
            self.lost += 1
            raise requests.Timeout("read timed out")
        return response


def test_a_send_whose_answer_was_lost_is_not_sent_twice(chain: UsefirstChain) -> None:
    fast = chain.settings.model_copy(update={"chain_rpc_retries": 3, "chain_rpc_backoff_s": 0.01})
    session = LostAnswerSession()
    client = UsefirstChain.connect(fast, w3=connect(fast, session=session))
    deployer = client.keys.deployer.address
    before = client.w3.eth.get_transaction_count(deployer)
    result = client.mint_test_tokens(client.keys.guardian.address, 1)
    assert session.lost == 1
    assert client.w3.eth.get_transaction_count(deployer) == before + 1
    assert client.w3.eth.get_transaction(result.tx_hash)["nonce"] == before


def test_an_unreachable_node_fails_clearly_after_the_retries(chain_settings: Settings) -> None:
    dead = chain_settings.model_copy(
        update={
            "eth_rpc_url": "http://127.0.0.1:9",
            "chain_rpc_retries": 2,
            "chain_rpc_backoff_s": 0.01,
        }
    )
    started = time.monotonic()
    with pytest.raises(
        ChainUnavailable, match=re.escape("no EVM node answers at http://127.0.0.1:9")
    ):
        connect(dead)
    assert time.monotonic() - started < 10


# --- settlements through the client --------------------------------------------------------


def test_publish_is_idempotent_and_a_different_statement_conflicts(chain: UsefirstChain) -> None:
    statement = make_statement([11, 22])
    chain.mint_test_tokens(chain.keys.settler.address, 33)
    sent: list[str] = []
    first = chain.publish_settlement(
        statement.settlement_id, statement.tree.root, 33, STATEMENT_HASH, on_sent=sent.append
    )
    assert first.tx_hash == sent[0]
    again = chain.publish_settlement(
        statement.settlement_id, statement.tree.root, 33, STATEMENT_HASH, on_sent=sent.append
    )
    assert len(sent) == 1  # nothing was sent the second time
    assert again.record == first.record and again.tx_hash == first.tx_hash
    other = make_statement([33])
    with pytest.raises(SettlementConflict, match="never reused"):
        chain.publish_settlement(statement.settlement_id, other.tree.root, 33, STATEMENT_HASH)


def test_find_publish_reads_the_chain_after_a_restart(
    chain: UsefirstChain, chain_settings: Settings
) -> None:
    statement = make_statement([5])
    assert chain.find_publish(statement.settlement_id) is None
    sent: list[str] = []
    chain.mint_test_tokens(chain.keys.settler.address, 5)
    chain.publish_settlement(
        statement.settlement_id, statement.tree.root, 5, STATEMENT_HASH, on_sent=sent.append
    )
    # A new process: a new client from the same settings and deployment record.
    restarted = UsefirstChain.connect(chain.settings)
    found = restarted.find_publish(statement.settlement_id)
    assert found is not None
    assert found.tx_hash == sent[0]
    assert found.record.merkle_root == statement.tree.root


def test_a_revert_before_sending_leaves_no_transaction(chain: UsefirstChain) -> None:
    statement = make_statement([1])
    block = chain.w3.eth.block_number
    with pytest.raises(ContractRevert) as excinfo:
        chain.claim(statement.settlement_id, statement.lines[0][0], 1, [])
    assert excinfo.value.tx_hash is None
    assert chain.w3.eth.block_number == block


def test_settlement_ids_are_deterministic() -> None:
    model, period = uuid.uuid4(), uuid.uuid4()
    assert settlement_id_for(model, period) == settlement_id_for(str(model).upper(), str(period))
    assert settlement_id_for(model, period) != settlement_id_for(period, model)
    assert len(settlement_id_for("model-a", "2026-01")) == 32
