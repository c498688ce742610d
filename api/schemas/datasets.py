"""Request and response models of the dataset, rights and dispute routes.

Request models fix the shape (types, unknown fields refused); the meaning (addresses,
licences, shares, manifests, dates) is checked by ``ledger.datasets.service``, which
reports every invalid field with its own code.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictInt

from ledger.datasets.models import Dataset
from ledger.datasets.queries import DatasetView, PeriodUsage
from ledger.datasets.service import uses_from_mask
from ledger.rights.service import RightsResult, TypedData

_ADDRESS = "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed"
_CO_OWNER = "0xfB6916095ca1df60bB79Ce92cE3Ea74c37c5d359"
_DATASET_ID = "8f14e45f-ceea-467e-9a3b-2c8d5f6a7b90"
_SHA = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"

DATASET_EXAMPLE: dict[str, Any] = {
    "registrant": _ADDRESS,
    "name": "Lumen street photography 2019-2024",
    "description": "48,000 captioned photographs, JPEG with JSONL captions.",
    "licence": "CC-BY-4.0",
    "allowed_uses": ["train", "rag"],
    "valid_from": "2026-01-01T00:00:00Z",
    "valid_until": None,
    "files": [
        {"path": "captions.jsonl", "size": 1_048_576, "sha256": _SHA},
        {"path": "images/part-0001.tar", "size": 734_003_200, "sha256": "ab" * 32},
    ],
    "co_owners": [
        {"address": _ADDRESS, "share_bps": 7_000, "display_name": "Lumen"},
        {"address": _CO_OWNER, "share_bps": 3_000, "display_name": "A. Photographer"},
    ],
}


class FileIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    path: str = Field(description="Relative POSIX path inside the dataset.")
    size: StrictInt = Field(description="Bytes.")
    sha256: str = Field(description="64 hex digits.")


class CoOwnerIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    address: str = Field(description="The co-owner's EVM address; it signs and is paid.")
    share_bps: StrictInt = Field(description="Basis points; the shares sum to 10,000.")
    display_name: str | None = Field(default=None, max_length=200)


class DatasetIn(BaseModel):
    """A new dataset. Give ``files`` (from ``usefirst dataset fingerprint --json``) or a
    ``croissant`` document, whose name, description, licence and files are used where the
    request leaves them out."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [DATASET_EXAMPLE]})
    registrant: str = Field(
        description="One of your owner addresses, and a co-owner of the dataset."
    )
    name: str | None = None
    description: str | None = None
    licence: str | None = Field(
        default=None, description="SPDX expression, or LicenseRef-<name> with a terms document."
    )
    terms_document_base64: str | None = Field(
        default=None, description="The terms text (base64); required for LicenseRef- licences."
    )
    allowed_uses: list[str] = Field(description="`train` and/or `rag`.")
    valid_from: datetime = Field(description="With a time zone; whole seconds are signed.")
    valid_until: datetime | None = None
    files: list[FileIn] | None = None
    content_root: str | None = Field(
        default=None, description="If given, must equal the root computed from the files."
    )
    co_owners: list[CoOwnerIn]
    croissant: dict[str, Any] | None = Field(
        default=None, description="An MLCommons Croissant JSON-LD document."
    )


class DatasetUpdateIn(BaseModel):
    """Only the fields given change. Anything co-owners sign (files, licence or terms
    document, allowed uses, validity, co-owners and shares) starts a new terms version that
    must be signed again; ``renew`` starts one without a change (after a revocation)."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"licence": "CC-BY-NC-4.0"},
                {"co_owners": DATASET_EXAMPLE["co_owners"]},
                {"renew": True},
            ]
        },
    )
    name: str | None = None
    description: str | None = None
    licence: str | None = None
    terms_document_base64: str | None = None
    allowed_uses: list[str] | None = None
    valid_from: datetime | None = None
    valid_until: datetime | None = None
    files: list[FileIn] | None = None
    content_root: str | None = None
    co_owners: list[CoOwnerIn] | None = None
    croissant: dict[str, Any] | None = None
    renew: bool = False


class DatasetSummaryOut(BaseModel):
    id: uuid.UUID
    name: str
    status: str = Field(description="pending_signatures, confirmed, disputed, revoked or rejected.")
    licence: str
    allowed_uses: list[str]
    terms_version: int
    content_root: str
    file_count: int
    total_bytes: int
    valid_from: datetime
    valid_until: datetime | None
    created_at: datetime | None
    updated_at: datetime | None


class CoOwnerOut(BaseModel):
    address: str
    share_bps: int
    display_name: str
    confirmed: bool = Field(description="Signed the current terms version.")


class DatasetOut(DatasetSummaryOut):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "id": _DATASET_ID,
                    "name": DATASET_EXAMPLE["name"],
                    "status": "pending_signatures",
                    "licence": "CC-BY-4.0",
                    "allowed_uses": ["train", "rag"],
                    "terms_version": 1,
                    "content_root": _SHA,
                    "file_count": 2,
                    "total_bytes": 735_051_776,
                    "valid_from": "2026-01-01T00:00:00Z",
                    "valid_until": None,
                    "created_at": "2026-02-01T10:00:00Z",
                    "updated_at": "2026-02-01T10:00:00Z",
                    "description": DATASET_EXAMPLE["description"],
                    "registrant": _ADDRESS,
                    "terms_hash": "c3" * 32,
                    "terms_document_sha256": None,
                    "co_owners": [
                        {**DATASET_EXAMPLE["co_owners"][0], "confirmed": True},
                        {**DATASET_EXAMPLE["co_owners"][1], "confirmed": False},
                    ],
                    "required_signers": [_ADDRESS, _CO_OWNER],
                    "missing_signers": [_CO_OWNER],
                    "open_disputes": [],
                    "confirmed_at": None,
                    "revoked_at": None,
                }
            ]
        }
    )
    description: str
    registrant: str
    terms_hash: str
    terms_document_sha256: str | None
    co_owners: list[CoOwnerOut]
    required_signers: list[str] = Field(
        description="Who must confirm the current terms (current co-owners, plus those of "
        "the last confirmed version: nobody loses a share without signing)."
    )
    missing_signers: list[str]
    open_disputes: list[uuid.UUID]
    confirmed_at: datetime | None
    revoked_at: datetime | None


class FileOut(BaseModel):
    path: str
    size: int
    sha256: str


class TypedDataOut(BaseModel):
    kind: Literal["confirmation", "revocation"]
    dataset_id: uuid.UUID
    terms_version: int
    signer: str
    nonce: int = Field(description="The signer's next nonce, already in `typed_data.message`.")
    digest: str = Field(description="The EIP-712 digest (0x hex) the signature is over.")
    typed_data: dict[str, Any] = Field(
        description="Pass unchanged to `eth_signTypedData_v4` (types, primaryType, domain, "
        "message)."
    )


class SignatureIn(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"signer": _CO_OWNER, "signature": "0x" + "1f" * 65, "nonce": 0}]
        },
    )
    signer: str = Field(description="The co-owner address that signed.")
    signature: str = Field(description="65-byte ECDSA (0x hex), or an ERC-1271 wallet's bytes.")
    nonce: StrictInt = Field(ge=0, description="The nonce in the signed message.")
    domain: dict[str, Any] | None = Field(
        default=None,
        description="The EIP-712 domain signed in, if not the one typed-data returned; a "
        "different one is refused naming the differing field.",
    )


class RightsResultOut(BaseModel):
    dataset_id: uuid.UUID
    kind: Literal["confirmation", "revocation"]
    signer: str
    nonce: int
    terms_version: int
    digest: str
    accepted_at: datetime | None
    replayed: bool = Field(description="True: this signature had been accepted before.")
    dataset_status: str
    missing_signers: list[str]


class TrainingUsageOut(BaseModel):
    unit: str
    quantity: int = Field(description="Σ quantity × epochs.")
    events: int


class PeriodUsageOut(BaseModel):
    period_id: uuid.UUID
    period: str = Field(description="YYYY-MM (UTC month).")
    period_state: str
    model_id: uuid.UUID
    model_name: str
    training: list[TrainingUsageOut]
    retrieval_hits: int = Field(description="Chunks of this dataset returned, at any rank.")


class DisputeOut(BaseModel):
    id: uuid.UUID
    dataset_id: uuid.UUID = Field(description="The dataset whose claim is disputed.")
    conflicting_dataset_id: uuid.UUID
    content_root: str
    status: Literal["open", "resolved"]
    resolution: str | None
    resolution_note: str | None
    opened_at: datetime | None
    resolved_at: datetime | None


class ResolveIn(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "resolution": "upheld",
                    "note": "Registrant showed the 2019 contract with the photographer.",
                }
            ]
        },
    )
    resolution: Literal["upheld", "rejected"] = Field(
        description="upheld: the disputed dataset's claim stands; rejected: it is rejected."
    )
    note: str = Field(min_length=1, max_length=5_000, description="Why; kept for audit.")


# --- from ledger values -------------------------------------------------------------------


def dataset_summary(dataset: Dataset) -> DatasetSummaryOut:
    return DatasetSummaryOut(**_summary_fields(dataset))


def _summary_fields(dataset: Dataset) -> dict[str, Any]:
    return {
        "id": dataset.id,
        "name": dataset.name,
        "status": dataset.status,
        "licence": dataset.licence,
        "allowed_uses": list(uses_from_mask(dataset.allowed_uses)),
        "terms_version": dataset.terms_version,
        "content_root": dataset.content_root,
        "file_count": dataset.file_count,
        "total_bytes": dataset.total_bytes,
        "valid_from": dataset.valid_from,
        "valid_until": dataset.valid_until,
        "created_at": dataset.created_at,
        "updated_at": dataset.updated_at,
    }


def dataset_out(view: DatasetView) -> DatasetOut:
    dataset = view.dataset
    return DatasetOut(
        **_summary_fields(dataset),
        description=dataset.description,
        registrant=view.registrant,
        terms_hash=dataset.terms_hash,
        terms_document_sha256=dataset.terms_document_sha256,
        co_owners=[CoOwnerOut(**c.__dict__) for c in view.co_owners],
        required_signers=list(view.required_signers),
        missing_signers=list(view.missing_signers),
        open_disputes=list(view.open_dispute_ids),
        confirmed_at=dataset.confirmed_at,
        revoked_at=dataset.revoked_at,
    )


def typed_data_out(typed: TypedData) -> TypedDataOut:
    return TypedDataOut(
        kind=typed.kind,  # type: ignore[arg-type]
        dataset_id=typed.dataset_id,
        terms_version=typed.terms_version,
        signer=typed.signer,
        nonce=typed.nonce,
        digest=typed.digest,
        typed_data=typed.document,
    )


def rights_out(result: RightsResult) -> RightsResultOut:
    record = result.signature
    return RightsResultOut(
        dataset_id=record.dataset_id,
        kind=record.kind,  # type: ignore[arg-type]
        signer=record.signer,
        nonce=int(record.nonce),
        terms_version=record.terms_version,
        digest=record.digest,
        accepted_at=record.accepted_at,
        replayed=result.replayed,
        dataset_status=result.dataset.status,
        missing_signers=list(result.missing_signers),
    )


def period_usage_out(usage: PeriodUsage) -> PeriodUsageOut:
    return PeriodUsageOut(
        period_id=usage.period_id,
        period=usage.period_key,
        period_state=usage.period_state,
        model_id=usage.model_id,
        model_name=usage.model_name,
        training=[
            TrainingUsageOut(unit=unit, quantity=quantity, events=events)
            for unit, (quantity, events) in sorted(usage.training.items())
        ],
        retrieval_hits=usage.retrieval_hits,
    )
