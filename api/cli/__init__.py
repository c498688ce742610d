"""The ``usefirst`` command line (typer + rich).

Each area registers its commands in its own module; :func:`main` turns expected
failures (:class:`SetupError` and domain errors) into one clear line and a
non-zero exit instead of a traceback.
"""

from __future__ import annotations

import sys

import typer
from rich.console import Console
from rich.markup import escape

from api.cli import admin, chain, datasets, jobs, owner, periods, reports, services
from api.embedded.process import SetupError
from ledger.errors import DomainError

app = typer.Typer(
    name="usefirst",
    help="usefirst: use first, pay later. A data royalty ledger with on-chain settlement.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
services.register(app)
datasets.register(app)
periods.register(app)
reports.register(app)
chain.register(app)
jobs.register(app)
admin.register(app)
owner.register(app)

err_console = Console(stderr=True)


def main() -> None:
    """Console-script entry point."""
    try:
        app()
    except SetupError as exc:
        err_console.print(
            f"[bold red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True
        )
        sys.exit(2)
    except DomainError as exc:
        where = f" [{exc.field}]" if exc.field else ""
        err_console.print(
            f"[bold red]error:[/] {escape(exc.message + where)} ({exc.code})",
            highlight=False,
            soft_wrap=True,
        )
        sys.exit(2)
    except KeyboardInterrupt:
        err_console.print("[yellow]interrupted[/]")
        sys.exit(130)
