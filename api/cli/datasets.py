"""``usefirst dataset …``: local helpers for data owners (no server needed).

``usefirst dataset fingerprint PATH`` hashes a folder (or one file) into a
``usefirst-manifest/v1`` manifest and its content root, streaming every file in 1 MiB
chunks with a byte progress bar on stderr, so stdout stays clean for ``--json``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

from ledger.datasets.fingerprint import Fingerprint, fingerprint_directory
from ledger.errors import DomainError

dataset_app = typer.Typer(
    name="dataset", help="Dataset helpers: fingerprint content before registering it."
)
err_console = Console(stderr=True)


def fingerprint_with_progress(path: Path) -> Fingerprint:
    with Progress(
        TextColumn("[bold]fingerprint[/] {task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        console=err_console,
        transient=False,
    ) as progress:
        task: TaskID = progress.add_task("scanning…", total=None)

        def on_start(file_count: int, total_bytes: int) -> None:
            progress.update(task, total=total_bytes, description=f"{file_count} files")

        def on_progress(_path: str, advanced: int) -> None:
            progress.advance(task, advanced)

        return fingerprint_directory(path, on_progress=on_progress, on_start=on_start)


def _write_atomically(target: Path, text: str) -> None:
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(target)


@dataset_app.command("fingerprint")
def fingerprint(
    path: Path = typer.Argument(..., help="The dataset folder (or a single file)."),
    as_json: bool = typer.Option(False, "--json", help="Print the manifest as JSON on stdout."),
    output: Path | None = typer.Option(
        None, "--output", "-o", help="Also write the manifest JSON to this file."
    ),
) -> None:
    """Compute the manifest (path, size, SHA-256 per file) and the content root of PATH."""
    if not path.exists():
        err_console.print(f"[bold red]error:[/] {path} does not exist", soft_wrap=True)
        raise typer.Exit(2)
    try:
        result = fingerprint_with_progress(path)
    except (OSError, DomainError) as exc:
        err_console.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
        raise typer.Exit(1) from None
    document = json.dumps(result.as_json(), indent=2, ensure_ascii=False) + "\n"
    if output is not None:
        _write_atomically(output, document)
    for note in result.skipped:
        err_console.print(f"[yellow]skipped:[/] {note}", highlight=False)
    if as_json:
        typer.echo(document, nl=False)
        return
    typer.echo(f"content root  {result.root}")
    typer.echo(f"files         {result.file_count}")
    typer.echo(f"bytes         {result.total_bytes}")
    if output is not None:
        typer.echo(f"manifest      {output}")


def register(app: typer.Typer) -> None:
    app.add_typer(dataset_app, name="dataset")
