"""Finance exports: settlement reports (CSV, XLSX), the journal (CSV), a payee's PDF
statement and the canonical statement JSON.

Every export reads inside the caller's session (one snapshot), streams rows through
server-side cursors and writes incrementally, so it works for 100,000 payees without
holding them in memory. Two shapes per export:

- ``write_*(session, …, out, progress=None) -> ExportResult`` writes to a binary file
  object and reports rows (or bytes), size and SHA-256 of what it wrote;
- ``iter_*(session, …, progress=None) -> Iterator[bytes]`` yields chunks for an HTTP
  streaming response; the session must stay open until the iterator is exhausted.
  CSV and JSON stream from the first row; XLSX and PDF are spooled (memory, then a
  temporary file) because their last bytes (ZIP directory, PDF xref) come last.

``progress(done, total)`` is called as rows (CSV, XLSX), bytes (JSON) or pages (PDF)
are written. Selection errors are domain errors with stable codes:
``period_invalid``, ``model_invalid``, ``date_invalid``, ``date_range_invalid``,
``payee_invalid`` (422), ``period_not_found``, ``model_not_found``,
``payee_not_in_statement`` (404), ``period_not_closed`` (409), ``period_ambiguous``
(422). A statement whose stored lines do not add up to its totals or whose bytes do
not hash to its hash raises :class:`ExportIntegrityError` (our data is wrong, not the
request).
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, Final

from sqlalchemy import text
from sqlmodel import Session

from ledger.errors import NotFound, StateError, ValidationFailed
from ledger.reports import journal_csv, queries, settlement_csv, settlement_xlsx, statement_pdf
from ledger.reports.queries import PayeeLine, StatementRef
from ledger.reports.statement_json import iter_statement_json
from ledger.reports.streams import (
    BinarySink,
    ExportIntegrityError,
    MeteredWriter,
    Progress,
    spooled_chunks,
)

__all__ = [
    "SETTLEMENT_FORMATS",
    "ExportIntegrityError",
    "ExportResult",
    "StatementRef",
    "iter_journal_csv",
    "iter_settlement",
    "iter_statement_json",
    "iter_statement_pdf",
    "journal_window",
    "parse_date",
    "payee_statement",
    "statement_for_period",
    "statements_for_period",
    "statements_in_range",
    "write_journal_csv",
    "write_settlement",
    "write_statement_json",
    "write_statement_pdf",
]

SETTLEMENT_FORMATS: Final = ("csv", "breakdown-csv", "xlsx")
_PERIOD_KEY = re.compile(r"[0-9]{4}-(0[1-9]|1[0-2])")
_ADDRESS = re.compile(r"0x[0-9a-fA-F]{40}")


@dataclass(frozen=True)
class ExportResult:
    """What an export wrote: ``rows`` (data rows, or pages for a PDF, or 1 for JSON)."""

    export: str
    format: str
    statements: tuple[StatementRef, ...]
    rows: int
    bytes_written: int
    sha256: str

    def as_json(self) -> dict[str, Any]:
        return {
            "export": self.export,
            "format": self.format,
            "rows": self.rows,
            "bytes": self.bytes_written,
            "sha256": self.sha256,
            "statements": [ref.as_json() for ref in self.statements],
        }


class _Tracker:
    """Passes progress on and remembers the last ``done``."""

    def __init__(self, progress: Progress | None) -> None:
        self._progress = progress
        self.done = 0

    def __call__(self, done: int, total: int) -> None:
        self.done = done
        if self._progress is not None:
            self._progress(done, total)


# --- selection ------------------------------------------------------------------------------


def _period_selector(period: str | uuid.UUID) -> tuple[uuid.UUID | None, str | None]:
    if isinstance(period, uuid.UUID):
        return period, None
    value = period.strip()
    try:
        return uuid.UUID(value), None
    except ValueError:
        pass
    if _PERIOD_KEY.fullmatch(value):
        return None, value
    raise ValidationFailed(
        f"period {period!r} is neither a period id (UUID) nor a key like 2026-10",
        field="period",
        code="period_invalid",
    )


def _model_id(session: Session, model: str | uuid.UUID | None) -> uuid.UUID | None:
    if model is None:
        return None
    try:
        model_id = model if isinstance(model, uuid.UUID) else uuid.UUID(model.strip())
    except ValueError:
        raise ValidationFailed(
            f"model {model!r} is not a model id (UUID)", field="model", code="model_invalid"
        ) from None
    exists = session.execute(
        text("SELECT 1 FROM model WHERE id = :model"), {"model": model_id}
    ).scalar_one_or_none()
    if exists is None:
        raise NotFound(f"no model {model_id}", field="model", code="model_not_found")
    return model_id


def statements_for_period(
    session: Session, period: str | uuid.UUID, model: str | uuid.UUID | None = None
) -> list[StatementRef]:
    """The closed statements a period selector names: a period id, or a key
    (``2026-10``) of one model (``model``) or of every model that closed that month.

    Raises ``period_invalid``, ``model_invalid``, ``model_not_found``,
    ``period_not_found`` (nothing matches) or ``period_not_closed`` (periods match but
    none is closed, anchored or paid).
    """
    period_id, key = _period_selector(period)
    model_id = _model_id(session, model)
    refs = queries.statements_where(
        session,
        "(CAST(:period AS uuid) IS NULL OR p.id = :period) "
        "AND (CAST(:key AS text) IS NULL OR p.key = :key) "
        "AND (CAST(:model AS uuid) IS NULL OR p.model_id = :model)",
        {"period": period_id, "key": key, "model": model_id},
    )
    if refs:
        return refs
    matches = queries.period_states(session, period_id=period_id, key=key, model_id=model_id)
    label = f"{period}" + (f" of model {model_id}" if model_id else "")
    if not matches:
        raise NotFound(
            f"no period {label}; list a model's periods with `usefirst period list --model M`",
            field="period",
            code="period_not_found",
        )
    states = ", ".join(sorted({state for _, _, state in matches}))
    raise StateError(
        f"period {label} is {states}; only closed, anchored or paid periods have a statement "
        "to export: close it first (`usefirst period close`)",
        field="period",
        code="period_not_closed",
    )


def statement_for_period(
    session: Session, period: str | uuid.UUID, model: str | uuid.UUID | None = None
) -> StatementRef:
    """Exactly one closed statement (as :func:`statements_for_period`); a key without
    ``model`` that names several models' statements raises ``period_ambiguous``."""
    refs = statements_for_period(session, period, model)
    if len(refs) > 1:
        raise ValidationFailed(
            f"period {period} names the statements of {len(refs)} models; pass the model id "
            "(--model) or the period id",
            field="model",
            code="period_ambiguous",
        )
    return refs[0]


def parse_date(value: str | date, field: str) -> date:
    """An ISO date (``2026-10-31``) or raise ``date_invalid`` naming ``field``."""
    if isinstance(value, date):
        return value
    try:
        return date.fromisoformat(value.strip())
    except ValueError:
        raise ValidationFailed(
            f"{field} {value!r} is not a date; use YYYY-MM-DD", field=field, code="date_invalid"
        ) from None


def _day_bounds(date_from: str | date, date_to: str | date) -> tuple[datetime, datetime]:
    first, last = parse_date(date_from, "from"), parse_date(date_to, "to")
    if last < first:
        raise ValidationFailed(
            f"the range ends ({last}) before it starts ({first}); --to is inclusive and must "
            "not be before --from",
            field="to",
            code="date_range_invalid",
        )
    if last == date.max:  # the exclusive end (the day after) would not be a date
        raise ValidationFailed(
            f"to {last} is the last representable day; use an earlier date",
            field="to",
            code="date_invalid",
        )
    start = datetime.combine(first, time(0), tzinfo=UTC)
    end = datetime.combine(last + timedelta(days=1), time(0), tzinfo=UTC)
    return start, end


def journal_window(date_from: str | date, date_to: str | date) -> tuple[datetime, datetime]:
    """``[from 00:00 UTC, the day after to 00:00 UTC)``: both dates inclusive."""
    return _day_bounds(date_from, date_to)


def statements_in_range(
    session: Session,
    date_from: str | date,
    date_to: str | date,
    model: str | uuid.UUID | None = None,
) -> list[StatementRef]:
    """Closed, anchored and paid statements whose period starts between the two dates
    (inclusive, UTC), of one model or all, in start order. May be empty."""
    start, end = _day_bounds(date_from, date_to)
    model_id = _model_id(session, model)
    return queries.statements_where(
        session,
        "p.starts_at >= :start AND p.starts_at < :end "
        "AND (CAST(:model AS uuid) IS NULL OR p.model_id = :model)",
        {"start": start, "end": end, "model": model_id},
    )


def payee_statement(session: Session, ref: StatementRef, payee: str) -> PayeeLine:
    """The payee's line of ``ref`` (address in any letter case), or ``payee_invalid`` /
    ``payee_not_in_statement``."""
    if not _ADDRESS.fullmatch(payee.strip()):
        raise ValidationFailed(
            f"payee {payee!r} is not an address (0x and 40 hex digits)",
            field="payee",
            code="payee_invalid",
        )
    found = queries.payee_line(session, ref.period_id, payee.strip())
    if found is None:
        raise NotFound(
            f"payee {payee} has no line in the statement of {ref.period_key} "
            f"(model {ref.model_id}); payees appear only where something accrued, carried "
            "or was adjusted",
            field="payee",
            code="payee_not_in_statement",
        )
    return found


# --- settlement reports ---------------------------------------------------------------------


def _chunks_to(
    chunks: Callable[[_Tracker], Iterator[bytes]],
    out: BinarySink,
    progress: Progress | None,
    export: str,
    fmt: str,
    statements: Sequence[StatementRef],
) -> ExportResult:
    meter = MeteredWriter(out)
    tracker = _Tracker(progress)
    for chunk in chunks(tracker):
        meter.write(chunk)
    meter.flush()
    return ExportResult(
        export, fmt, tuple(statements), tracker.done, meter.bytes_written, meter.sha256
    )


def iter_settlement(
    session: Session,
    statements: Sequence[StatementRef],
    fmt: str,
    progress: Progress | None = None,
) -> Iterator[bytes]:
    """The settlement report of ``statements`` in ``fmt`` (``SETTLEMENT_FORMATS``):
    ``csv`` one row per (period, payee); ``breakdown-csv`` one row per payee × dataset ×
    kind; ``xlsx`` the workbook (spooled)."""
    if fmt == "csv":
        return settlement_csv.iter_lines_csv(session, statements, progress)
    if fmt == "breakdown-csv":
        return settlement_csv.iter_breakdown_csv(session, statements, progress)
    if fmt == "xlsx":
        return spooled_chunks(
            lambda spool: settlement_xlsx.write_settlement_xlsx(
                session, statements, spool, progress
            )
        )
    raise ValidationFailed(
        f"format {fmt!r} is not one of {', '.join(SETTLEMENT_FORMATS)}",
        field="format",
        code="format_invalid",
    )


def write_settlement(
    session: Session,
    statements: Sequence[StatementRef],
    fmt: str,
    out: BinarySink,
    progress: Progress | None = None,
) -> ExportResult:
    """Write the settlement report in ``fmt`` to ``out`` (see :func:`iter_settlement`).
    ``rows`` counts lines (csv), sources (breakdown-csv) or both (xlsx)."""
    if fmt == "xlsx":
        meter = MeteredWriter(out)
        tracker = _Tracker(progress)
        settlement_xlsx.write_settlement_xlsx(session, statements, meter, tracker)
        meter.flush()
        return ExportResult(
            "settlement", fmt, tuple(statements), tracker.done, meter.bytes_written, meter.sha256
        )
    return _chunks_to(
        lambda tracker: iter_settlement(session, statements, fmt, tracker),
        out,
        progress,
        "settlement",
        fmt,
        statements,
    )


# --- journal --------------------------------------------------------------------------------


def iter_journal_csv(
    session: Session,
    date_from: str | date,
    date_to: str | date,
    progress: Progress | None = None,
) -> Iterator[bytes]:
    """Journal entries of transactions posted from ``date_from`` to ``date_to``
    (inclusive, UTC) as CSV chunks (columns in ``journal_csv.COLUMNS``)."""
    start, end = journal_window(date_from, date_to)
    return journal_csv.iter_journal_csv(session, start, end, progress)


def write_journal_csv(
    session: Session,
    date_from: str | date,
    date_to: str | date,
    out: BinarySink,
    progress: Progress | None = None,
) -> ExportResult:
    """Write the journal CSV to ``out``; ``rows`` counts entries."""
    return _chunks_to(
        lambda tracker: iter_journal_csv(session, date_from, date_to, tracker),
        out,
        progress,
        "journal",
        "csv",
        (),
    )


# --- one payee's statement ------------------------------------------------------------------


def _render_pdf(
    session: Session, ref: StatementRef, payee: PayeeLine, out: BinarySink, compress: bool
) -> int:
    usage = queries.payee_usage(session, ref, payee.line.address)
    period_keys = queries.chart_period_keys(session, ref)
    return statement_pdf.write_statement_pdf(ref, payee, usage, period_keys, out, compress=compress)


def write_statement_pdf(
    session: Session,
    ref: StatementRef,
    payee: str,
    out: BinarySink,
    progress: Progress | None = None,
    *,
    compress: bool = True,
) -> ExportResult:
    """Write the payee's PDF statement of ``ref`` to ``out``; ``rows`` is the page count.
    Raises ``payee_invalid`` or ``payee_not_in_statement``."""
    line = payee_statement(session, ref, payee)
    meter = MeteredWriter(out)
    if progress is not None:
        progress(0, 1)
    pages = _render_pdf(session, ref, line, meter, compress)
    meter.flush()
    if progress is not None:
        progress(1, 1)
    return ExportResult("statement-pdf", "pdf", (ref,), pages, meter.bytes_written, meter.sha256)


def iter_statement_pdf(session: Session, ref: StatementRef, payee: str) -> Iterator[bytes]:
    """The payee's PDF statement in chunks (the line is looked up before the first chunk,
    so a missing payee raises at the call, not mid-stream)."""
    line = payee_statement(session, ref, payee)
    return spooled_chunks(lambda spool: _render_pdf(session, ref, line, spool, True))


def write_statement_json(
    session: Session, ref: StatementRef, out: BinarySink, progress: Progress | None = None
) -> ExportResult:
    """Write the canonical statement bytes to ``out``; the result's ``sha256`` is the
    statement hash (checked while streaming)."""
    meter = MeteredWriter(out)
    for chunk in iter_statement_json(session, ref, progress):
        meter.write(chunk)
    meter.flush()
    return ExportResult("statement-json", "json", (ref,), 1, meter.bytes_written, meter.sha256)
