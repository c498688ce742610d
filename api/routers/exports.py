"""Finance exports and reconciliation findings.

Who may do what: finance only (owners fetch their own lines and claim data through
``/v1/statements`` and ``/v1/claims``; model teams read their periods' statements through
``/v1/periods``). Everything else gets 403.

Synchronous exports stream as they are produced (CSV and the statement JSON from the
first rows; XLSX and PDF are spooled first, because a ZIP directory and a PDF
cross-reference come last), each in a database session of its own (``api.downloads``).
Large exports can run on the worker instead: ``POST /v1/exports`` → ``GET /v1/jobs/{id}``
→ ``GET /v1/exports/{id}/download``.
"""

from __future__ import annotations

import uuid
from typing import Annotated, Any, Final

from fastapi import APIRouter, Depends, Path, Query
from fastapi.responses import FileResponse, StreamingResponse

from api import jobs
from api.deps import Principal, SessionDep, require_roles
from api.downloads import DOWNLOAD_HEADERS, stream_export
from api.idempotency import IdempotencyDep
from api.pagination import LIMIT_DEFAULT, check_limit, cursor_key, page
from api.schemas.exports import (
    ExportAccepted,
    ExportIn,
    FindingOut,
    FindingsPage,
    ReconciliationRunOut,
)
from ledger.errors import NotFound, StateError, ValidationFailed
from ledger.owners.service import normalize_address
from ledger.reports import exports, findings
from ledger.reports.exports import ExportRequest
from ledger.settings import get_settings

router = APIRouter(tags=["finance: exports"])
FinanceDep = Annotated[Principal, Depends(require_roles("finance"))]
JOB_ID_PATTERN: Final = r"^[0-9A-Za-z_-]{1,64}$"
_PERIOD_ID = "3b9d2f1e-7c6a-4e5b-8d9c-0a1b2c3d4e5f"
_ADDRESS = "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed"
_PROBLEM: Final[dict[str, Any]] = {"application/problem+json": {}}


def _responses(*media_types: str) -> dict[int | str, dict[str, Any]]:
    binary = {"schema": {"type": "string", "format": "binary"}}
    return {
        200: {
            "description": "The file (Content-Disposition names it).",
            "content": {media_type: binary for media_type in media_types},
        },
        404: {"description": "No such period, model or payee line.", "content": _PROBLEM},
        409: {"description": "The period is not closed yet.", "content": _PROBLEM},
        422: {"description": "Bad selection, date or format.", "content": _PROBLEM},
    }


DateFrom = Annotated[
    str,
    Query(
        alias="from",
        max_length=32,
        description="First day YYYY-MM-DD (UTC).",
        examples=["2026-03-01"],
    ),
]
DateTo = Annotated[
    str,
    Query(
        alias="to",
        max_length=32,
        description="Last day YYYY-MM-DD (inclusive).",
        examples=["2026-03-31"],
    ),
]


@router.get(
    "/exports/settlement",
    response_class=StreamingResponse,
    summary="Settlement report of a period or a date range (CSV or XLSX)",
    description="Either `period` (a period id, or a UTC month `YYYY-MM` of every model or of "
    "`model_id`) or both `from` and `to` (periods starting in that range). `csv`: one row "
    "per period and payee with the root and publish tx; `breakdown-csv`: payee × dataset × "
    "kind; `xlsx`: a summary sheet, then per statement a sheet (lines, SUM totals row, exact "
    "totals, on-chain root and tx hash) and its breakdown sheet.",
    responses=_responses(exports.MEDIA_TYPES["csv"], exports.MEDIA_TYPES["xlsx"]),
)
def export_settlement(
    session: SessionDep,
    principal: FinanceDep,
    period: Annotated[str | None, Query(max_length=64, examples=[_PERIOD_ID, "2026-03"])] = None,
    model_id: uuid.UUID | None = None,
    date_from: Annotated[
        str | None, Query(alias="from", max_length=32, description="First day YYYY-MM-DD.")
    ] = None,
    date_to: Annotated[
        str | None, Query(alias="to", max_length=32, description="Last day YYYY-MM-DD.")
    ] = None,
    format: Annotated[
        str, Query(max_length=16, description="csv, breakdown-csv or xlsx.", examples=["xlsx"])
    ] = "csv",
) -> StreamingResponse:
    return stream_export(
        ExportRequest(
            "settlement",
            format,
            period=period,
            model=None if model_id is None else str(model_id),
            date_from=date_from,
            date_to=date_to,
        )
    )


@router.get(
    "/exports/journal",
    response_class=StreamingResponse,
    summary="Journal entries posted in a date range (CSV for an accounting import)",
    description="One row per entry: debit and credit in minor units and as exact decimal "
    "text; each transaction's debits equal its credits per currency.",
    responses=_responses(exports.MEDIA_TYPES["csv"]),
)
def export_journal(
    session: SessionDep, principal: FinanceDep, date_from: DateFrom, date_to: DateTo
) -> StreamingResponse:
    return stream_export(ExportRequest("journal", "csv", date_from=date_from, date_to=date_to))


@router.get(
    "/exports/statements/{period_id}.json",
    response_class=StreamingResponse,
    summary="The canonical statement JSON of a closed period",
    description="The exact stored bytes: their SHA-256 (header `X-Statement-SHA256`) is the "
    "period's statement hash, the `statementHash` anchored on chain.",
    responses=_responses("application/json"),
)
def export_statement_json(
    period_id: uuid.UUID, session: SessionDep, principal: FinanceDep
) -> StreamingResponse:
    return stream_export(ExportRequest("statement-json", "json", period=str(period_id)))


@router.get(
    "/exports/statements/{period_id}/payees/{address}.pdf",
    response_class=StreamingResponse,
    summary="One payee's PDF statement of a closed period",
    description="The line, its breakdown, the settlement, how to verify it, and usage charts "
    "per dataset over the model's last periods. `address`: EIP-55 or all lower case.",
    responses=_responses("application/pdf"),
)
def export_statement_pdf(
    period_id: uuid.UUID,
    address: Annotated[str, Path(max_length=64, examples=[_ADDRESS])],
    session: SessionDep,
    principal: FinanceDep,
) -> StreamingResponse:
    payee = normalize_address(address, "address")
    return stream_export(ExportRequest("statement-pdf", "pdf", period=str(period_id), payee=payee))


# --- the report-generation job --------------------------------------------------------------


@router.post(
    "/exports",
    status_code=202,
    response_model=ExportAccepted,
    summary="Generate an export on the worker",
    description="Checks the selection now (the same 4xx as the synchronous routes), then "
    "creates a job; `GET /v1/jobs/{job_id}` shows its state and, once it succeeded, the "
    "file in `result` (`download_url`, `filename`, `bytes`, `sha256`).",
)
def create_export(
    body: ExportIn, session: SessionDep, principal: FinanceDep, idem: IdempotencyDep
) -> Any:
    if (replay := idem.replay()) is not None:
        return replay
    from api.tasks import start_export_job

    selected = exports.select_export(
        session,
        ExportRequest(
            body.kind,
            body.format,
            period=body.period,
            model=None if body.model_id is None else str(body.model_id),
            date_from=body.date_from,
            date_to=body.date_to,
            payee=body.payee,
        ),
    )
    job = start_export_job(session, selected.params(), principal.account_id)
    accepted = ExportAccepted(
        job_id=job.id,
        kind=job.kind,
        state=job.state,
        status_url=f"/v1/jobs/{job.id}",
        download_url=f"/v1/exports/{job.id}/download",
    )
    return idem.respond(202, accepted.model_dump())


@router.get(
    "/exports/{job_id}/download",
    response_class=FileResponse,
    summary="The file of a finished export job",
    responses={
        200: {
            "description": "The file; Content-Type and Content-Disposition are the export's.",
            "content": {
                "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}
            },
        },
        404: {"description": "No such export job, or its file is gone.", "content": _PROBLEM},
        409: {"description": "The job has not succeeded (yet).", "content": _PROBLEM},
    },
)
def download_export(
    job_id: Annotated[str, Path(pattern=JOB_ID_PATTERN, description="From POST /v1/exports.")],
    session: SessionDep,
    principal: FinanceDep,
) -> FileResponse:
    job = session.get(jobs.Job, job_id)
    if job is None or job.kind != "export":
        raise NotFound(
            f"export job {job_id} does not exist", field="job_id", code="export_not_found"
        )
    if job.state == "failed":
        raise StateError(
            f"export {job_id} failed ({job.error}); request it again with POST /v1/exports",
            field="job_id",
            code="export_failed",
        )
    if job.state != "succeeded" or not job.result:
        raise StateError(
            f"export {job_id} is {job.state}; poll GET /v1/jobs/{job_id} until it succeeded",
            field="job_id",
            code="export_not_ready",
        )
    path = exports.stored_path(get_settings(), job_id, job.result["format"])
    if not path.is_file():
        raise NotFound(
            f"the file of export {job_id} is no longer in the data directory; request the "
            "export again",
            field="job_id",
            code="export_file_missing",
        )
    return FileResponse(
        path,
        media_type=job.result["media_type"],
        filename=job.result["filename"],
        headers=DOWNLOAD_HEADERS,
    )


# --- reconciliation findings ----------------------------------------------------------------


def _finding_id(row: findings.FindingRow) -> int:
    assert row.finding.id is not None  # a stored row
    return row.finding.id


@router.get(
    "/reconciliation/findings",
    response_model=FindingsPage,
    tags=["finance: reconciliation"],
    summary="Findings of the latest reconciliation run (or of run_id)",
    description="Runs are stored by the worker's periodic `usefirst.reconcile` task and by "
    "`usefirst reconcile`; this route reads them and never talks to the chain. Items come "
    "in the order they were found; `run` is null before the first run.",
)
def list_findings(
    session: SessionDep,
    principal: FinanceDep,
    run_id: uuid.UUID | None = None,
    kind: Annotated[
        str | None, Query(pattern=r"^[a-z_]{1,32}$", examples=["missing_on_chain"])
    ] = None,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
    limit: int = LIMIT_DEFAULT,
) -> FindingsPage:
    check_limit(limit)
    after_id: int | None = None
    after = cursor_key(cursor, uuid.UUID, int)
    if after is not None:
        cursor_run, after_id = after
        if run_id is not None and run_id != cursor_run:
            raise ValidationFailed(
                "the cursor belongs to another run; drop it or the run_id",
                field="cursor",
                code="invalid_cursor",
            )
        run_id = cursor_run
    run = findings.reconciliation_run(session, run_id)
    if run is None:
        return FindingsPage(items=[], next_cursor=None, run=None)
    rows = findings.findings_page(session, run.id, kind=kind, after_id=after_id, limit=limit + 1)
    items, next_cursor = page(rows, limit, lambda row: (run.id, row.finding.id))
    return FindingsPage(
        items=[
            FindingOut(
                id=_finding_id(row),
                run_id=row.finding.run_id,
                kind=row.finding.kind,
                detail=row.finding.detail,
                settlement_id=row.finding.settlement_id,
                settlement_key=row.settlement_key,
                period_id=row.period_id,
                period_key=row.period_key,
                model_id=row.model_id,
                ledger_value=row.finding.ledger_value,
                chain_value=row.finding.chain_value,
            )
            for row in items
        ],
        next_cursor=next_cursor,
        run=ReconciliationRunOut.model_validate(run, from_attributes=True),
    )
