"""Request and response models of the account (admin) and owner-address routes."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from ledger.access.models import ApiKey
from ledger.access.service import IssuedKey
from ledger.owners.models import Account, Owner

Role = Literal["owner", "model_team", "finance", "admin"]


class AccountIn(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "role": "owner",
                    "display_name": "Lumen Photo Archive",
                    "contact": "ops@lumen.example",
                }
            ]
        },
    )
    role: Role
    display_name: str = Field(min_length=1, max_length=200)
    contact: str | None = Field(default=None, max_length=320, description="E-mail or similar.")


class AccountOut(BaseModel):
    id: uuid.UUID
    role: str
    display_name: str
    contact: str | None
    created_at: datetime | None
    disabled_at: datetime | None = Field(description="Set once disabled: its keys stop working.")


class ApiKeyIn(BaseModel):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"label": "ci pipeline"}]}
    )
    label: str = Field(default="", max_length=200, description="Where the key is used.")


class ApiKeyOut(BaseModel):
    """A key as listed: never its secret, which is stored only as a hash."""

    id: uuid.UUID
    account_id: uuid.UUID
    prefix: str = Field(description="Identifies the key in logs: `uf_<prefix>_…`.")
    label: str
    created_at: datetime | None
    last_used_at: datetime | None
    revoked_at: datetime | None


class ApiKeyIssuedOut(ApiKeyOut):
    """A new key. ``key`` is the secret, shown in this response only."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "id": "0d3c1e52-8f7a-4b6e-9c2d-1a2b3c4d5e6f",
                    "account_id": "5b1f0e2a-3c4d-4e5f-8a9b-0c1d2e3f4a5b",
                    "prefix": "3f9a1c7e",
                    "label": "ci pipeline",
                    "created_at": "2026-03-01T09:00:00Z",
                    "last_used_at": None,
                    "revoked_at": None,
                    "key": "uf_3f9a1c7e_Zq4…",
                }
            ]
        }
    )
    key: str | None = Field(
        description="The API key, shown once. Null when this response is an idempotent "
        "replay: the secret is never stored, so issue a new key if it was lost."
    )


class AddressChallengeOut(BaseModel):
    address: str
    message: str = Field(
        description="Sign this text with the address (EIP-191 `personal_sign`) and send the "
        "signature to `POST /v1/owners/addresses`."
    )


class OwnerAddressIn(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "address": "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed",
                    "display_name": "Lumen treasury",
                    "signature": "0x6f1c…1b",
                }
            ]
        },
    )
    address: str = Field(description="EIP-55 checksummed or single-case hex.")
    signature: str = Field(
        description="The address's EIP-191 signature of the challenge text (0x hex)."
    )
    display_name: str | None = Field(default=None, max_length=200)
    contact: str | None = Field(default=None, max_length=320)


class OwnerAddressOut(BaseModel):
    owner_id: uuid.UUID
    address: str
    display_name: str
    contact: str | None
    created_at: datetime | None


# --- from ledger values -------------------------------------------------------------------


def account_out(account: Account) -> AccountOut:
    return AccountOut.model_validate(account, from_attributes=True)


def api_key_out(key: ApiKey) -> ApiKeyOut:
    return ApiKeyOut.model_validate(key, from_attributes=True)


def issued_key_out(issued: IssuedKey) -> ApiKeyIssuedOut:
    """The new key with its secret: return it to the caller once, store it nowhere."""
    return ApiKeyIssuedOut(**api_key_out(issued.record).model_dump(), key=issued.plaintext)


def owner_address_out(owner: Owner) -> OwnerAddressOut:
    return OwnerAddressOut(
        owner_id=owner.id,
        address=owner.address,
        display_name=owner.display_name,
        contact=owner.contact,
        created_at=owner.created_at,
    )
