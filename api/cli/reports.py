"""``usefirst export …``: finance exports to files, with progress bars and ``--json``.

Each command reads in one transaction, streams into a temporary file next to the
target and renames it into place only when the export finished (a failed export
leaves no partial file). Progress goes to stderr, so ``--json`` on stdout stays clean.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, TYPE_CHECKING, TypeVar

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from ledger.errors import ValidationFailed

if TYPE_CHECKING:
    from sqlmodel import Session

    from ledger.reports.queries import StatementRef
    from ledger.reports.service import ExportResult

Selected = TypeVar("Selected")

export_app = typer.Typer(
    name="export",
    help="Finance exports: settlement reports (CSV/XLSX), the journal, PDF statements and "
    "the canonical statement JSON.",
    no_args_is_help=True,
)
err_console = Console(stderr=True)


@contextmanager
def _atomic_output(target: Path) -> Iterator[IO[bytes]]:
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        with tmp.open("wb") as fh:
            yield fh
        tmp.replace(target)
    finally:
        tmp.unlink(missing_ok=True)


@contextmanager
def _progress(label: str) -> Iterator[Callable[[int, int], None]]:
    with Progress(
        TextColumn(f"[bold]{label}[/]"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=err_console,
        transient=False,
    ) as progress:
        task = progress.add_task(label, total=None)

        def update(done: int, total: int) -> None:
            progress.update(task, completed=done, total=max(total, done) or None)

        yield update


def _export(
    label: str,
    output: Path,
    as_json: bool,
    select: Callable[[Session], Selected],
    write: Callable[[Session, Selected, IO[bytes], Callable[[int, int], None]], ExportResult],
) -> None:
    """Select (errors surface before any file is opened), write atomically with a
    progress bar, then print the summary (``--json``: as JSON)."""
    from ledger.db import session_scope

    started = time.monotonic()
    with session_scope() as session:
        selected = select(session)
        with _atomic_output(output) as fh, _progress(label) as progress:
            result = write(session, selected, fh, progress)
    summary = {
        **result.as_json(),
        "output": str(output),
        "seconds": round(time.monotonic() - started, 3),
    }
    if as_json:
        typer.echo(json.dumps(summary, indent=2))
        return
    what = f"{len(result.statements)} statement(s), " if result.export == "settlement" else ""
    unit = "page(s)" if result.format == "pdf" else "row(s)"
    typer.echo(
        f"wrote {what}{result.rows} {unit}, {result.bytes_written} bytes to {output} "
        f"in {summary['seconds']} s (sha256 {result.sha256})"
    )


PERIOD_OPTION = typer.Option(..., "--period", help="Period id, or YYYY-MM with --model.")
MODEL_OPTION = typer.Option(None, "--model", help="Model id (when --period is a key).")
OUTPUT_OPTION = typer.Option(
    ..., "--output", "-o", help="File to write (replaced only once the export is complete)."
)
JSON_OPTION = typer.Option(False, "--json", help="Print a JSON summary on stdout.")


@export_app.command("settlement")
def settlement(
    output: Path = OUTPUT_OPTION,
    fmt: str = typer.Option(
        "csv",
        "--format",
        help="csv (one row per period and payee), breakdown-csv (payee × dataset × kind) "
        "or xlsx (a sheet per statement and its breakdown).",
    ),
    period: str | None = typer.Option(
        None, "--period", help="Period id, or YYYY-MM (all models, or the one of --model)."
    ),
    model: str | None = MODEL_OPTION,
    date_from: str | None = typer.Option(
        None, "--from", help="Range start YYYY-MM-DD: periods starting on or after it."
    ),
    date_to: str | None = typer.Option(None, "--to", help="Range end YYYY-MM-DD (inclusive)."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Settlement report of one period or of every closed period starting in a date range."""
    from ledger.reports import service as reports

    if fmt not in reports.SETTLEMENT_FORMATS:
        raise ValidationFailed(
            f"--format must be one of {', '.join(reports.SETTLEMENT_FORMATS)}, got {fmt!r}",
            field="format",
            code="format_invalid",
        )
    if (period is None) == (date_from is None and date_to is None) or (
        period is None and (date_from is None or date_to is None)
    ):
        raise ValidationFailed(
            "pass either --period, or both --from and --to", field="period", code="selector_invalid"
        )

    def select(session: Session) -> list[StatementRef]:
        if period is not None:
            return reports.statements_for_period(session, period, model)
        assert date_from is not None and date_to is not None
        return reports.statements_in_range(session, date_from, date_to, model)

    _export(
        f"settlement {fmt}",
        output,
        as_json,
        select,
        lambda session, refs, fh, progress: reports.write_settlement(
            session, refs, fmt, fh, progress
        ),
    )


@export_app.command("journal")
def journal(
    date_from: str = typer.Option(..., "--from", help="First day YYYY-MM-DD (UTC)."),
    date_to: str = typer.Option(..., "--to", help="Last day YYYY-MM-DD (UTC, inclusive)."),
    output: Path = OUTPUT_OPTION,
    as_json: bool = JSON_OPTION,
) -> None:
    """Journal entries posted in a date range, as CSV for an accounting import."""
    from ledger.reports import service as reports

    _export(
        "journal csv",
        output,
        as_json,
        lambda _session: reports.journal_window(date_from, date_to),
        lambda session, _window, fh, progress: reports.write_journal_csv(
            session, date_from, date_to, fh, progress
        ),
    )


@export_app.command("statement-pdf")
def statement_pdf(
    period: str = PERIOD_OPTION,
    payee: str = typer.Option(..., "--payee", help="The payee's address."),
    output: Path = OUTPUT_OPTION,
    model: str | None = MODEL_OPTION,
    as_json: bool = JSON_OPTION,
) -> None:
    """One payee's PDF statement: line, breakdown, settlement, verification, usage chart."""
    from ledger.reports import service as reports

    def select(session: Session) -> StatementRef:
        ref = reports.statement_for_period(session, period, model)
        reports.payee_statement(session, ref, payee)  # a missing line fails before the file
        return ref

    _export(
        "statement pdf",
        output,
        as_json,
        select,
        lambda session, ref, fh, progress: reports.write_statement_pdf(
            session, ref, payee, fh, progress
        ),
    )


@export_app.command("statement-json")
def statement_json(
    period: str = PERIOD_OPTION,
    output: Path = OUTPUT_OPTION,
    model: str | None = MODEL_OPTION,
    as_json: bool = JSON_OPTION,
) -> None:
    """The canonical statement JSON: the exact bytes whose SHA-256 is anchored on chain."""
    from ledger.reports import service as reports

    _export(
        "statement json (bytes)",
        output,
        as_json,
        lambda session: reports.statement_for_period(session, period, model),
        lambda session, ref, fh, progress: reports.write_statement_json(session, ref, fh, progress),
    )


def register(app: typer.Typer) -> None:
    app.add_typer(export_app, name="export")
