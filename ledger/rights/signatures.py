"""Signature checks for rights confirmations and revocations, as the registry does them.

Mirrors OpenZeppelin ``SignatureChecker.isValidSignatureNow`` used by DatasetRegistry:
first ECDSA (65 bytes ``r ‖ s ‖ v``, ``v`` in {27, 28}, low ``s``), and if that does not
recover the signer, ERC-1271 ``isValidSignature(bytes32, bytes)`` on the signer's contract
code. The chain is reached through a :class:`ChainReader` so callers (and tests) decide
whether and how: :class:`NoChain` treats every address as a plain key pair.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from eth_account import Account
from eth_account.messages import SignableMessage, _hash_eip191_message
from eth_utils import to_checksum_address

from ledger.errors import DomainError
from ledger.settings import Settings, get_settings

# Order of the secp256k1 group. Signatures with s > n/2 are the malleable twin of a
# low-s signature (EIP-2); like OpenZeppelin's ECDSA we accept only the low one.
SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
SECP256K1_HALF_N = SECP256K1_N // 2
ERC1271_MAGIC_VALUE = bytes.fromhex("1626ba7e")
ERC1271_ABI: list[dict[str, Any]] = [
    {
        "type": "function",
        "name": "isValidSignature",
        "stateMutability": "view",
        "inputs": [
            {"name": "hash", "type": "bytes32"},
            {"name": "signature", "type": "bytes"},
        ],
        "outputs": [{"name": "magicValue", "type": "bytes4"}],
    }
]


class ChainUnavailable(DomainError):
    """The chain could not be asked whether a signer is a contract wallet."""

    code = "chain_unavailable"
    http_status = 503
    title = "Chain unavailable"


class ChainReader(Protocol):
    """What signature checks need from the chain."""

    def has_code(self, address: str) -> bool:
        """Whether ``address`` holds contract code (a smart-contract wallet)."""
        ...

    def erc1271_accepts(self, address: str, digest: bytes, signature: bytes) -> bool:
        """Whether the wallet at ``address`` returns the ERC-1271 magic value."""
        ...


class NoChain:
    """Every address is a plain key pair; nothing is asked of a chain."""

    def has_code(self, address: str) -> bool:
        return False

    def erc1271_accepts(self, address: str, digest: bytes, signature: bytes) -> bool:
        return False


class Web3ChainReader:
    """Reads code and calls ERC-1271 through a web3 client."""

    def __init__(self, w3: Any, rpc_url: str = "the configured node") -> None:
        self.w3 = w3
        self.rpc_url = rpc_url

    @classmethod
    def from_settings(cls, settings: Settings | None = None) -> Web3ChainReader:
        """A reader on ``settings.effective_eth_rpc_url`` (connects on first use)."""
        from web3 import Web3

        settings = settings or get_settings()
        url = settings.effective_eth_rpc_url
        provider = Web3.HTTPProvider(url, request_kwargs={"timeout": settings.chain_rpc_timeout_s})
        return cls(Web3(provider), url)

    def _unavailable(self, address: str, exc: Exception) -> ChainUnavailable:
        return ChainUnavailable(
            f"could not ask the chain at {self.rpc_url} whether {address} is a contract wallet "
            f"(ERC-1271): {exc}; retry when the node is reachable"
        )

    def has_code(self, address: str) -> bool:
        from web3.exceptions import Web3RPCError

        try:
            return len(self.w3.eth.get_code(to_checksum_address(address))) > 0
        except (OSError, Web3RPCError) as exc:  # requests' errors are OSErrors
            raise self._unavailable(address, exc) from exc

    def erc1271_accepts(self, address: str, digest: bytes, signature: bytes) -> bool:
        from web3.exceptions import ContractLogicError, Web3RPCError

        contract = self.w3.eth.contract(address=to_checksum_address(address), abi=ERC1271_ABI)
        try:
            result = contract.functions.isValidSignature(digest, signature).call()
        except (ContractLogicError, Web3RPCError):
            # A reverting or non-conforming wallet does not accept the signature.
            return False
        return bytes(result) == ERC1271_MAGIC_VALUE


def typed_data_digest(signable: SignableMessage) -> bytes:
    """The 32-byte EIP-712 digest that is actually signed."""
    return bytes(_hash_eip191_message(signable))


def parse_signature(value: bytes | str) -> bytes | None:
    """Signature bytes from raw bytes or ``0x`` hex; None when it is neither."""
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value)
    if isinstance(value, str):
        text = value.strip()
        text = text[2:] if text.startswith(("0x", "0X")) else text
        try:
            return bytes.fromhex(text)
        except ValueError:
            return None
    return None


def ecdsa_problem(signature: bytes) -> tuple[str, str] | None:
    """``(code, message)`` when ``signature`` is not a canonical 65-byte ECDSA signature."""
    if len(signature) != 65:
        return (
            "signature_length",
            f"an ECDSA signature has 65 bytes (r, s, v), this one has {len(signature)}",
        )
    s = int.from_bytes(signature[32:64], "big")
    v = signature[64]
    if v not in (27, 28):
        return "signature_v", f"v is {v}; it must be 27 or 28 (sign with eth_signTypedData_v4)"
    if not 0 < s <= SECP256K1_HALF_N:
        return (
            "signature_high_s",
            "s is in the upper half of the curve order: this is the malleable twin of a "
            "valid signature (EIP-2); submit the signature as the wallet produced it",
        )
    return None


def ecdsa_recover(digest: bytes, signature: bytes) -> str | None:
    """The address that signed ``digest`` (checksummed), or None for a non-canonical or
    unrecoverable signature."""
    if ecdsa_problem(signature) is not None:
        return None
    try:
        return str(Account._recover_hash(digest, signature=signature))
    except Exception:  # eth_keys raises BadSignature/ValidationError for junk r or s
        return None


@dataclass(frozen=True)
class Verdict:
    """The outcome of checking one signature against one digest."""

    valid: bool
    method: str  # "ecdsa" or "erc1271"
    recovered: str | None = None  # ECDSA only
    problem: tuple[str, str] | None = None  # ECDSA format problem, if any


def check_signature(signer: str, digest: bytes, signature: bytes, chain: ChainReader) -> Verdict:
    """Whether ``signature`` is ``signer``'s over ``digest``, by ECDSA or ERC-1271.

    The chain is asked only when ECDSA does not recover ``signer``.
    """
    recovered = ecdsa_recover(digest, signature)
    if recovered is not None and recovered.lower() == signer.lower():
        return Verdict(True, "ecdsa", recovered)
    if chain.has_code(signer):
        return Verdict(chain.erc1271_accepts(signer, digest, signature), "erc1271")
    return Verdict(False, "ecdsa", recovered, ecdsa_problem(signature))
