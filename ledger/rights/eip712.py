"""The EIP-712 typed data of rights confirmations and revocations.

This module is the single definition shared by the off-chain ledger (which
verifies signatures before it counts a dataset) and the on-chain
``DatasetRegistry`` (which verifies the same signatures with itself as the
verifying contract). Keep both in step: the Solidity typehash strings in
``contracts/src/DatasetRegistry.sol`` must equal :data:`CONFIRMATION_TYPE` and
:data:`REVOCATION_TYPE` below.

Encodings:
- ``datasetId`` (bytes32): the ledger's dataset UUID as a 128-bit integer,
  big-endian, left-padded to 32 bytes (:func:`dataset_id_bytes32`).
- ``contentRoot`` and ``termsHash`` (bytes32): SHA-256 digests.
- ``allowedUses`` (uint8): bit mask, 1 = ``train``, 2 = ``rag``.
- ``coOwners``/``sharesBps``: co-owner addresses sorted ascending (as lower-case
  hex) with their shares in basis points, summing to 10,000.
- ``validFrom``/``validUntil`` (uint64): unix seconds; ``validUntil`` 0 = no end.
- ``nonce`` (uint256): the signer's current nonce; each accepted signature
  (confirmation or revocation) consumes it, so a signature cannot be replayed.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from eth_account.messages import SignableMessage, encode_typed_data
from eth_utils.crypto import keccak

USE_TRAIN = 1
USE_RAG = 2
USE_BITS = {"train": USE_TRAIN, "rag": USE_RAG}

CONFIRMATION_TYPE = (
    "RightsConfirmation(bytes32 datasetId,bytes32 contentRoot,bytes32 termsHash,uint8 allowedUses,"
    "address[] coOwners,uint16[] sharesBps,uint64 validFrom,uint64 validUntil,uint256 nonce)"
)
REVOCATION_TYPE = "RightsRevocation(bytes32 datasetId,uint256 nonce)"

MESSAGE_TYPES: dict[str, list[dict[str, str]]] = {
    "RightsConfirmation": [
        {"name": "datasetId", "type": "bytes32"},
        {"name": "contentRoot", "type": "bytes32"},
        {"name": "termsHash", "type": "bytes32"},
        {"name": "allowedUses", "type": "uint8"},
        {"name": "coOwners", "type": "address[]"},
        {"name": "sharesBps", "type": "uint16[]"},
        {"name": "validFrom", "type": "uint64"},
        {"name": "validUntil", "type": "uint64"},
        {"name": "nonce", "type": "uint256"},
    ],
    "RightsRevocation": [
        {"name": "datasetId", "type": "bytes32"},
        {"name": "nonce", "type": "uint256"},
    ],
}


EIP712_DOMAIN_FIELDS: list[dict[str, str]] = [
    {"name": "name", "type": "string"},
    {"name": "version", "type": "string"},
    {"name": "chainId", "type": "uint256"},
    {"name": "verifyingContract", "type": "address"},
]


@dataclass(frozen=True)
class Eip712Domain:
    name: str
    version: str
    chain_id: int
    verifying_contract: str

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "chainId": self.chain_id,
            "verifyingContract": self.verifying_contract,
        }


@dataclass(frozen=True)
class RightsConfirmation:
    dataset_id: bytes  # 32 bytes
    content_root: bytes  # 32 bytes
    terms_hash: bytes  # 32 bytes
    allowed_uses: int  # bit mask of USE_TRAIN / USE_RAG
    co_owners: tuple[str, ...]
    shares_bps: tuple[int, ...]
    valid_from: int
    valid_until: int
    nonce: int

    def message(self) -> dict[str, Any]:
        return {
            "datasetId": self.dataset_id,
            "contentRoot": self.content_root,
            "termsHash": self.terms_hash,
            "allowedUses": self.allowed_uses,
            "coOwners": list(self.co_owners),
            "sharesBps": list(self.shares_bps),
            "validFrom": self.valid_from,
            "validUntil": self.valid_until,
            "nonce": self.nonce,
        }


@dataclass(frozen=True)
class RightsRevocation:
    dataset_id: bytes
    nonce: int

    def message(self) -> dict[str, Any]:
        return {"datasetId": self.dataset_id, "nonce": self.nonce}


def dataset_id_bytes32(dataset_id: uuid.UUID | str) -> bytes:
    """The on-chain ``bytes32`` form of a ledger dataset UUID."""
    value = dataset_id if isinstance(dataset_id, uuid.UUID) else uuid.UUID(str(dataset_id))
    return value.int.to_bytes(32, "big")


def allowed_uses_mask(uses: set[str] | frozenset[str] | list[str] | tuple[str, ...]) -> int:
    mask = 0
    for use in uses:
        mask |= USE_BITS[use]
    return mask


def confirmation_signable(
    domain: Eip712Domain, confirmation: RightsConfirmation
) -> SignableMessage:
    return encode_typed_data(
        domain_data=domain.as_dict(),
        message_types={"RightsConfirmation": MESSAGE_TYPES["RightsConfirmation"]},
        message_data=confirmation.message(),
    )


def revocation_signable(domain: Eip712Domain, revocation: RightsRevocation) -> SignableMessage:
    return encode_typed_data(
        domain_data=domain.as_dict(),
        message_types={"RightsRevocation": MESSAGE_TYPES["RightsRevocation"]},
        message_data=revocation.message(),
    )


def typehash(type_string: str) -> bytes:
    return keccak(text=type_string)


def typed_data_document(
    domain: Eip712Domain, primary_type: str, message: dict[str, Any]
) -> dict[str, Any]:
    """The complete ``eth_signTypedData_v4`` document for ``message`` (JSON-ready).

    ``bytes`` values become ``0x`` hex; integers stay integers (JSON numbers are exact in
    Python, and wallets accept them). Signing this document with any EIP-712 wallet gives
    the signature the ledger and DatasetRegistry verify.
    """
    return {
        "types": {
            "EIP712Domain": EIP712_DOMAIN_FIELDS,
            primary_type: MESSAGE_TYPES[primary_type],
        },
        "primaryType": primary_type,
        "domain": domain.as_dict(),
        "message": {
            key: "0x" + value.hex() if isinstance(value, bytes) else value
            for key, value in message.items()
        },
    }
