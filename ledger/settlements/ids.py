"""On-chain settlement ids of a period's statement, one per publication attempt.

The contract accepts an id once, ever (``AlreadyPublished``, also after a revocation). A period
whose settlement the guardian revoked is anchored again under the next attempt's id:

- attempt 0: ``settlement_id_for(model, period)`` = ``keccak256(abi.encode(string model,
  string period))``, the id every settlement had before re-anchoring existed;
- attempt n ≥ 1: ``keccak256(abi.encode(string model, string period, uint256 n))``.

UUIDs are used in their canonical lower-case text form, as ``settlement_id_for`` does. Owners
derive the same ids without the ledger (``verify.py`` looks for the newest attempt on chain).
"""

from __future__ import annotations

import uuid
from typing import Final

from eth_abi import encode as abi_encode
from eth_utils import keccak

from contracts.client import id_text, settlement_id_for

# Owners' tools probe at most this many attempts on chain; a period revoked this often needs a
# person, not another publication.
ATTEMPTS_MAX: Final = 16


def settlement_key_for(
    model_id: uuid.UUID | str, period_id: uuid.UUID | str, attempt: int = 0
) -> bytes:
    """The 32-byte settlement id of ``attempt`` (≥ 0) of a model's period."""
    if attempt < 0:
        raise ValueError(f"attempt must be >= 0, got {attempt}")
    if attempt == 0:
        return settlement_id_for(model_id, period_id)
    return keccak(
        abi_encode(
            ["string", "string", "uint256"], [id_text(model_id), id_text(period_id), attempt]
        )
    )
