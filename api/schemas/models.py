"""Request and response models of the model and agreement routes."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, StrictInt


class ModelIn(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"name": "atlas-7b", "description": "Instruction-tuned 7B model", "kind": "model"}
            ]
        },
    )
    name: str = Field(min_length=1, max_length=200)
    description: str = Field(default="", max_length=20_000)
    kind: Literal["model", "rag_app"] = "model"


class ModelOut(BaseModel):
    id: uuid.UUID
    account_id: uuid.UUID
    name: str
    description: str
    kind: str
    created_at: datetime | None


class AgreementIn(BaseModel):
    """The next agreement version. A period uses the version in force at its start."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "royalty_rate_bps": 1_000,
                    "training_share_bps": 6_000,
                    "min_payout_minor": 500,
                    "currency": "EUR",
                    "effective_from": "2026-04-01T00:00:00Z",
                    "training_unit": "tokens",
                    "retrieval_policy": "rank-discount/v1",
                }
            ]
        },
    )
    royalty_rate_bps: StrictInt = Field(description="Share of revenue paid as royalties (bps).")
    training_share_bps: StrictInt = Field(
        description="Share of the royalty pool for training use; retrieval gets the rest."
    )
    min_payout_minor: StrictInt = Field(
        description="Smaller balances carry forward; minor units of `currency`."
    )
    currency: str = Field(description="ISO 4217 code in use today, e.g. EUR.")
    effective_from: datetime = Field(description="Not before the previous version's.")
    training_unit: str = Field(default="tokens", description="tokens, samples or bytes.")
    retrieval_policy: str = Field(
        default="uniform/v1", description="uniform/v1 or rank-discount/v1."
    )


class AgreementOut(BaseModel):
    id: uuid.UUID
    model_id: uuid.UUID
    version: int
    royalty_rate_bps: int
    training_share_bps: int
    min_payout_minor: int
    currency: str
    currency_exponent: int = Field(description="ISO 4217 minor-unit exponent (EUR 2, JPY 0).")
    training_unit: str
    retrieval_policy: str
    effective_from: datetime
    created_at: datetime | None
