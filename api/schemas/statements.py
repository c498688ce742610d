"""Response models of owner statements and claim data."""

from __future__ import annotations

import uuid
from typing import Any

from pydantic import AliasChoices, BaseModel, ConfigDict, Field

from ledger.owners.queries import ClaimData, OwnerStatementLine

_ADDRESS = "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed"


class StatementLineOut(BaseModel):
    """One payee's line of one closed period. Amounts are minor units of ``currency``:
    ``accrued + carry_in + adjustment = payable + carried_forward``."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "period_id": "3b9d2f1e-7c6a-4e5b-8d9c-0a1b2c3d4e5f",
                    "period": "2026-03",
                    "period_state": "anchored",
                    "model_id": "6a0d7b5e-3c1f-4e2a-9b8c-1d2e3f4a5b6c",
                    "model_name": "atlas-7b",
                    "currency": "EUR",
                    "address": _ADDRESS,
                    "accrued_minor": 12_345,
                    "carry_in_minor": 0,
                    "adjustment_minor": 0,
                    "payable_minor": 12_345,
                    "carried_forward_minor": 0,
                    "breakdown": [
                        {
                            "dataset_id": "8f14e45f-ceea-467e-9a3b-2c8d5f6a7b90",
                            "kind": "training",
                            "weight": "3000",
                            "total_weight": "3000",
                            "sub_pool_minor": "17636",
                            "dataset_amount_minor": "17636",
                            "share_bps": "7000",
                            "amount_minor": "12345",
                            "rollup_ids": ["…"],
                        }
                    ],
                    "statement_hash": "5e" * 32,
                }
            ]
        }
    )
    period_id: uuid.UUID
    period: str = Field(
        description="YYYY-MM (UTC month).",
        validation_alias=AliasChoices("period", "period_key"),
    )
    period_state: str = Field(description="closed, anchored or paid.")
    model_id: uuid.UUID
    model_name: str
    currency: str
    address: str
    accrued_minor: int
    carry_in_minor: int
    adjustment_minor: int
    payable_minor: int
    carried_forward_minor: int
    breakdown: list[dict[str, Any]] = Field(
        description="The line's sources as in the canonical statement: per dataset and kind "
        "(training, retrieval) the weight, the dataset's amount and your share (numbers as "
        "decimal strings, weights as exact fractions)."
    )
    statement_hash: str | None = Field(description="SHA-256 of the canonical statement JSON.")


class StatementDetailOut(StatementLineOut):
    explain: str = Field(
        description="Every step from revenue to this line's payable amount, in words."
    )


class ClaimOut(BaseModel):
    """Call ``claim(settlement_key, account, amount_units, proof)`` on ``contract_address``."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "period_id": "3b9d2f1e-7c6a-4e5b-8d9c-0a1b2c3d4e5f",
                    "settlement_key": "0x" + "4d" * 32,
                    "settlement_state": "confirmed",
                    "contract_address": "0xe7f1725E7734CE288F8367e1Bb143E90bb3F0512",
                    "chain_id": 31337,
                    "token": "0x5FbDB2315678afecb367f032d93F642f64180aa3",
                    "merkle_root": "0x" + "7a" * 32,
                    "leaf": {"account": _ADDRESS, "amount_units": "123450000000000000000"},
                    "payable_minor": 12_345,
                    "proof": ["0x" + "11" * 32, "0x" + "22" * 32],
                    "claimed": False,
                    "claim_tx_hash": None,
                    "claimable": True,
                }
            ]
        }
    )
    period_id: uuid.UUID
    settlement_key: str = Field(description="bytes32 (0x hex) naming the settlement on chain.")
    settlement_state: str = Field(description="prepared, sent, confirmed (claimable).")
    contract_address: str
    chain_id: int
    token: str = Field(description="The ERC-20 paid out.")
    merkle_root: str
    leaf: dict[str, str] = Field(
        description="`account` and `amount_units` (token base units, a decimal string: "
        "uint256 does not fit a JSON number safely)."
    )
    payable_minor: int
    proof: list[str] = Field(description="Sibling hashes, leaf to root (0x hex).")
    claimed: bool
    claim_tx_hash: str | None
    claimable: bool = Field(description="Confirmed on chain and not claimed yet.")


# --- from ledger values -------------------------------------------------------------------


def statement_line_out(line: OwnerStatementLine) -> StatementLineOut:
    return StatementLineOut.model_validate(line, from_attributes=True)


def claim_out(claim: ClaimData) -> ClaimOut:
    return ClaimOut(
        period_id=claim.period_id,
        settlement_key=claim.settlement_key,
        settlement_state=claim.settlement_state,
        contract_address=claim.contract_address,
        chain_id=claim.chain_id,
        token=claim.token_address,
        merkle_root=claim.merkle_root,
        leaf={"account": claim.account, "amount_units": str(claim.amount_units)},
        payable_minor=claim.payable_minor,
        proof=claim.proof,
        claimed=claim.claimed,
        claim_tx_hash=claim.claim_tx_hash,
        claimable=claim.claimable,
    )
