"""``usefirst up | down | status | migrate | demo``: the embedded services."""

from __future__ import annotations

import json

import typer
from rich.console import Console
from rich.table import Table

from api import embedded
from ledger.settings import get_settings

console = Console()


def _print_reports(reports: list[embedded.ServiceReport], as_json: bool) -> None:
    if as_json:
        typer.echo(json.dumps([r.as_dict() for r in reports], indent=2))
        return
    table = Table(title="usefirst services")
    for column in ("service", "mode", "state", "pid", "url", "version", "notes"):
        table.add_column(column)
    for r in reports:
        table.add_row(
            r.name,
            r.mode,
            "[green]running[/]" if r.running else "[red]stopped[/]",
            str(r.pid or "-"),
            r.url,
            r.version,
            ", ".join(r.notes),
        )
    console.print(table)


def register(app: typer.Typer) -> None:
    @app.command()
    def up(
        as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
        no_worker: bool = typer.Option(False, "--no-worker", help="Do not start a Celery worker."),
    ) -> None:
        """Start the embedded services (or check the external ones) and migrate the database."""
        reports = embedded.up(get_settings(), worker_enabled=not no_worker)
        _print_reports(reports, as_json)

    @app.command()
    def down() -> None:
        """Stop the embedded services started by `usefirst up`."""
        stopped = embedded.down(get_settings())
        console.print("stopped: " + (", ".join(stopped) if stopped else "nothing was running"))

    @app.command()
    def status(
        as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
    ) -> None:
        """Report each service: pid, port/URL, version."""
        _print_reports(embedded.status(get_settings()), as_json)

    @app.command()
    def migrate() -> None:
        """Upgrade the database schema to the latest revision."""
        from ledger.db import current_revision
        from ledger.db import migrate as run_migrations

        settings = get_settings()
        embedded.check_database(settings)
        run_migrations(settings)
        console.print(f"database at revision {current_revision(settings)}")

    @app.command()
    def serve(
        host: str = typer.Option("127.0.0.1", "--host", help="Bind address."),
        port: int = typer.Option(8000, "--port", min=1, max=65535),
        workers: int = typer.Option(
            0, "--workers", help="Worker processes; 0 = one per CPU core (at least 2)."
        ),
        reload: bool = typer.Option(False, "--reload", help="Development: reload on changes."),
    ) -> None:
        """Run the HTTP API with uvicorn (JSON logs, request ids)."""
        import os

        import uvicorn

        from api.embedded.process import SetupError, port_is_free

        if not port_is_free(port, host if host != "0.0.0.0" else "127.0.0.1"):  # noqa: S104
            raise SetupError(f"port {port} is taken; pass --port with a free port")
        count = workers or max(2, os.cpu_count() or 1)
        # Worker processes read settings afresh: structured logs by default when serving.
        os.environ.setdefault("USEFIRST_LOG_JSON", "1")
        embedded.check_database(get_settings())
        uvicorn.run(
            "api.app:create_app",
            factory=True,
            host=host,
            port=port,
            workers=1 if reload else count,
            reload=reload,
            proxy_headers=True,
            access_log=False,  # our middleware logs one JSON line per request
            log_level="info",
        )

    @app.command()
    def backup(
        output: str = typer.Option(
            "", "--output", "-o", help="Archive path (default: usefirst-backup-<time>.tar.gz)."
        ),
    ) -> None:
        """Back up the database (pg_dump) and the contract deployment records."""
        from datetime import UTC, datetime
        from pathlib import Path

        from api.backup import create_backup

        settings = get_settings()
        embedded.check_database(settings)
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        target = Path(output or f"usefirst-backup-{stamp}.tar.gz")
        manifest = create_backup(settings, target)
        console.print(
            f"backup written to {target} (schema {manifest['schema_revision']}, "
            f"{manifest['database_bytes']} bytes of database, "
            f"{len(manifest['deployments'])} deployment records)"
        )

    @app.command()
    def restore(
        archive: str = typer.Argument(..., help="A `usefirst backup` archive."),
        force: bool = typer.Option(False, "--force", help="Replace a non-empty embedded database."),
    ) -> None:
        """Restore a backup into this data directory's database (then `usefirst up`)."""
        from pathlib import Path

        from api.backup import restore_backup

        manifest = restore_backup(get_settings(), Path(archive), force=force)
        console.print(
            f"restored {archive} (schema {manifest['schema_revision']}, taken "
            f"{manifest['created_at']}); run `usefirst up` and `usefirst reconcile` next"
        )

    @app.command()
    def demo(
        questions: int = typer.Option(300, help="How many questions the RAG app answers."),
        output: str = typer.Option("demo-output", help="Directory for corpora and exports."),
    ) -> None:
        """Run the end-to-end demo on the embedded services."""
        from pathlib import Path

        from api.demo import run_demo

        run_demo(console, question_count=questions, output=Path(output))
