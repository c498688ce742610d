"""``usefirst jobs``: background job state, as ``GET /v1/jobs`` shows it."""

from __future__ import annotations

import json

import typer
from rich.console import Console
from rich.table import Table

console = Console()
jobs_app = typer.Typer(help="Background jobs: close, anchor, exports.", invoke_without_command=True)


def register(app: typer.Typer) -> None:
    app.add_typer(jobs_app, name="jobs")


@jobs_app.callback()
def list_jobs(
    ctx: typer.Context,
    limit: int = typer.Option(20, "--limit", min=1, max=500),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """List recent jobs (newest first)."""
    if ctx.invoked_subcommand is not None:
        return
    from api import jobs
    from ledger.db import session_scope

    with session_scope() as session:
        rows = [
            {
                "id": j.id,
                "kind": j.kind,
                "state": j.state,
                "step": j.progress.get("step"),
                "error": j.error,
                "updated_at": j.updated_at.isoformat() if j.updated_at else None,
            }
            for j in jobs.list_jobs(session, None, limit=limit)
        ]
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    table = Table(title="jobs")
    for column in ("id", "kind", "state", "step", "updated", "error"):
        table.add_column(column)
    for row in rows:
        table.add_row(
            row["id"],
            row["kind"],
            row["state"],
            str(row["step"] or ""),
            str(row["updated_at"]),
            str(row["error"] or ""),
        )
    console.print(table)


@jobs_app.command("show")
def show(job_id: str) -> None:
    """Print one job as JSON."""
    from api import jobs
    from ledger.db import session_scope

    with session_scope() as session:
        job = jobs.get_job(session, job_id)
        payload = {
            "id": job.id,
            "kind": job.kind,
            "state": job.state,
            "params": job.params,
            "progress": job.progress,
            "result": job.result,
            "error": job.error,
        }
    typer.echo(json.dumps(payload, indent=2, default=str))


@jobs_app.command("resume")
def resume(
    stale_after_s: float = typer.Option(
        300.0, "--stale-after", help="Resume jobs silent for this many seconds."
    ),
) -> None:
    """Re-enqueue queued/running jobs whose worker vanished (the beat does this every minute)."""
    from api.tasks import resume_stale_jobs

    resumed = resume_stale_jobs(stale_after_s)
    console.print(f"resumed {len(resumed)} job(s)" + (": " + ", ".join(resumed) if resumed else ""))
