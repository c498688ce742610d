"""Benchmark: finance exports of one closed period with 100,000 payees.

Builds the period the way ``scripts/bench_close.py`` does (rollups loaded with COPY:
20,000 datasets × 5 co-owners, 10M retrieval events' worth of rollups, one revenue
event), closes it with the real close service, then runs each export in a fresh child
process and prints its wall time and RSS: the baseline is the child's resident size
right before the export (interpreter, imports, a connection), the peak its high-water
mark during the export (``VmHWM``, reset at the start). Prints figures only; nothing is
written to docs/.

Usage: ``.venv/bin/python scripts/bench_exports.py [--payees 100000]``. Uses its own
database (``usefirst_bench_exports``) on the configured PostgreSQL.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("USEFIRST_PG_DATABASE", "usefirst_bench_exports")

import bench_close
from benchlib import machine, setup_database
from rich.console import Console
from rich.table import Table

EXPORTS = ("csv", "breakdown-csv", "xlsx", "statement-json", "journal", "statement-pdf")
console = Console(width=110)


def _status_mib(field: str) -> float:
    """``VmRSS`` (resident now) or ``VmHWM`` (peak) of this process, in MiB.

    Not ``ru_maxrss``: Linux carries it over from the parent across fork and exec, so a
    child would report the parent's peak (the close of 100,000 lines)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024  # kB
    raise RuntimeError(f"no {field} in /proc/self/status")


def _reset_peak_rss() -> None:
    # Writing 5 to clear_refs resets VmHWM to the current RSS (Linux ≥ 4.0).
    Path("/proc/self/clear_refs").write_text("5")


def run_export(export: str, period_id: uuid.UUID, output: Path) -> dict[str, object]:
    """In this (child) process: one export to ``output``, timed."""
    from sqlalchemy import text

    from ledger.db import session_scope
    from ledger.reports import service as reports

    with session_scope() as session:
        session.execute(text("SELECT 1"))
        _reset_peak_rss()
        baseline = _status_mib("VmRSS")
        started = time.perf_counter()
        with output.open("wb") as fh:
            if export in reports.SETTLEMENT_FORMATS:
                refs = reports.statements_for_period(session, period_id)
                result = reports.write_settlement(session, refs, export, fh)
            elif export == "statement-json":
                ref = reports.statement_for_period(session, period_id)
                result = reports.write_statement_json(session, ref, fh)
            elif export == "journal":
                today = datetime.now(UTC).date()
                result = reports.write_journal_csv(session, today, today, fh)
            else:
                ref = reports.statement_for_period(session, period_id)
                payee = session.execute(
                    text(
                        "SELECT address FROM statement_line WHERE period_id = :p "
                        "ORDER BY jsonb_array_length(breakdown) DESC, address LIMIT 1"
                    ),
                    {"p": period_id},
                ).scalar_one()
                result = reports.write_statement_pdf(session, ref, payee, fh)
        seconds = time.perf_counter() - started
    return {
        "export": export,
        "seconds": round(seconds, 2),
        "rows": result.rows,
        "mib": round(result.bytes_written / 2**20, 1),
        "baseline_rss_mib": round(baseline, 0),
        "peak_rss_mib": round(_status_mib("VmHWM"), 0),
    }


def build_period(payees: int) -> uuid.UUID:
    from ledger.db import session_scope
    from ledger.periods import close as close_service
    from ledger.settings import get_settings

    bench_close.DATASETS = payees // bench_close.CO_OWNERS_PER_DATASET
    bench_close.PAYEES = bench_close.DATASETS * bench_close.CO_OWNERS_PER_DATASET
    bench_close.TRAINED_DATASETS = bench_close.DATASETS // 5
    setup_database()
    dsn = get_settings().effective_database_url.replace("postgresql+psycopg://", "postgresql://")
    started = time.perf_counter()
    _model_id, period_id = bench_close.load_data(dsn)
    loaded = time.perf_counter()
    with session_scope() as session:
        close_service.begin_close(session, period_id)
    with session_scope() as session:
        outcome = close_service.finish_close(session, period_id)
    assert outcome.line_count == bench_close.PAYEES, outcome
    console.print(
        f"loaded {bench_close.DATASETS:,} datasets in {loaded - started:.1f} s, closed "
        f"{outcome.line_count:,} lines in {time.perf_counter() - loaded:.1f} s"
    )
    return period_id


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--payees", type=int, default=100_000)
    parser.add_argument("--child", nargs=3, metavar=("EXPORT", "PERIOD", "OUTPUT"))
    args = parser.parse_args()
    if args.child:
        export, period, output = args.child
        print(json.dumps(run_export(export, uuid.UUID(period), Path(output))))
        return

    console.print(f"[bold]export benchmark[/] on {machine()}")
    period_id = build_period(args.payees)
    out_dir = Path(os.environ.get("TMPDIR", "/tmp")) / f"usefirst-bench-exports-{os.getpid()}"
    out_dir.mkdir(parents=True, exist_ok=True)
    table = Table(title=f"exports of one statement with {args.payees:,} payees")
    for column in ("export", "seconds", "rows", "MiB written", "baseline RSS MiB", "peak RSS MiB"):
        table.add_column(column, justify="left" if column == "export" else "right")
    for export in EXPORTS:
        output = out_dir / f"export.{export}"
        child = subprocess.run(
            [sys.executable, __file__, "--child", export, str(period_id), str(output)],
            capture_output=True,
            text=True,
            check=False,
        )
        if child.returncode != 0:
            console.print(f"[red]{export} failed[/]\n{child.stderr}")
            continue
        figures = json.loads(child.stdout.strip().splitlines()[-1])
        console.print(json.dumps(figures))
        table.add_row(
            export,
            f"{figures['seconds']:.2f}",
            f"{figures['rows']:,}",
            f"{figures['mib']}",
            f"{figures['baseline_rss_mib']:.0f}",
            f"{figures['peak_rss_mib']:.0f}",
        )
        output.unlink(missing_ok=True)
    out_dir.rmdir()
    console.print(table)


if __name__ == "__main__":
    main()
