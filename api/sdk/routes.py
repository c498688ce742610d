"""The usefirst API surface, described once: one builder per route, returning a
:class:`Call` (method, path, query, body, how to parse the answer, whether a retry is
safe). The sync and async clients (``api.sdk.client``) turn each builder into a method
with the same name, parameters and docstring; they differ only in how they send.

Writes that accept an ``Idempotency-Key`` get one generated per call unless the caller
passes ``idempotency_key``; it is fixed when the call is built, so the client's retries
resend the same key and the server answers a replay instead of acting twice.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Generic, Literal, TypeVar

import httpx
from pydantic import TypeAdapter

from api.sdk.types import (
    Account,
    AddressChallenge,
    Adjustment,
    Agreement,
    ApiKey,
    ApiKeyIssued,
    Claim,
    Dataset,
    DatasetFile,
    DatasetPeriodUsage,
    DatasetSummary,
    Dispute,
    ExportFile,
    FindingsPage,
    Job,
    JobAccepted,
    LineageResult,
    Me,
    Model,
    OwnerAddress,
    Page,
    Period,
    QuarantinedEvent,
    Revenue,
    RightsResult,
    Statement,
    StatementLine,
    StatementLineDetail,
    TypedData,
    UsageResult,
    UsageSummary,
)

T = TypeVar("T")
Id = uuid.UUID | str
LIMIT_DEFAULT = 50


@dataclass(frozen=True)
class Call(Generic[T]):
    """One HTTP request and how to read its answer. ``retry_safe``: sending it again
    after a failure cannot do anything twice."""

    method: str
    path: str
    parse: Callable[[httpx.Response], T]
    params: dict[str, Any] | None = None
    content: bytes | None = None
    headers: dict[str, str] = field(default_factory=dict)
    retry_safe: bool = True


def encode_json(value: Any) -> bytes:
    """Compact JSON; datetimes (timezone-aware) as ISO 8601, UUIDs as text, numpy
    scalars as Python numbers."""
    return json.dumps(value, default=_json_default, separators=(",", ":")).encode()


def _json_default(value: object) -> object:
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise ValueError(
                f"datetime {value.isoformat()} has no time zone; pass an aware datetime "
                "(e.g. datetime.now(UTC))"
            )
        return value.isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    if hasattr(value, "item"):  # numpy scalars (retriever scores, counts)
        return value.item()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def _model(cls: Any) -> Callable[[httpx.Response], Any]:
    adapter: TypeAdapter[Any] = TypeAdapter(cls)
    return lambda response: adapter.validate_json(response.content)


def _statement(response: httpx.Response) -> Statement:
    return Statement(
        document=response.content, sha256=response.headers.get("x-statement-sha256", "")
    )


_FILENAME = re.compile(r'filename="([^"]*)"')


def _file(response: httpx.Response) -> ExportFile:
    found = _FILENAME.search(response.headers.get("content-disposition", ""))
    return ExportFile(
        content=response.content,
        filename=found.group(1) if found else "",
        media_type=response.headers.get("content-type", ""),
        sha256=response.headers.get("x-statement-sha256"),
    )


def _query(**params: Any) -> dict[str, Any]:
    """Query parameters without the unset ones."""
    return {
        k: str(v) if isinstance(v, uuid.UUID | datetime) else v
        for k, v in params.items()
        if v is not None
    }


def _get(path: str, cls: Any, **params: Any) -> Call[Any]:
    return Call("GET", path, _model(cls), _query(**params))


def _write(
    method: str,
    path: str,
    cls: Any,
    body: Any,
    idempotency_key: str | None,
    *,
    params: dict[str, Any] | None = None,
) -> Call[Any]:
    """A write that takes an Idempotency-Key (generated when not given): safe to retry."""
    headers = {"Idempotency-Key": idempotency_key or uuid.uuid4().hex}
    if body is not None:
        headers["Content-Type"] = "application/json"
    return Call(
        method,
        path,
        _model(cls),
        params,
        None if body is None else encode_json(_without_none(body)),
        headers,
    )


def _without_none(body: Any) -> Any:
    return {k: v for k, v in body.items() if v is not None} if isinstance(body, dict) else body


def _lineage_body(event: Any) -> bytes:
    """An OpenLineage event as JSON: a mapping, JSON text, or an ``openlineage`` client
    event object (serialised the way its transports do)."""
    if isinstance(event, bytes):
        return event
    if isinstance(event, str):
        return event.encode()
    if isinstance(event, Mapping):
        return encode_json(dict(event))
    try:
        from openlineage.client.serde import Serde
    except ImportError:  # pragma: no cover - only without the extra
        raise TypeError(
            "pass the OpenLineage event as a dict or JSON text, or install usefirst[openlineage]"
        ) from None
    return Serde.to_json(event).encode()


def _usage(
    kind: str, model_id: Id, events: Sequence[Mapping[str, Any]], idempotency_key: str | None
) -> Call[UsageResult]:
    headers = {"Content-Type": "application/json"}
    if idempotency_key is not None:
        headers["Idempotency-Key"] = idempotency_key
    # Event ids make a resend count once: safe to retry without an Idempotency-Key.
    return Call(
        "POST",
        f"/v1/usage/{kind}",
        _model(UsageResult),
        {"model_id": str(model_id)},
        encode_json(list(events)),
        headers,
    )


class Routes:
    """One builder per route. Amounts are ``int`` minor units, rates basis points."""

    # --- operations and accounts ---

    @staticmethod
    def health() -> Call[Any]:
        """``/healthz``: the server process answers."""
        return Call("GET", "/healthz", lambda response: response.json())

    @staticmethod
    def me() -> Call[Me]:
        """The account behind the API key."""
        return _get("/v1/me", Me)

    # --- model teams: usage, lineage, quarantine, revenue ---

    @staticmethod
    def report_training(
        model_id: Id, events: Sequence[Mapping[str, Any]], *, idempotency_key: str | None = None
    ) -> Call[UsageResult]:
        """Send one batch (≤ 50,000) of training events of ``model_id``; each is accepted,
        a duplicate (its id was seen) or rejected (code, message, field). For a stream of
        events prefer :class:`~api.sdk.batching.UsageReporter`."""
        return _usage("training", model_id, events, idempotency_key)

    @staticmethod
    def report_retrievals(
        model_id: Id, events: Sequence[Mapping[str, Any]], *, idempotency_key: str | None = None
    ) -> Call[UsageResult]:
        """Send one batch (≤ 50,000) of retrieval events of ``model_id``."""
        return _usage("retrievals", model_id, events, idempotency_key)

    @staticmethod
    def send_lineage(event: Any) -> Call[LineageResult]:
        """Post one OpenLineage event (dict, JSON text or ``openlineage`` RunEvent)."""
        return Call(
            "POST",
            "/v1/lineage",
            _model(LineageResult),
            content=_lineage_body(event),
            headers={"Content-Type": "application/json"},
        )

    @staticmethod
    def lineage_facets() -> Call[Any]:
        """The JSON Schemas of the usefirst OpenLineage facets."""
        return Call("GET", "/v1/lineage/facets", lambda response: response.json())

    @staticmethod
    def usage_summary(model_id: Id, period: str) -> Call[UsageSummary]:
        """A model's accepted usage and rejections in one UTC month (``YYYY-MM``)."""
        return _get("/v1/usage/summary", UsageSummary, model_id=model_id, period=period)

    @staticmethod
    def list_quarantine(
        *,
        model_id: Id | None = None,
        reason_code: str | None = None,
        state: Literal["open", "dismissed", "resubmitted", "any"] = "open",
        cursor: str | None = None,
        limit: int = LIMIT_DEFAULT,
    ) -> Call[Page[QuarantinedEvent]]:
        """Rejected usage events waiting for review, oldest first."""
        return _get(
            "/v1/quarantine",
            Page[QuarantinedEvent],
            model_id=model_id,
            reason_code=reason_code,
            state=state,
            cursor=cursor,
            limit=limit,
        )

    @staticmethod
    def dismiss_quarantined(
        quarantine_id: int, *, note: str, idempotency_key: str | None = None
    ) -> Call[QuarantinedEvent]:
        """Finance: close the review of a quarantined event, saying why."""
        path = f"/v1/quarantine/{quarantine_id}/dismiss"
        return _write("POST", path, QuarantinedEvent, {"note": note}, idempotency_key)

    @staticmethod
    def record_revenue(
        model_id: Id,
        *,
        amount_minor: int,
        currency: str,
        external_ref: str,
        occurred_at: datetime,
        idempotency_key: str | None = None,
    ) -> Call[Revenue]:
        """Record revenue (minor units of the agreement's currency) of one of your models;
        idempotent by ``external_ref``."""
        body = {
            "model_id": model_id,
            "amount_minor": amount_minor,
            "currency": currency,
            "external_ref": external_ref,
            "occurred_at": occurred_at,
        }
        return _write("POST", "/v1/revenue", Revenue, body, idempotency_key)

    @staticmethod
    def list_revenue(
        model_id: Id, *, cursor: str | None = None, limit: int = LIMIT_DEFAULT
    ) -> Call[Page[Revenue]]:
        """A model's revenue events, by occurrence."""
        return _get("/v1/revenue", Page[Revenue], model_id=model_id, cursor=cursor, limit=limit)

    # --- model teams: models and agreements ---

    @staticmethod
    def create_model(
        *,
        name: str,
        description: str = "",
        kind: Literal["model", "rag_app"] = "model",
        idempotency_key: str | None = None,
    ) -> Call[Model]:
        """Register a model or RAG application of your team."""
        body = {"name": name, "description": description, "kind": kind}
        return _write("POST", "/v1/models", Model, body, idempotency_key)

    @staticmethod
    def list_models(*, cursor: str | None = None, limit: int = LIMIT_DEFAULT) -> Call[Page[Model]]:
        """Your team's models (finance: all)."""
        return _get("/v1/models", Page[Model], cursor=cursor, limit=limit)

    @staticmethod
    def get_model(model_id: Id) -> Call[Model]:
        return _get(f"/v1/models/{model_id}", Model)

    @staticmethod
    def create_agreement(
        model_id: Id,
        *,
        royalty_rate_bps: int,
        training_share_bps: int,
        min_payout_minor: int,
        currency: str,
        effective_from: datetime,
        training_unit: Literal["tokens", "samples", "bytes"] = "tokens",
        retrieval_policy: Literal["uniform/v1", "rank-discount/v1"] = "uniform/v1",
        idempotency_key: str | None = None,
    ) -> Call[Agreement]:
        """Add the next version of a model's royalty agreement (append-only)."""
        body = {
            "royalty_rate_bps": royalty_rate_bps,
            "training_share_bps": training_share_bps,
            "min_payout_minor": min_payout_minor,
            "currency": currency,
            "effective_from": effective_from,
            "training_unit": training_unit,
            "retrieval_policy": retrieval_policy,
        }
        path = f"/v1/models/{model_id}/agreements"
        return _write("POST", path, Agreement, body, idempotency_key)

    @staticmethod
    def list_agreements(
        model_id: Id, *, cursor: str | None = None, limit: int = LIMIT_DEFAULT
    ) -> Call[Page[Agreement]]:
        """Every agreement version of a model, oldest first."""
        path = f"/v1/models/{model_id}/agreements"
        return _get(path, Page[Agreement], cursor=cursor, limit=limit)

    @staticmethod
    def agreement_in_force(model_id: Id, *, at: datetime | None = None) -> Call[Agreement]:
        """The agreement version in force at ``at`` (default: now)."""
        return _get(f"/v1/models/{model_id}/agreements/in-force", Agreement, at=at)

    # --- owners: addresses, datasets, rights, disputes, statements, claims ---

    @staticmethod
    def address_challenge(address: str) -> Call[AddressChallenge]:
        """The text ``address`` signs (EIP-191) to prove you control it."""
        return _get("/v1/owners/addresses/challenge", AddressChallenge, address=address)

    @staticmethod
    def link_address(
        *,
        address: str,
        signature: str,
        display_name: str | None = None,
        contact: str | None = None,
        idempotency_key: str | None = None,
    ) -> Call[OwnerAddress]:
        """Link an address you control (signature of :meth:`address_challenge`'s text)."""
        body = {
            "address": address,
            "signature": signature,
            "display_name": display_name,
            "contact": contact,
        }
        return _write("POST", "/v1/owners/addresses", OwnerAddress, body, idempotency_key)

    @staticmethod
    def list_addresses(
        *, cursor: str | None = None, limit: int = LIMIT_DEFAULT
    ) -> Call[Page[OwnerAddress]]:
        return _get("/v1/owners/addresses", Page[OwnerAddress], cursor=cursor, limit=limit)

    @staticmethod
    def register_dataset(
        *,
        registrant: str,
        co_owners: Sequence[Mapping[str, Any]],
        allowed_uses: Sequence[Literal["train", "rag"]],
        valid_from: datetime,
        name: str | None = None,
        description: str | None = None,
        licence: str | None = None,
        terms_document_base64: str | None = None,
        valid_until: datetime | None = None,
        files: Sequence[Mapping[str, Any]] | None = None,
        content_root: str | None = None,
        croissant: Mapping[str, Any] | None = None,
        idempotency_key: str | None = None,
    ) -> Call[Dataset]:
        """Register a dataset (terms version 1, waiting for every co-owner's signature).
        ``co_owners``: ``{"address", "share_bps", "display_name"?}`` summing to 10,000 bps;
        ``files``: ``{"path", "size", "sha256"}`` (or give a ``croissant`` document)."""
        body = {
            "registrant": registrant,
            "co_owners": list(co_owners),
            "allowed_uses": list(allowed_uses),
            "valid_from": valid_from,
            "name": name,
            "description": description,
            "licence": licence,
            "terms_document_base64": terms_document_base64,
            "valid_until": valid_until,
            "files": list(files) if files is not None else None,
            "content_root": content_root,
            "croissant": dict(croissant) if croissant is not None else None,
        }
        return _write("POST", "/v1/datasets", Dataset, body, idempotency_key)

    @staticmethod
    def list_datasets(
        *, status: str | None = None, cursor: str | None = None, limit: int = LIMIT_DEFAULT
    ) -> Call[Page[DatasetSummary]]:
        """Datasets you co-own (finance: all), newest first."""
        return _get("/v1/datasets", Page[DatasetSummary], status=status, cursor=cursor, limit=limit)

    @staticmethod
    def get_dataset(dataset_id: Id) -> Call[Dataset]:
        """One dataset: terms, co-owners and who still has to sign."""
        return _get(f"/v1/datasets/{dataset_id}", Dataset)

    @staticmethod
    def update_dataset(dataset_id: Id, changes: Mapping[str, Any]) -> Call[Dataset]:
        """Change the given fields (a change of signed terms starts a new terms version
        that every co-owner signs again; ``{"renew": True}`` starts one unchanged)."""
        return Call(
            "PATCH",
            f"/v1/datasets/{dataset_id}",
            _model(Dataset),
            content=encode_json(dict(changes)),
            headers={"Content-Type": "application/json"},
            retry_safe=False,
        )

    @staticmethod
    def list_dataset_files(
        dataset_id: Id, *, cursor: str | None = None, limit: int = LIMIT_DEFAULT
    ) -> Call[Page[DatasetFile]]:
        path = f"/v1/datasets/{dataset_id}/files"
        return _get(path, Page[DatasetFile], cursor=cursor, limit=limit)

    @staticmethod
    def typed_data(
        dataset_id: Id,
        *,
        signer: str,
        kind: Literal["confirmation", "revocation"] = "confirmation",
    ) -> Call[TypedData]:
        """The EIP-712 typed data ``signer`` signs now (``typed_data`` field)."""
        path = f"/v1/datasets/{dataset_id}/typed-data"
        return _get(path, TypedData, signer=signer, kind=kind)

    @staticmethod
    def confirm_dataset(
        dataset_id: Id,
        *,
        signer: str,
        signature: str,
        nonce: int,
        domain: Mapping[str, Any] | None = None,
        idempotency_key: str | None = None,
    ) -> Call[RightsResult]:
        """Submit a co-owner's signed confirmation of the current terms."""
        body = {"signer": signer, "signature": signature, "nonce": nonce, "domain": domain}
        path = f"/v1/datasets/{dataset_id}/confirmations"
        return _write("POST", path, RightsResult, body, idempotency_key)

    @staticmethod
    def revoke_dataset(
        dataset_id: Id,
        *,
        signer: str,
        signature: str,
        nonce: int,
        domain: Mapping[str, Any] | None = None,
        idempotency_key: str | None = None,
    ) -> Call[RightsResult]:
        """Submit a co-owner's signed revocation."""
        body = {"signer": signer, "signature": signature, "nonce": nonce, "domain": domain}
        path = f"/v1/datasets/{dataset_id}/revocations"
        return _write("POST", path, RightsResult, body, idempotency_key)

    @staticmethod
    def dataset_usage(
        dataset_id: Id, *, cursor: str | None = None, limit: int = LIMIT_DEFAULT
    ) -> Call[Page[DatasetPeriodUsage]]:
        """Usage of a dataset per period and model, newest first."""
        path = f"/v1/datasets/{dataset_id}/usage"
        return _get(path, Page[DatasetPeriodUsage], cursor=cursor, limit=limit)

    @staticmethod
    def list_disputes(
        *,
        status: Literal["open", "resolved"] | None = None,
        cursor: str | None = None,
        limit: int = LIMIT_DEFAULT,
    ) -> Call[Page[Dispute]]:
        return _get("/v1/disputes", Page[Dispute], status=status, cursor=cursor, limit=limit)

    @staticmethod
    def get_dispute(dispute_id: Id) -> Call[Dispute]:
        return _get(f"/v1/disputes/{dispute_id}", Dispute)

    @staticmethod
    def resolve_dispute(
        dispute_id: Id,
        *,
        resolution: Literal["upheld", "rejected"],
        note: str,
        idempotency_key: str | None = None,
    ) -> Call[Dispute]:
        """Finance: resolve a dispute over shared content."""
        body = {"resolution": resolution, "note": note}
        path = f"/v1/disputes/{dispute_id}/resolve"
        return _write("POST", path, Dispute, body, idempotency_key)

    @staticmethod
    def list_statement_lines(
        *,
        address: str | None = None,
        model_id: Id | None = None,
        cursor: str | None = None,
        limit: int = LIMIT_DEFAULT,
    ) -> Call[Page[StatementLine]]:
        """Your statement lines across closed periods, newest first."""
        return _get(
            "/v1/statements",
            Page[StatementLine],
            address=address,
            model_id=model_id,
            cursor=cursor,
            limit=limit,
        )

    @staticmethod
    def get_statement_line(period_id: Id, address: str) -> Call[StatementLineDetail]:
        """One statement line with the derivation of its amounts."""
        return _get(f"/v1/statements/{period_id}/{address}", StatementLineDetail)

    @staticmethod
    def get_claim(period_id: Id, address: str) -> Call[Claim]:
        """What a payee's wallet sends to claim its payout (leaf, proof, contract)."""
        return _get(f"/v1/claims/{period_id}/{address}", Claim)

    # --- finance: periods, statements, adjustments; jobs ---

    @staticmethod
    def list_periods(
        *,
        model_id: Id | None = None,
        state: str | None = None,
        cursor: str | None = None,
        limit: int = LIMIT_DEFAULT,
    ) -> Call[Page[Period]]:
        """Periods, newest first (a model team sees its own models')."""
        return _get(
            "/v1/periods", Page[Period], model_id=model_id, state=state, cursor=cursor, limit=limit
        )

    @staticmethod
    def get_period(period_id: Id) -> Call[Period]:
        return _get(f"/v1/periods/{period_id}", Period)

    @staticmethod
    def get_statement(period_id: Id) -> Call[Statement]:
        """The canonical statement bytes of a closed period and their SHA-256."""
        return Call("GET", f"/v1/periods/{period_id}/statement", _statement)

    @staticmethod
    def close_period(
        period_id: Id, *, anchor: bool = True, idempotency_key: str | None = None
    ) -> Call[JobAccepted]:
        """Finance: close the period on the worker (and anchor it unless ``anchor=False``)."""
        path = f"/v1/periods/{period_id}/close"
        return _write("POST", path, JobAccepted, {"anchor": anchor}, idempotency_key)

    @staticmethod
    def anchor_period(
        period_id: Id, *, reanchor: bool = False, idempotency_key: str | None = None
    ) -> Call[JobAccepted]:
        """Finance: anchor a closed period's settlement on chain (``reanchor``: again, under a
        new settlement id, after the guardian revoked the last one)."""
        path = f"/v1/periods/{period_id}/anchor"
        body = {"reanchor": True} if reanchor else None
        return _write("POST", path, JobAccepted, body, idempotency_key)

    @staticmethod
    def add_adjustment(
        period_id: Id,
        *,
        address: str,
        amount_minor: int,
        reason: str,
        reference: str,
        corrects_period_id: Id | None = None,
        idempotency_key: str | None = None,
    ) -> Call[Adjustment]:
        """Finance: book a signed correction (minor units) for a payee into an open period."""
        body = {
            "address": address,
            "amount_minor": amount_minor,
            "reason": reason,
            "reference": reference,
            "corrects_period_id": corrects_period_id,
        }
        path = f"/v1/periods/{period_id}/adjustments"
        return _write("POST", path, Adjustment, body, idempotency_key)

    @staticmethod
    def get_job(job_id: str) -> Call[Job]:
        """State of a background job (close, anchor, export)."""
        return _get(f"/v1/jobs/{job_id}", Job)

    @staticmethod
    def list_jobs(*, cursor: str | None = None, limit: int = LIMIT_DEFAULT) -> Call[Page[Job]]:
        """Recent jobs (yours; all for finance)."""
        return _get("/v1/jobs", Page[Job], cursor=cursor, limit=limit)

    # --- finance: exports and reconciliation ---

    @staticmethod
    def export_settlement(
        *,
        period: Id | None = None,
        model_id: Id | None = None,
        date_from: str | None = None,
        date_to: str | None = None,
        format: Literal["csv", "breakdown-csv", "xlsx"] = "csv",
    ) -> Call[ExportFile]:
        """Finance: the settlement report of ``period`` (an id, or ``YYYY-MM`` of every model
        or of ``model_id``) or of the periods starting from ``date_from`` to ``date_to``
        (``YYYY-MM-DD``, inclusive). The whole file is read into memory; for very large
        reports use :meth:`create_export` and :meth:`download_export`."""
        params = _query(
            period=period, model_id=model_id, format=format, **{"from": date_from, "to": date_to}
        )
        return Call("GET", "/v1/exports/settlement", _file, params)

    @staticmethod
    def export_journal(date_from: str, date_to: str) -> Call[ExportFile]:
        """Finance: journal entries posted from ``date_from`` to ``date_to`` (inclusive, UTC)
        as CSV."""
        return Call("GET", "/v1/exports/journal", _file, {"from": date_from, "to": date_to})

    @staticmethod
    def export_statement_json(period_id: Id) -> Call[ExportFile]:
        """Finance: the canonical statement JSON (``sha256`` is the on-chain statement hash)."""
        return Call("GET", f"/v1/exports/statements/{period_id}.json", _file)

    @staticmethod
    def export_statement_pdf(period_id: Id, address: str) -> Call[ExportFile]:
        """Finance: one payee's PDF statement of a closed period."""
        return Call("GET", f"/v1/exports/statements/{period_id}/payees/{address}.pdf", _file)

    @staticmethod
    def create_export(
        kind: Literal["settlement", "journal", "statement-json", "statement-pdf"],
        *,
        format: str | None = None,
        period: Id | None = None,
        model_id: Id | None = None,
        date_from: str | None = None,
        date_to: str | None = None,
        payee: str | None = None,
        idempotency_key: str | None = None,
    ) -> Call[JobAccepted]:
        """Finance: generate an export on the worker; wait with :meth:`wait_for_job`, then
        :meth:`download_export`."""
        body = {
            "kind": kind,
            "format": format,
            "period": None if period is None else str(period),
            "model_id": model_id,
            "from": date_from,
            "to": date_to,
            "payee": payee,
        }
        return _write("POST", "/v1/exports", JobAccepted, body, idempotency_key)

    @staticmethod
    def download_export(job_id: str) -> Call[ExportFile]:
        """Finance: the file of a finished export job (409 ``export_not_ready`` before)."""
        return Call("GET", f"/v1/exports/{job_id}/download", _file)

    @staticmethod
    def list_findings(
        *,
        run_id: Id | None = None,
        kind: str | None = None,
        cursor: str | None = None,
        limit: int = LIMIT_DEFAULT,
    ) -> Call[FindingsPage]:
        """Finance: findings of the latest reconciliation run (or of ``run_id``)."""
        return _get(
            "/v1/reconciliation/findings",
            FindingsPage,
            run_id=run_id,
            kind=kind,
            cursor=cursor,
            limit=limit,
        )

    # --- admin: accounts and API keys ---

    @staticmethod
    def create_account(
        *,
        role: Literal["owner", "model_team", "finance", "admin"],
        display_name: str,
        contact: str | None = None,
        idempotency_key: str | None = None,
    ) -> Call[Account]:
        body = {"role": role, "display_name": display_name, "contact": contact}
        return _write("POST", "/v1/accounts", Account, body, idempotency_key)

    @staticmethod
    def list_accounts(
        *, role: str | None = None, cursor: str | None = None, limit: int = LIMIT_DEFAULT
    ) -> Call[Page[Account]]:
        return _get("/v1/accounts", Page[Account], role=role, cursor=cursor, limit=limit)

    @staticmethod
    def get_account(account_id: Id) -> Call[Account]:
        return _get(f"/v1/accounts/{account_id}", Account)

    @staticmethod
    def disable_account(account_id: Id, *, idempotency_key: str | None = None) -> Call[Account]:
        """Disable an account: its keys stop working at once."""
        path = f"/v1/accounts/{account_id}/disable"
        return _write("POST", path, Account, None, idempotency_key)

    @staticmethod
    def issue_api_key(
        account_id: Id, *, label: str = "", idempotency_key: str | None = None
    ) -> Call[ApiKeyIssued]:
        """Issue an API key; its secret (``key``) is in this answer only."""
        path = f"/v1/accounts/{account_id}/keys"
        return _write("POST", path, ApiKeyIssued, {"label": label}, idempotency_key)

    @staticmethod
    def list_api_keys(
        account_id: Id, *, cursor: str | None = None, limit: int = LIMIT_DEFAULT
    ) -> Call[Page[ApiKey]]:
        path = f"/v1/accounts/{account_id}/keys"
        return _get(path, Page[ApiKey], cursor=cursor, limit=limit)

    @staticmethod
    def revoke_api_key(
        account_id: Id, key_id: Id, *, idempotency_key: str | None = None
    ) -> Call[ApiKey]:
        """Revoke a key (idempotent); requests with it get 401 from now on."""
        path = f"/v1/accounts/{account_id}/keys/{key_id}/revoke"
        return _write("POST", path, ApiKey, None, idempotency_key)
