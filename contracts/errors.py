"""Errors of the chain layer, each with a stable machine ``code``, and revert decoding.

Contract reverts arrive as raw ABI-encoded custom errors; :func:`decode_revert` turns them into
``ContractRevert(error_name, args)`` using the ABIs of every contract we compile (our contracts,
the OpenZeppelin errors they inherit, and the tokens whose errors bubble up through SafeERC20).
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from eth_abi import decode as abi_decode
from eth_utils import keccak, to_checksum_address


class ChainError(RuntimeError):
    """Base of every chain-layer error."""

    code = "chain_error"


class ChainConfigError(ChainError):
    """Settings do not allow talking to this chain (missing keys, token, RPC URL)."""

    code = "chain_config"


class ChainUnavailable(ChainError):
    """The RPC node did not answer, even after retries."""

    code = "chain_unavailable"


class DeploymentError(ChainError):
    """No usable deployment of the usefirst contracts on this chain."""

    code = "chain_deployment"


class ContractRevert(ChainError):
    """A call or transaction reverted; ``error_name``/``args`` name the custom error.

    Raised before anything is sent when gas estimation reverts, so nothing reached the chain
    unless ``tx_hash`` is set.
    """

    code = "contract_revert"

    def __init__(
        self,
        error_name: str,
        args: tuple[Any, ...] = (),
        *,
        raw: str = "",
        tx_hash: str | None = None,
    ) -> None:
        self.error_name = error_name
        self.error_args = args
        self.raw = raw
        self.tx_hash = tx_hash
        where = f" in transaction {tx_hash}" if tx_hash else ""
        rendered = ", ".join(_render(a) for a in args)
        super().__init__(f"contract reverted{where}: {error_name}({rendered})")


class TransactionReverted(ContractRevert):
    """A mined transaction has status 0 (the revert happened on chain, gas was spent)."""

    code = "transaction_reverted"


class ConfirmationTimeout(ChainError):
    """A sent transaction did not reach the required confirmations in time.

    The transaction may still be mined later: check ``tx_hash`` before sending anything again.
    """

    code = "chain_confirmation_timeout"

    def __init__(self, tx_hash: str, confirmations: int, timeout_s: float, seen: int) -> None:
        self.tx_hash = tx_hash
        self.confirmations = confirmations
        self.timeout_s = timeout_s
        self.seen = seen
        super().__init__(
            f"transaction {tx_hash} has {seen} of {confirmations} confirmations after "
            f"{timeout_s:g} s; it may still be mined: look it up before re-sending, or raise "
            "USEFIRST_CHAIN_TX_TIMEOUT_S if the chain is slow"
        )


class SettlementConflict(ChainError):
    """The settlement id is already published on chain with different contents."""

    code = "settlement_conflict"


def _render(value: Any) -> str:
    if isinstance(value, bytes):
        return "0x" + value.hex()
    return repr(value) if isinstance(value, str) else str(value)


def _canonical_type(item: dict[str, Any]) -> str:
    kind = str(item["type"])
    if kind.startswith("tuple"):
        inner = ",".join(_canonical_type(c) for c in item["components"])
        return f"({inner}){kind[len('tuple') :]}"
    return kind


@lru_cache(maxsize=1)
def _error_table() -> dict[bytes, tuple[str, list[str]]]:
    from contracts.compiler import compile_all

    table: dict[bytes, tuple[str, list[str]]] = {}
    for compiled in compile_all().values():
        for item in compiled.abi:
            if item.get("type") != "error":
                continue
            types = [_canonical_type(i) for i in item.get("inputs", [])]
            signature = f"{item['name']}({','.join(types)})"
            table[keccak(text=signature)[:4]] = (item["name"], types)
    # Solidity's built-in Error(string) and Panic(uint256).
    table[keccak(text="Error(string)")[:4]] = ("Error", ["string"])
    table[keccak(text="Panic(uint256)")[:4]] = ("Panic", ["uint256"])
    return table


def decode_revert(
    data: str | bytes | None,
    *,
    tx_hash: str | None = None,
    cls: type[ContractRevert] = ContractRevert,
) -> ContractRevert:
    """Decode raw revert data into ``cls`` (error name ``UnknownRevert`` for a new selector)."""
    if data is None:
        raw = b""
    elif isinstance(data, str):
        text = data[2:] if data.startswith("0x") else data
        try:
            raw = bytes.fromhex(text)
        except ValueError:
            return cls("UnknownRevert", (data,), raw=data, tx_hash=tx_hash)
    else:
        raw = bytes(data)
    raw_hex = "0x" + raw.hex()
    if len(raw) < 4:
        return cls("EmptyRevert", (), raw=raw_hex, tx_hash=tx_hash)
    entry = _error_table().get(raw[:4])
    if entry is None:
        return cls("UnknownRevert", (raw_hex,), raw=raw_hex, tx_hash=tx_hash)
    name, types = entry
    try:
        decoded = abi_decode(types, raw[4:])
        # Checksummed, like every address web3 returns elsewhere.
        args = tuple(
            to_checksum_address(v) if t == "address" else v
            for t, v in zip(types, decoded, strict=True)
        )
    except Exception:  # malformed payload: keep the raw bytes rather than fail the decode
        return cls(name, (raw_hex,), raw=raw_hex, tx_hash=tx_hash)
    return cls(name, args, raw=raw_hex, tx_hash=tx_hash)
