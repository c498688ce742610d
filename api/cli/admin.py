"""``usefirst admin …``: accounts and API keys, straight on the database.

The same services as ``/v1/accounts`` (an operator with database access needs no key):
``account create`` makes an account and, unless ``--no-key``, its first API key, printed
once (only its hash is stored); ``key create/list/revoke`` manage keys; ``account
disable`` stops every key of an account. ``--json`` prints what the HTTP API would return.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from typing import Any

import typer
from pydantic import BaseModel
from rich.console import Console
from rich.table import Table

from api.schemas.accounts import ApiKeyIssuedOut, account_out, api_key_out, issued_key_out

console = Console()
err_console = Console(stderr=True)
admin_app = typer.Typer(help="Admin: accounts and API keys.", no_args_is_help=True)
account_app = typer.Typer(help="Accounts: create, list, disable.", no_args_is_help=True)
key_app = typer.Typer(help="API keys: create (shown once), list, revoke.", no_args_is_help=True)
admin_app.add_typer(account_app, name="account")
admin_app.add_typer(key_app, name="key")

JSON_OPTION = typer.Option(False, "--json", help="Print JSON (as the HTTP API returns it).")


def register(app: typer.Typer) -> None:
    app.add_typer(admin_app, name="admin")


def emit_json(value: BaseModel | Sequence[BaseModel]) -> None:
    """Print a response model (or a list of them) as JSON on stdout."""
    data: Any = (
        value.model_dump(mode="json")
        if isinstance(value, BaseModel)
        else [item.model_dump(mode="json") for item in value]
    )
    typer.echo(json.dumps(data, indent=2, ensure_ascii=False))


def emit_table(title: str, columns: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    table = Table(title=title)
    for column in columns:
        table.add_column(column)
    for row in rows:
        table.add_row(*("" if value is None else str(value) for value in row))
    console.print(table)


def _uuid(value: str, name: str) -> uuid.UUID:
    from ledger.errors import ValidationFailed

    try:
        return uuid.UUID(value)
    except ValueError:
        raise ValidationFailed(f"{name} {value!r} is not a UUID", field=name) from None


def _show_key(issued: ApiKeyIssuedOut, as_json: bool) -> None:
    if as_json:
        emit_json(issued)
        return
    console.print(f"API key for account {issued.account_id} (prefix {issued.prefix}):")
    typer.echo(issued.key)
    err_console.print("[yellow]This is the only time the key is shown; store it now.[/]")


@account_app.command("create")
def account_create(
    role: str = typer.Option(..., "--role", help="owner, model_team, finance or admin."),
    name: str = typer.Option(..., "--name", help="Display name."),
    contact: str | None = typer.Option(None, "--contact", help="E-mail or similar."),
    key_label: str = typer.Option("initial", "--key-label", help="Label of the first key."),
    no_key: bool = typer.Option(False, "--no-key", help="Do not issue a key."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Create an account and (unless --no-key) its first API key, shown once."""
    from ledger.db import session_scope
    from ledger.owners.service import create_account, issue_api_key

    with session_scope() as session:
        account = create_account(session, role=role, display_name=name, contact=contact)
        issued = None if no_key else issue_api_key(session, account.id, label=key_label)
        created = account_out(account)
        key = issued_key_out(issued) if issued else None
    if as_json:
        typer.echo(
            json.dumps(
                {
                    "account": created.model_dump(mode="json"),
                    "api_key": key.model_dump(mode="json") if key else None,
                },
                indent=2,
            )
        )
        return
    console.print(f"account {created.id} ({created.role}) {created.display_name}")
    if key is not None:
        _show_key(key, as_json=False)


@account_app.command("list")
def account_list(
    role: str | None = typer.Option(None, "--role", help="Only this role."),
    limit: int = typer.Option(100, "--limit", min=1, max=500),
    as_json: bool = JSON_OPTION,
) -> None:
    """List accounts, oldest first."""
    from ledger.db import session_scope
    from ledger.owners import queries

    with session_scope() as session:
        rows = [
            account_out(a)
            for a in queries.accounts_page(session, role=role, after=None, limit=limit)
        ]
    if as_json:
        emit_json(rows)
        return
    emit_table(
        "accounts",
        ("id", "role", "name", "contact", "created", "disabled"),
        [(a.id, a.role, a.display_name, a.contact, a.created_at, a.disabled_at) for a in rows],
    )


@account_app.command("disable")
def account_disable(
    account_id: str = typer.Argument(..., help="The account to disable."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Disable an account: every one of its keys stops working at once."""
    from ledger.db import session_scope
    from ledger.owners.service import disable_account

    with session_scope() as session:
        account = account_out(disable_account(session, _uuid(account_id, "account_id")))
    if as_json:
        emit_json(account)
        return
    console.print(f"account {account.id} disabled at {account.disabled_at}")


@key_app.command("create")
def key_create(
    account_id: str = typer.Argument(..., help="The account the key authenticates as."),
    label: str = typer.Option("", "--label", help="Where the key is used."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Issue an API key; it is printed once and only its hash is stored."""
    from ledger.db import session_scope
    from ledger.owners.service import issue_api_key

    with session_scope() as session:
        shown = issued_key_out(issue_api_key(session, _uuid(account_id, "account_id"), label))
    _show_key(shown, as_json)


@key_app.command("list")
def key_list(
    account_id: str = typer.Argument(..., help="Whose keys."),
    as_json: bool = JSON_OPTION,
) -> None:
    """List an account's keys: prefix, label, dates (never the secret)."""
    from ledger.db import session_scope
    from ledger.owners import queries
    from ledger.owners.service import get_account

    with session_scope() as session:
        account = get_account(session, _uuid(account_id, "account_id"))
        keys = [
            api_key_out(k)
            for k in queries.api_keys_page(session, account.id, after=None, limit=500)
        ]
    if as_json:
        emit_json(keys)
        return
    emit_table(
        f"keys of {account.display_name}",
        ("id", "prefix", "label", "created", "last used", "revoked"),
        [(k.id, k.prefix, k.label, k.created_at, k.last_used_at, k.revoked_at) for k in keys],
    )


@key_app.command("revoke")
def key_revoke(
    key_id: str = typer.Argument(..., help="The key's id (see `usefirst admin key list`)."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Revoke a key: requests with it get 401 from now on (idempotent)."""
    from ledger.access.service import revoke_api_key
    from ledger.db import session_scope

    with session_scope() as session:
        key = api_key_out(revoke_api_key(session, _uuid(key_id, "key_id")))
    if as_json:
        emit_json(key)
        return
    console.print(f"key {key.prefix}… revoked at {key.revoked_at}")
