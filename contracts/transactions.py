"""Connect to the chain, load the operator keys, and send transactions reliably.

:class:`Transactor` is the one way usefirst sends a transaction:

1. estimate gas first, so a revert surfaces as a decoded :class:`ContractRevert` and nothing is
   sent;
2. take the sender's in-process lock, pick the nonce (the node's pending count, never below the
   last nonce this process used), sign and send; the lock is held only that long;
3. call ``on_sent(tx_hash)`` (the ledger records the hash so it never sends the same thing twice);
4. wait for the receipt and ``confirmations`` blocks, with a timeout that raises
   :class:`ConfirmationTimeout` naming the hash.

Transient RPC failures (connection refused, timeouts, HTTP errors) are retried with exponential
backoff inside the HTTP provider, for every call including ``eth_sendRawTransaction``; a re-sent
raw transaction that the node already has is treated as sent.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import requests
from eth_account import Account
from eth_account.signers.local import LocalAccount
from web3 import Web3
from web3.contract.contract import ContractConstructor, ContractFunction
from web3.exceptions import ContractLogicError, TransactionNotFound, Web3RPCError
from web3.providers.rpc.utils import ExceptionRetryConfiguration
from web3.types import Nonce, TxParams, TxReceipt, Wei

from contracts.errors import (
    ChainConfigError,
    ChainUnavailable,
    ConfirmationTimeout,
    ContractRevert,
    TransactionReverted,
    decode_revert,
)
from ledger.settings import Settings, get_settings

log = logging.getLogger(__name__)

# Anvil's default accounts 0, 1 and 2 (mnemonic "test test ... junk"). Public knowledge: they
# are used only when the node reports the local chain id.
ANVIL_DEFAULT_KEYS: tuple[str, str, str] = (
    "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80",
    "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d",
    "0x5de4111afa1a4b94908f83103eb1f1706367c2e68ca870fc3fb9a804cdab365a",
)

OnSent = Callable[[str], None]


def _hex(value: bytes) -> str:
    return "0x" + bytes(value).hex()


def connect(settings: Settings | None = None, *, session: requests.Session | None = None) -> Web3:
    """A Web3 client for ``settings.effective_eth_rpc_url`` with retrying HTTP transport.

    ``session`` replaces the HTTP session (proxies, custom TLS). Raises ChainUnavailable if the
    node does not answer ``eth_chainId`` after the retries.
    """
    settings = settings or get_settings()
    provider = Web3.HTTPProvider(
        settings.effective_eth_rpc_url,
        session=session,
        request_kwargs={"timeout": settings.chain_rpc_timeout_s},
        exception_retry_configuration=ExceptionRetryConfiguration(
            errors=(requests.ConnectionError, requests.Timeout, requests.HTTPError),
            retries=max(1, settings.chain_rpc_retries),
            backoff_factor=settings.chain_rpc_backoff_s,
        ),
    )
    w3 = Web3(provider)
    try:
        w3.eth.chain_id  # noqa: B018 - a cheap call that proves the node answers
    except (requests.RequestException, OSError) as exc:
        raise ChainUnavailable(
            f"no EVM node answers at {settings.effective_eth_rpc_url} after "
            f"{settings.chain_rpc_retries} attempts: {exc}; start it (`usefirst up`) or fix "
            "ETH_RPC_URL"
        ) from exc
    return w3


@dataclass(frozen=True)
class ChainKeys:
    """The three operator accounts."""

    deployer: LocalAccount
    settler: LocalAccount
    guardian: LocalAccount


def load_keys(settings: Settings, chain_id: int) -> ChainKeys:
    """The deployer, settler and guardian accounts for ``chain_id``.

    Unset keys fall back to anvil's well-known accounts 0/1/2 only on the local chain
    (``settings.anvil_chain_id``); anywhere else every key is required and a missing one raises
    ChainConfigError naming the variable to set.
    """
    configured = {
        "deployer": settings.chain_deployer_private_key,
        "settler": settings.chain_settler_private_key,
        "guardian": settings.chain_guardian_private_key,
    }
    accounts: dict[str, LocalAccount] = {}
    for index, (role, secret) in enumerate(configured.items()):
        if secret is not None:
            key = secret.get_secret_value()
        elif chain_id == settings.anvil_chain_id:
            key = ANVIL_DEFAULT_KEYS[index]
        else:
            raise ChainConfigError(
                f"chain {chain_id} is not the local chain ({settings.anvil_chain_id}): set "
                f"USEFIRST_CHAIN_{role.upper()}_PRIVATE_KEY (no default keys outside anvil)"
            )
        try:
            accounts[role] = Account.from_key(key)
        except (ValueError, TypeError) as exc:
            raise ChainConfigError(
                f"USEFIRST_CHAIN_{role.upper()}_PRIVATE_KEY is not a valid private key"
            ) from exc
    return ChainKeys(**accounts)


@dataclass(frozen=True)
class TxResult:
    """A transaction that reached the required confirmations with status 1."""

    tx_hash: str
    block_number: int
    block_hash: str
    gas_used: int
    receipt: TxReceipt
    contract_address: str | None = None


_ALREADY_SENT_MARKERS = ("already known", "known transaction", "already imported")


class Transactor:
    """Sends transactions for any number of senders; safe to share between threads.

    Nonces are serialised per (chain id, sender) across every Transactor of the process.
    """

    _registry_lock = threading.Lock()
    _sender_locks: dict[tuple[int, str], threading.Lock] = {}  # noqa: RUF012 - process-wide
    _next_nonce: dict[tuple[int, str], int] = {}  # noqa: RUF012 - process-wide

    def __init__(
        self,
        w3: Web3,
        *,
        chain_id: int,
        confirmations: int = 1,
        timeout_s: float = 120.0,
        poll_interval_s: float = 0.2,
        gas_margin_bps: int = 2_000,
    ) -> None:
        if confirmations < 1:
            raise ChainConfigError(f"confirmations must be at least 1, got {confirmations}")
        self.w3 = w3
        self.chain_id = chain_id
        self.confirmations = confirmations
        self.timeout_s = timeout_s
        self.poll_interval_s = poll_interval_s
        self.gas_margin_bps = gas_margin_bps

    @classmethod
    def from_settings(cls, w3: Web3, settings: Settings, chain_id: int) -> Transactor:
        return cls(
            w3,
            chain_id=chain_id,
            confirmations=settings.chain_confirmations,
            timeout_s=settings.chain_tx_timeout_s,
            poll_interval_s=settings.chain_poll_interval_s,
            gas_margin_bps=settings.chain_gas_margin_bps,
        )

    # --- sending -------------------------------------------------------------------------

    def send(
        self,
        sender: LocalAccount,
        call: ContractFunction | ContractConstructor,
        *,
        on_sent: OnSent | None = None,
        value: int = 0,
        gas: int | None = None,
    ) -> TxResult:
        """Estimate, sign, send and confirm ``call`` from ``sender``.

        Raises ContractRevert (nothing sent) when estimation reverts, TransactionReverted when
        the mined transaction failed, ConfirmationTimeout when it is not confirmed in time.
        ``on_sent`` runs once the node accepted the transaction, before waiting.
        """
        tx: TxParams = {"from": sender.address, "value": Wei(value), "chainId": self.chain_id}
        if isinstance(call, ContractConstructor):
            tx["data"] = call.data_in_transaction
        else:
            tx["to"] = call.address
            tx["data"] = call._encode_transaction_data()
        if gas is None:
            gas = self._estimate(tx)
        tx["gas"] = gas
        tx.update(self._fees())  # type: ignore[typeddict-item]
        tx_hash = self._sign_and_send(sender, tx)
        if on_sent is not None:
            on_sent(tx_hash)
        try:
            return self.wait(tx_hash, call_for_reason=tx)
        except (ConfirmationTimeout, ChainUnavailable):
            # Forget the cached nonce: if the transaction was dropped (never mined, or lost
            # with the mempool of a node that restarted), later transactions of this sender
            # must not queue behind its gap.
            Transactor._next_nonce.pop((self.chain_id, sender.address), None)
            raise

    def _estimate(self, tx: TxParams) -> int:
        try:
            estimate = self.w3.eth.estimate_gas(tx)
        except ContractLogicError as exc:
            raise decode_revert(exc.data if isinstance(exc.data, str | bytes) else None) from exc
        except Web3RPCError as exc:
            data = _rpc_error_data(exc)
            if data is not None:
                raise decode_revert(data) from exc
            raise
        return estimate * (10_000 + self.gas_margin_bps) // 10_000

    def _fees(self) -> dict[str, int]:
        block = self.w3.eth.get_block("latest")
        base_fee = block.get("baseFeePerGas")
        if base_fee is None:
            return {"gasPrice": self.w3.eth.gas_price}
        try:
            priority = int(self.w3.eth.max_priority_fee)
        except Web3RPCError:
            priority = 1_000_000_000
        # Twice the base fee keeps the transaction valid through several full blocks.
        return {"maxFeePerGas": 2 * base_fee + priority, "maxPriorityFeePerGas": priority}

    def _sender_lock(self, address: str) -> threading.Lock:
        key = (self.chain_id, address)
        with Transactor._registry_lock:
            lock = Transactor._sender_locks.get(key)
            if lock is None:
                lock = Transactor._sender_locks[key] = threading.Lock()
            return lock

    def _sign_and_send(self, sender: LocalAccount, tx: TxParams) -> str:
        key = (self.chain_id, sender.address)
        with self._sender_lock(sender.address):
            pending = self.w3.eth.get_transaction_count(sender.address, "pending")
            # Some load-balanced nodes lag behind the transactions we just sent; never reuse a
            # nonce this process already signed with.
            nonce = max(pending, Transactor._next_nonce.get(key, 0))
            tx["nonce"] = Nonce(nonce)
            signed = sender.sign_transaction(dict(tx))  # type: ignore[arg-type]
            tx_hash = _hex(signed.hash)
            try:
                self.w3.eth.send_raw_transaction(signed.raw_transaction)
            except Web3RPCError as exc:
                # The provider retries a send whose answer was lost: the node then already has
                # the transaction ("already known"), or has even mined it ("nonce too low").
                # Either way it is ours and sent; anything else is a real failure. We never
                # re-sign with another nonce here: that could send the same call twice.
                message = str(exc).lower()
                if not any(marker in message for marker in _ALREADY_SENT_MARKERS):
                    if "nonce too low" not in message or not self._known(tx_hash):
                        Transactor._next_nonce.pop(key, None)
                        raise
            except (requests.RequestException, OSError) as exc:
                Transactor._next_nonce.pop(key, None)
                raise ChainUnavailable(f"could not send transaction {tx_hash}: {exc}") from exc
            Transactor._next_nonce[key] = nonce + 1
            log.info("sent %s from %s nonce %d", tx_hash, sender.address, nonce)
            return tx_hash

    def _known(self, tx_hash: str) -> bool:
        try:
            self.w3.eth.get_transaction(tx_hash)  # type: ignore[arg-type]
        except TransactionNotFound:
            return False
        return True

    # --- waiting -------------------------------------------------------------------------

    def wait(
        self,
        tx_hash: str,
        *,
        confirmations: int | None = None,
        timeout_s: float | None = None,
        call_for_reason: TxParams | None = None,
    ) -> TxResult:
        """Wait until ``tx_hash`` is mined with ``confirmations`` blocks (itself included).

        The receipt is re-read on every poll, so a transaction dropped by a reorg is waited for
        again rather than reported from a stale block. Raises ConfirmationTimeout,
        TransactionReverted, or ChainUnavailable when the node stops answering (after the
        provider's retries); the transaction may still be mined then.
        """
        needed = confirmations or self.confirmations
        limit = timeout_s if timeout_s is not None else self.timeout_s
        deadline = time.monotonic() + limit
        seen = 0
        # Start polling fast (a local node mines within milliseconds) and back off to
        # poll_interval_s so a slow chain is not hammered.
        delay_s = min(0.01, self.poll_interval_s)
        while True:
            try:
                receipt = self._receipt(tx_hash)
                if receipt is not None:
                    seen = self.w3.eth.block_number - receipt["blockNumber"] + 1
            except (requests.RequestException, OSError) as exc:
                raise ChainUnavailable(
                    f"the node stopped answering while waiting for transaction {tx_hash} "
                    f"({exc}); it may still be mined: look it up before sending anything again"
                ) from exc
            if receipt is not None and seen >= needed:
                return self._result(tx_hash, receipt, call_for_reason)
            if time.monotonic() >= deadline:
                raise ConfirmationTimeout(tx_hash, needed, limit, max(seen, 0))
            time.sleep(delay_s)
            delay_s = min(delay_s * 2, self.poll_interval_s)

    def _receipt(self, tx_hash: str) -> TxReceipt | None:
        try:
            return self.w3.eth.get_transaction_receipt(tx_hash)  # type: ignore[arg-type]
        except TransactionNotFound:
            return None

    def _result(self, tx_hash: str, receipt: TxReceipt, tx: TxParams | None) -> TxResult:
        if receipt["status"] != 1:
            reason: ContractRevert = TransactionReverted("UnknownRevert", tx_hash=tx_hash)
            if tx is not None:
                reason = self._replay_reason(tx, receipt, tx_hash)
            raise reason
        address = receipt.get("contractAddress")
        return TxResult(
            tx_hash=tx_hash,
            block_number=receipt["blockNumber"],
            block_hash=_hex(receipt["blockHash"]),
            gas_used=receipt["gasUsed"],
            receipt=receipt,
            contract_address=str(address) if address else None,
        )

    def _replay_reason(self, tx: TxParams, receipt: TxReceipt, tx_hash: str) -> ContractRevert:
        """Re-run a failed transaction as a call on its block's parent state to learn why."""
        call: TxParams = {k: v for k, v in tx.items() if k in ("from", "to", "data", "value")}  # type: ignore[assignment]
        try:
            self.w3.eth.call(call, block_identifier=receipt["blockNumber"] - 1)
        except ContractLogicError as exc:
            data = exc.data if isinstance(exc.data, str | bytes) else None
            return decode_revert(data, tx_hash=tx_hash, cls=TransactionReverted)
        except Web3RPCError:
            pass
        return TransactionReverted("UnknownRevert", tx_hash=tx_hash)

    # --- reads ---------------------------------------------------------------------------

    def call(self, fn: ContractFunction, *, sender: str | None = None) -> Any:
        """Run a view call; a revert raises a decoded ContractRevert."""
        try:
            return fn.call({"from": sender} if sender else None)
        except ContractLogicError as exc:
            raise decode_revert(exc.data if isinstance(exc.data, str | bytes) else None) from exc


def _rpc_error_data(exc: Web3RPCError) -> str | None:
    response = exc.rpc_response or {}
    error = response.get("error") if isinstance(response, dict) else None
    if isinstance(error, dict) and isinstance(error.get("data"), str):
        return str(error["data"])
    return None
