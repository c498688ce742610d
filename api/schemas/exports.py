"""Request and response models of finance exports and reconciliation findings."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from api.pagination import Page

_PERIOD_ID = "3b9d2f1e-7c6a-4e5b-8d9c-0a1b2c3d4e5f"
_MODEL_ID = "6a0d7b5e-3c1f-4e2a-9b8c-1d2e3f4a5b6c"
_JOB_ID = "9f2c4e6a8b0d4f1e8a3c5b7d9e1f2a4c"
_RUN_ID = "0e8d6c4b-2a19-4f7e-8d5c-3b1a9f7e5d3c"


class ExportIn(BaseModel):
    """An export to generate on the worker. The selection depends on ``kind``:
    ``settlement`` takes ``period`` (and optionally ``model_id``) *or* ``from`` and ``to``;
    ``journal`` takes ``from`` and ``to``; ``statement-json`` takes ``period``;
    ``statement-pdf`` takes ``period`` and ``payee``. Other fields are refused."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"kind": "settlement", "format": "xlsx", "period": _PERIOD_ID},
                {"kind": "journal", "from": "2026-03-01", "to": "2026-03-31"},
            ]
        },
    )
    kind: Literal["settlement", "journal", "statement-json", "statement-pdf"]
    format: str | None = Field(
        default=None,
        max_length=16,
        description="settlement: csv (default), breakdown-csv or xlsx; journal: csv; "
        "statement-json: json; statement-pdf: pdf.",
    )
    period: str | None = Field(
        default=None,
        max_length=64,
        description="A period id, or a UTC month YYYY-MM (of every model, or of model_id).",
    )
    model_id: uuid.UUID | None = None
    date_from: str | None = Field(
        default=None, alias="from", max_length=32, description="First day YYYY-MM-DD (UTC)."
    )
    date_to: str | None = Field(
        default=None, alias="to", max_length=32, description="Last day YYYY-MM-DD (inclusive)."
    )
    payee: str | None = Field(
        default=None, max_length=64, description="The payee's address (statement-pdf)."
    )


class ExportAccepted(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "job_id": _JOB_ID,
                    "kind": "export",
                    "state": "queued",
                    "status_url": f"/v1/jobs/{_JOB_ID}",
                    "download_url": f"/v1/exports/{_JOB_ID}/download",
                }
            ]
        }
    )
    job_id: str
    kind: str
    state: str
    status_url: str = Field(description="Poll it: the job's `result` names the file when done.")
    download_url: str = Field(description="Answers 409 until the job succeeded, then the file.")


class ReconciliationRunOut(BaseModel):
    id: uuid.UUID
    chain_id: int
    started_at: datetime | None
    finished_at: datetime | None
    settlements_checked: int
    findings_count: int


class FindingOut(BaseModel):
    """A difference between the ledger and the chain (or within the ledger). ``kind`` is
    one of the codes in ``ledger/settlements/reconcile.py`` (``missing_on_chain``,
    ``root_mismatch``, ``claim_not_indexed``, ``escrow_balance_mismatch``, …);
    ``ledger_value``/``chain_value`` are the two sides as text (amounts in token units or
    minor units as the detail says)."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "id": 42,
                    "run_id": _RUN_ID,
                    "kind": "claim_not_indexed",
                    "detail": "0x5aAe… claimed in 0x9c… but the ledger has no record; "
                    "run usefirst index",
                    "settlement_id": "1c2d3e4f-5a6b-4c7d-8e9f-0a1b2c3d4e5f",
                    "settlement_key": "0x" + "ab" * 32,
                    "period_id": _PERIOD_ID,
                    "period_key": "2026-03",
                    "model_id": _MODEL_ID,
                    "ledger_value": None,
                    "chain_value": "123450000000000000000",
                }
            ]
        }
    )
    id: int
    run_id: uuid.UUID
    kind: str
    detail: str
    settlement_id: uuid.UUID | None
    settlement_key: str | None
    period_id: uuid.UUID | None
    period_key: str | None
    model_id: uuid.UUID | None
    ledger_value: str | None
    chain_value: str | None


class FindingsPage(Page[FindingOut]):
    """One page of a reconciliation run's findings; ``run`` is the run they belong to
    (null before the first run). A clean run has no items."""

    run: ReconciliationRunOut | None = None
