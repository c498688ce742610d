"""What the SDK's methods return: pydantic models of the server's responses.

Every model accepts fields it does not know (``extra="allow"``), so an SDK keeps
working against a newer server; unknown fields are reachable as attributes and in
``model_dump()``. Times are timezone-aware datetimes, ids UUIDs, money ``int`` minor
units (``*_minor``), rates basis points (``*_bps``).
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict

T = TypeVar("T")


class ApiModel(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)


class Page(ApiModel, Generic[T]):
    """One page of a list; pass ``next_cursor`` as ``cursor`` for the next one."""

    items: list[T]
    next_cursor: str | None = None


class Me(ApiModel):
    account_id: uuid.UUID
    role: str
    display_name: str
    key_prefix: str
    owner_addresses: list[str] = []


class EventResult(ApiModel):
    """The outcome of one usage event, by its position ``index`` in the batch."""

    index: int
    event_id: str | None
    status: Literal["accepted", "duplicate", "rejected"]
    code: str | None = None
    message: str | None = None
    field: str | None = None


class UsageResult(ApiModel):
    """The outcome of one usage batch: counts plus one result per event, in order."""

    kind: str  # "training" | "retrieval"
    model_id: uuid.UUID | None = None
    received: int | None = None
    accepted: int
    duplicates: int
    rejected: int
    results: list[EventResult]


class TrainingUsage(ApiModel):
    unit: str
    quantity: int  # Σ quantity × epochs
    events: int


class DatasetUsage(ApiModel):
    dataset_id: uuid.UUID
    training: list[TrainingUsage] = []
    retrieval_hits: int = 0


class RejectionReason(ApiModel):
    reason_code: str
    events: int


class UsageSummary(ApiModel):
    """A model's usage in one UTC month."""

    model_id: uuid.UUID
    period: str
    period_state: str | None = None
    accepted_events: dict[str, int] = {}
    datasets: list[DatasetUsage] = []
    rejected_events: int = 0
    rejected_open: int = 0
    top_rejection_reasons: list[RejectionReason] = []


class QuarantinedEvent(ApiModel):
    """A rejected usage event waiting for review, with the reason it was rejected."""

    id: int
    model_id: uuid.UUID | None = None
    kind: str
    event_id: str | None = None
    payload: Any = None
    reason_code: str
    field: str | None = None
    message: str
    review_state: str
    received_at: datetime | None = None
    review_note: str | None = None
    reviewed_at: datetime | None = None
    reviewed_by: uuid.UUID | None = None


class Revenue(ApiModel):
    id: uuid.UUID
    model_id: uuid.UUID
    period_id: uuid.UUID
    amount_minor: int
    currency: str
    external_ref: str
    occurred_at: datetime
    journal_transaction_id: uuid.UUID | None = None
    created_at: datetime | None = None


class Period(ApiModel):
    id: uuid.UUID
    model_id: uuid.UUID
    key: str
    starts_at: datetime
    ends_at: datetime
    state: str
    revenue_minor: int | None = None
    pool_minor: int | None = None
    statement_hash: str | None = None
    no_accrual_reason: str | None = None
    closed_at: datetime | None = None
    anchored_at: datetime | None = None
    paid_at: datetime | None = None
    settlement: dict[str, Any] | None = None


class Statement(ApiModel):
    """A period's canonical statement JSON (exact bytes) and the SHA-256 anchored on chain."""

    document: bytes
    sha256: str


class JobAccepted(ApiModel):
    job_id: str
    kind: str
    state: str
    status_url: str


class Job(ApiModel):
    id: str
    kind: str
    state: str
    params: dict[str, Any] = {}
    progress: dict[str, Any] = {}
    result: dict[str, Any] | None = None
    error: str | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None


class Adjustment(ApiModel):
    id: uuid.UUID
    period_id: uuid.UUID
    address: str
    amount_minor: int
    reason: str
    reference: str
    corrects_period_id: uuid.UUID | None = None


class LineageInput(ApiModel):
    """The outcome of one input dataset of an OpenLineage event."""

    index: int
    namespace: str
    name: str
    event_id: str | None = None
    status: Literal["accepted", "duplicate", "rejected", "ignored"]
    code: str | None = None
    message: str | None = None
    field: str | None = None


class LineageResult(ApiModel):
    """What ``POST /v1/lineage`` did with one OpenLineage event."""

    status: Literal["recorded", "ignored"]
    event_type: str | None = None
    run_id: str | None = None
    model_id: uuid.UUID | None = None
    reason: str | None = None
    accepted: int = 0
    duplicates: int = 0
    rejected: int = 0
    ignored: int = 0
    inputs: list[LineageInput] = []


class Model(ApiModel):
    """A model or RAG application (``kind`` ``model`` or ``rag_app``) of a model team."""

    id: uuid.UUID
    account_id: uuid.UUID
    name: str
    description: str = ""
    kind: str
    created_at: datetime | None = None


class Agreement(ApiModel):
    """One version of a model's royalty agreement."""

    id: uuid.UUID
    model_id: uuid.UUID
    version: int
    royalty_rate_bps: int
    training_share_bps: int
    min_payout_minor: int
    currency: str
    currency_exponent: int
    training_unit: str
    retrieval_policy: str
    effective_from: datetime
    created_at: datetime | None = None


class DatasetSummary(ApiModel):
    id: uuid.UUID
    name: str
    status: str  # pending_signatures, confirmed, disputed, revoked or rejected
    licence: str
    allowed_uses: list[str]
    terms_version: int
    content_root: str
    file_count: int
    total_bytes: int
    valid_from: datetime
    valid_until: datetime | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None


class CoOwner(ApiModel):
    address: str
    share_bps: int
    display_name: str | None = None
    confirmed: bool = False


class Dataset(DatasetSummary):
    """A dataset with its terms, co-owners and who still has to sign."""

    description: str = ""
    registrant: str
    terms_hash: str
    co_owners: list[CoOwner] = []
    required_signers: list[str] = []
    missing_signers: list[str] = []
    open_disputes: list[uuid.UUID] = []
    confirmed_at: datetime | None = None
    revoked_at: datetime | None = None


class DatasetFile(ApiModel):
    path: str
    size: int
    sha256: str | None = None


class TypedData(ApiModel):
    """What a co-owner's wallet signs (``typed_data`` goes to ``eth_signTypedData_v4``)."""

    kind: str
    dataset_id: uuid.UUID
    terms_version: int
    signer: str
    nonce: int
    digest: str
    typed_data: dict[str, Any]


class RightsResult(ApiModel):
    dataset_id: uuid.UUID
    kind: str
    signer: str
    nonce: int
    terms_version: int
    digest: str
    accepted_at: datetime | None = None
    replayed: bool = False
    dataset_status: str
    missing_signers: list[str] = []


class DatasetPeriodUsage(ApiModel):
    period_id: uuid.UUID
    period: str
    period_state: str
    model_id: uuid.UUID
    model_name: str
    training: list[TrainingUsage] = []
    retrieval_hits: int = 0


class Dispute(ApiModel):
    id: uuid.UUID
    dataset_id: uuid.UUID
    conflicting_dataset_id: uuid.UUID
    content_root: str
    status: str
    resolution: str | None = None
    resolution_note: str | None = None
    opened_at: datetime | None = None
    resolved_at: datetime | None = None


class StatementLine(ApiModel):
    """One payee's line of a closed period, in minor units of ``currency``."""

    period_id: uuid.UUID
    period: str
    period_state: str
    model_id: uuid.UUID
    model_name: str
    currency: str
    address: str
    accrued_minor: int
    carry_in_minor: int
    adjustment_minor: int
    payable_minor: int
    carried_forward_minor: int
    breakdown: list[dict[str, Any]] = []
    statement_hash: str | None = None


class StatementLineDetail(StatementLine):
    explain: str = ""


class Claim(ApiModel):
    """What a payee's wallet sends to claim: ``claim(settlement_key, account, amount_units,
    proof)`` on ``contract_address``."""

    period_id: uuid.UUID
    settlement_key: str
    settlement_state: str
    contract_address: str
    chain_id: int
    token: str
    merkle_root: str
    leaf: dict[str, str]
    payable_minor: int
    proof: list[str]
    claimed: bool
    claim_tx_hash: str | None = None
    claimable: bool


class Account(ApiModel):
    id: uuid.UUID
    role: str
    display_name: str
    contact: str | None = None
    created_at: datetime | None = None
    disabled_at: datetime | None = None


class ApiKey(ApiModel):
    id: uuid.UUID
    account_id: uuid.UUID
    prefix: str
    label: str = ""
    created_at: datetime | None = None
    last_used_at: datetime | None = None
    revoked_at: datetime | None = None


class ApiKeyIssued(ApiKey):
    """A new key: ``key`` is the secret, shown in this answer only (None on a replay)."""

    key: str | None = None


class AddressChallenge(ApiModel):
    """Sign ``message`` with ``address`` (EIP-191 ``personal_sign``) to link it."""

    address: str
    message: str


class OwnerAddress(ApiModel):
    owner_id: uuid.UUID
    address: str
    display_name: str
    contact: str | None = None
    created_at: datetime | None = None


class ExportFile(ApiModel):
    """A downloaded export: the exact bytes, the server's file name and media type, and for
    a statement JSON the SHA-256 the server vouches for (the on-chain statement hash)."""

    content: bytes
    filename: str
    media_type: str
    sha256: str | None = None


class ReconciliationRun(ApiModel):
    id: uuid.UUID
    chain_id: int
    started_at: datetime | None = None
    finished_at: datetime | None = None
    settlements_checked: int
    findings_count: int


class ReconciliationFinding(ApiModel):
    """A difference between ledger and chain; ``kind`` is a stable code
    (``missing_on_chain``, ``root_mismatch``, ``claim_not_indexed``, …)."""

    id: int
    run_id: uuid.UUID
    kind: str
    detail: str
    settlement_id: uuid.UUID | None = None
    settlement_key: str | None = None
    period_id: uuid.UUID | None = None
    period_key: str | None = None
    model_id: uuid.UUID | None = None
    ledger_value: str | None = None
    chain_value: str | None = None


class FindingsPage(Page[ReconciliationFinding]):
    """A page of one run's findings; ``run`` is None before the first reconciliation."""

    run: ReconciliationRun | None = None
