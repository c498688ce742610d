"""One export described once: what the HTTP routes stream and the report-generation job
writes to a file.

An :class:`ExportRequest` names the export (``kind``), its ``format`` and its selection
(a period, a date range, a payee) as plain text, the way a query string or a job's
parameters carry it. :func:`select_export` checks it against the database and resolves
it into a :class:`SelectedExport` (the statements, the file name and media type), raising
the same domain errors as :mod:`ledger.reports.service` (``period_not_found``,
``date_range_invalid``, ``format_invalid``, …) plus ``<field>_required`` and
``field_not_applicable`` for a selection that does not fit the kind. Then
:func:`iter_export` streams it and :func:`write_export_file` writes it atomically (a
temporary name in the target directory, renamed when complete).
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any, Final

from sqlalchemy import text
from sqlmodel import Session

from ledger.errors import ValidationFailed
from ledger.owners.service import normalize_address
from ledger.reports import service as reports
from ledger.reports.queries import StatementRef
from ledger.reports.service import ExportResult
from ledger.reports.streams import BinarySink, Progress
from ledger.settings import Settings

EXPORT_KINDS: Final = ("settlement", "journal", "statement-json", "statement-pdf")
FORMATS: Final[dict[str, tuple[str, ...]]] = {
    "settlement": reports.SETTLEMENT_FORMATS,
    "journal": ("csv",),
    "statement-json": ("json",),
    "statement-pdf": ("pdf",),
}
MEDIA_TYPES: Final = {
    "csv": "text/csv; charset=utf-8",
    "breakdown-csv": "text/csv; charset=utf-8",
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    "json": "application/json",
    "pdf": "application/pdf",
}
SUFFIXES: Final = {
    "csv": "csv",
    "breakdown-csv": "breakdown.csv",
    "xlsx": "xlsx",
    "json": "json",
    "pdf": "pdf",
}
# Which selection fields each kind takes: required, then optional; anything else is refused.
_FIELDS: Final[dict[str, tuple[tuple[str, ...], tuple[str, ...]]]] = {
    "settlement": ((), ("period", "model", "from", "to")),
    "journal": (("from", "to"), ()),
    "statement-json": (("period",), ("model",)),
    "statement-pdf": (("period", "payee"), ("model",)),
}


@dataclass(frozen=True)
class ExportRequest:
    """An export as asked for: ``kind`` (``EXPORT_KINDS``), ``format`` (None: the kind's
    first), and the selection as text (``period``: an id or ``YYYY-MM``; ``model``: a
    model id; ``date_from``/``date_to``: ``YYYY-MM-DD``, inclusive; ``payee``: an address)."""

    kind: str
    format: str | None = None
    period: str | None = None
    model: str | None = None
    date_from: str | None = None
    date_to: str | None = None
    payee: str | None = None

    def _given(self) -> dict[str, str | None]:
        return {
            "period": self.period,
            "model": self.model,
            "from": self.date_from,
            "to": self.date_to,
            "payee": self.payee,
        }

    @classmethod
    def from_params(cls, params: dict[str, Any]) -> ExportRequest:
        """The request stored in a job's parameters (see :meth:`SelectedExport.params`)."""
        return cls(
            kind=str(params.get("kind")),
            format=params.get("format"),
            period=params.get("period"),
            model=params.get("model"),
            date_from=params.get("from"),
            date_to=params.get("to"),
            payee=params.get("payee"),
        )


@dataclass(frozen=True)
class SelectedExport:
    """A checked export: the statements it covers (none for the journal; possibly none for
    an empty date range), the normalised selection, and how to name and type the file."""

    kind: str
    format: str
    statements: tuple[StatementRef, ...]
    filename: str
    period: str | None = None
    model: str | None = None
    date_from: date | None = None
    date_to: date | None = None
    payee: str | None = None
    extra_headers: dict[str, str] = field(default_factory=dict)

    @property
    def media_type(self) -> str:
        return MEDIA_TYPES[self.format]

    @property
    def suffix(self) -> str:
        return SUFFIXES[self.format]

    def params(self) -> dict[str, Any]:
        """The normalised request as JSON (a job's parameters): rerunning it selects the
        same statements, as long as no other period of a ``YYYY-MM`` key closes meanwhile."""
        values: dict[str, Any] = {
            "kind": self.kind,
            "format": self.format,
            "period": self.period,
            "model": self.model,
            "from": self.date_from.isoformat() if self.date_from else None,
            "to": self.date_to.isoformat() if self.date_to else None,
            "payee": self.payee,
        }
        return {k: v for k, v in values.items() if v is not None}


def _check_fields(request: ExportRequest) -> None:
    if request.kind not in EXPORT_KINDS:
        raise ValidationFailed(
            f"kind {request.kind!r} is not one of {', '.join(EXPORT_KINDS)}",
            field="kind",
            code="export_kind_invalid",
        )
    required, optional = _FIELDS[request.kind]
    for name, value in request._given().items():
        if value is None:
            if name in required:
                raise ValidationFailed(
                    f"a {request.kind} export needs {name}", field=name, code=f"{name}_required"
                )
        elif name not in required and name not in optional:
            raise ValidationFailed(
                f"{name} does not apply to a {request.kind} export; leave it out",
                field=name,
                code="field_not_applicable",
            )
    formats = FORMATS[request.kind]
    if request.format is not None and request.format not in formats:
        raise ValidationFailed(
            f"format {request.format!r} is not one of {', '.join(formats)} for a "
            f"{request.kind} export",
            field="format",
            code="format_invalid",
        )


def _name(ref: StatementRef) -> str:
    return ref.short_name.replace(" ", "-")


def select_export(session: Session, request: ExportRequest) -> SelectedExport:
    """Check ``request`` and resolve its statements; raises the domain errors listed in
    the module docstring (422, 404 or 409), never touching anything."""
    _check_fields(request)
    fmt = request.format or FORMATS[request.kind][0]
    suffix = SUFFIXES[fmt]
    kind = request.kind
    if kind == "journal":
        assert request.date_from is not None and request.date_to is not None
        reports.journal_window(request.date_from, request.date_to)  # checks the range
        first = reports.parse_date(request.date_from, "from")
        last = reports.parse_date(request.date_to, "to")
        return SelectedExport(
            kind, fmt, (), f"journal-{first}-{last}.{suffix}", date_from=first, date_to=last
        )
    if kind == "settlement":
        has_range = request.date_from is not None or request.date_to is not None
        if (request.period is None) == (not has_range) or (
            has_range and (request.date_from is None or request.date_to is None)
        ):
            raise ValidationFailed(
                "a settlement export takes either period, or both from and to",
                field="period",
                code="selector_invalid",
            )
        if request.period is not None:
            refs = reports.statements_for_period(session, request.period, request.model)
            label = _name(refs[0]) if len(refs) == 1 else request.period.strip()
            return SelectedExport(
                kind,
                fmt,
                tuple(refs),
                f"settlement-{label}.{suffix}",
                period=request.period.strip(),
                model=request.model,
            )
        assert request.date_from is not None and request.date_to is not None
        refs = reports.statements_in_range(
            session, request.date_from, request.date_to, request.model
        )
        first = reports.parse_date(request.date_from, "from")
        last = reports.parse_date(request.date_to, "to")
        return SelectedExport(
            kind,
            fmt,
            tuple(refs),
            f"settlement-{first}-{last}.{suffix}",
            model=request.model,
            date_from=first,
            date_to=last,
        )
    assert request.period is not None
    ref = reports.statement_for_period(session, request.period, request.model)
    if kind == "statement-json":
        return SelectedExport(
            kind,
            fmt,
            (ref,),
            f"statement-{_name(ref)}.{suffix}",
            period=request.period.strip(),
            model=request.model,
            extra_headers={"X-Statement-SHA256": ref.statement_hash},
        )
    payee = normalize_address(request.payee, "payee")
    reports.payee_statement(session, ref, payee)  # a missing line fails before any byte
    return SelectedExport(
        kind,
        fmt,
        (ref,),
        f"statement-{_name(ref)}-{payee}.{suffix}",
        period=request.period.strip(),
        model=request.model,
        payee=payee,
    )


def iter_export(
    session: Session, selected: SelectedExport, progress: Progress | None = None
) -> Iterator[bytes]:
    """The export's bytes in chunks (see the ``iter_*`` functions of the service); the
    session must stay open until the iterator is exhausted."""
    if selected.kind == "settlement":
        return reports.iter_settlement(session, selected.statements, selected.format, progress)
    if selected.kind == "journal":
        assert selected.date_from is not None and selected.date_to is not None
        return reports.iter_journal_csv(session, selected.date_from, selected.date_to, progress)
    ref = selected.statements[0]
    if selected.kind == "statement-json":
        return reports.iter_statement_json(session, ref, progress)
    assert selected.payee is not None
    return reports.iter_statement_pdf(session, ref, selected.payee)


def write_export(
    session: Session, selected: SelectedExport, out: BinarySink, progress: Progress | None = None
) -> ExportResult:
    """Write the export to ``out`` (see the ``write_*`` functions of the service)."""
    if selected.kind == "settlement":
        return reports.write_settlement(
            session, selected.statements, selected.format, out, progress
        )
    if selected.kind == "journal":
        assert selected.date_from is not None and selected.date_to is not None
        return reports.write_journal_csv(
            session, selected.date_from, selected.date_to, out, progress
        )
    ref = selected.statements[0]
    if selected.kind == "statement-json":
        return reports.write_statement_json(session, ref, out, progress)
    assert selected.payee is not None
    return reports.write_statement_pdf(session, ref, selected.payee, out, progress)


# --- files of the report-generation job -----------------------------------------------------


def exports_dir(settings: Settings) -> Path:
    """Where finished export files live: ``<data_dir>/exports`` (API and workers share it)."""
    return settings.data_dir / "exports"


def stored_path(settings: Settings, job_id: str, fmt: str) -> Path:
    """The finished file of export job ``job_id``: ``<data_dir>/exports/<job_id>.<suffix>``."""
    return exports_dir(settings) / f"{job_id}.{SUFFIXES[fmt]}"


def lock_export_job(session: Session, job_id: str) -> None:
    """Serialise runs of one export job until the session's transaction ends (a resumed
    job and a slow original never write at the same time)."""
    session.execute(
        text("SELECT pg_advisory_xact_lock(hashtextextended(:scope, 0))"),
        {"scope": f"export-job:{job_id}"},
    )


def remove_partial_files(target: Path) -> int:
    """Delete temporary files a crashed run left for ``target``; returns how many. Call it
    holding :func:`lock_export_job`, so no live run is writing them."""
    removed = 0
    for leftover in target.parent.glob(f".{target.name}.*.tmp"):
        leftover.unlink(missing_ok=True)
        removed += 1
    return removed


def write_export_file(
    session: Session, selected: SelectedExport, target: Path, progress: Progress | None = None
) -> ExportResult:
    """Write the export to a temporary file beside ``target``, flush it to disk, then
    rename it to ``target`` (atomic on one filesystem): ``target`` is either absent or
    complete, and a rerun replaces it with the same content."""
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{target.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    try:
        with partial.open("xb") as fh:
            result = write_export(session, selected, fh, progress)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(partial, target)
        directory = os.open(target.parent, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)
    finally:
        partial.unlink(missing_ok=True)
    return result
