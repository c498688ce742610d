"""``usefirst period …`` and ``usefirst explain``: close periods, read statements."""

from __future__ import annotations

import json
import uuid
from datetime import datetime

import typer
from rich.console import Console
from sqlmodel import Session, col, select

from ledger.errors import NotFound, ValidationFailed
from ledger.periods.models import Period

console = Console()
period_app = typer.Typer(
    help="Accounting periods: list, close, show statements.", no_args_is_help=True
)


def resolve_period(session: Session, period: str, model: str | None = None) -> Period:
    """A period by UUID, or by ``YYYY-MM`` key together with ``--model``."""
    try:
        found = session.get(Period, uuid.UUID(period))
    except ValueError:
        if model is None:
            raise ValidationFailed(
                f"{period!r} is not a period id; pass a period UUID, or a key like 2026-11 "
                "together with --model MODEL_ID",
                field="period",
            ) from None
        try:
            model_id = uuid.UUID(model)
        except ValueError:
            raise ValidationFailed(f"{model!r} is not a model id (UUID)", field="model") from None
        found = session.exec(
            select(Period).where(col(Period.model_id) == model_id, col(Period.key) == period)
        ).first()
    if found is None:
        raise NotFound(
            f"no period {period}" + (f" for model {model}" if model else ""), field="period"
        )
    return found


def register(app: typer.Typer) -> None:
    app.add_typer(period_app, name="period")

    @app.command()
    def explain(
        period: str = typer.Option(..., "--period", help="Period UUID, or YYYY-MM with --model."),
        payee: str = typer.Option(..., "--payee", help="The payee's EVM address."),
        model: str | None = typer.Option(None, "--model", help="Model id when --period is a key."),
    ) -> None:
        """Print how a payee's line was derived: revenue → pool → sub-pool → weight share → line."""
        import attribution
        from ledger.db import session_scope
        from ledger.periods.close import load_statement

        with session_scope() as session:
            found = resolve_period(session, period, model)
            statement = load_statement(session, found)
        address = _statement_address(statement, payee)
        typer.echo(attribution.explain(statement, address))


def _statement_address(statement: object, payee: str) -> str:
    """Match the payee case-insensitively against the statement's checksummed addresses."""
    from ledger.errors import NotFound as _NotFound

    lines = getattr(statement, "lines", ())
    for line in lines:
        if line.address.lower() == payee.lower():
            return str(line.address)
    raise _NotFound(f"payee {payee} has no line in this statement", field="payee")


@period_app.command("list")
def list_periods(
    model: str = typer.Option(..., "--model", help="Model id."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """List a model's periods with their states and statement hashes."""
    from ledger.db import session_scope

    with session_scope() as session:
        rows = session.exec(
            select(Period)
            .where(col(Period.model_id) == uuid.UUID(model))
            .order_by(col(Period.starts_at))
        ).all()
        data = [
            {
                "id": str(p.id),
                "key": p.key,
                "state": p.state,
                "revenue_minor": p.revenue_minor,
                "pool_minor": p.pool_minor,
                "statement_hash": p.statement_hash,
            }
            for p in rows
        ]
    if as_json:
        typer.echo(json.dumps(data, indent=2))
        return
    for item in data:
        console.print(
            f"{item['key']}  {item['state']:<9} pool={item['pool_minor']}  "
            f"{item['statement_hash'] or ''}  {item['id']}"
        )


@period_app.command("close")
def close(
    period: str = typer.Argument(..., help="Period UUID, or YYYY-MM with --model."),
    model: str | None = typer.Option(None, "--model"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Close a period now, in this process (finance; the API runs it on the worker)."""
    from ledger.db import session_scope
    from ledger.periods.close import begin_close, finish_close

    with session_scope() as session:
        period_id = resolve_period(session, period, model).id
        begin_close(session, period_id)
    with session_scope() as session:
        outcome = finish_close(session, period_id)
    result = {
        "period_id": str(outcome.period_id),
        "state": outcome.state,
        "statement_hash": outcome.statement_hash,
        "lines": outcome.line_count,
        "pool_minor": outcome.pool_minor,
        "payable_total_minor": outcome.payable_total_minor,
        "no_accrual_reason": outcome.no_accrual_reason,
        "already_closed": outcome.already_closed,
        "at": datetime.now().isoformat(timespec="seconds"),
    }
    if as_json:
        typer.echo(json.dumps(result, indent=2))
    else:
        console.print(result)


@period_app.command("statement")
def statement(
    period: str = typer.Argument(..., help="Period UUID, or YYYY-MM with --model."),
    model: str | None = typer.Option(None, "--model"),
    output: str | None = typer.Option(
        None, "--output", "-o", help="Write the canonical JSON here."
    ),
) -> None:
    """Print (or save) the canonical statement JSON whose SHA-256 is anchored on chain."""
    from ledger.db import session_scope
    from ledger.periods.close import statement_bytes

    with session_scope() as session:
        document = statement_bytes(session, resolve_period(session, period, model))
    if output:
        with open(output, "wb") as fh:
            fh.write(document)
        console.print(f"wrote {len(document)} bytes to {output}")
    else:
        typer.echo(document.decode())
