"""``usefirst deploy | anchor | index | reconcile | verify | claim``: settlement on chain.

``anchor``, ``index`` and ``reconcile`` are finance/operator commands on the ledger database.
``verify`` and ``claim`` are the owner's: they need only the exported statement file, an RPC
URL and the contract address (read from the local deployment record when not given), never
our database.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import typer
from eth_account.signers.local import LocalAccount
from rich.console import Console
from rich.markup import escape
from web3 import Web3

from contracts.errors import ChainError
from ledger.errors import ValidationFailed
from ledger.settings import Settings, get_settings

console = Console()
err_console = Console(stderr=True)


@contextmanager
def _chain_errors() -> Iterator[None]:
    """Chain failures (node down, revert, conflict) as one line and exit code 2."""
    try:
        yield
    except ChainError as exc:
        err_console.print(
            f"[bold red]error:[/] {escape(str(exc))} ({exc.code})", highlight=False, soft_wrap=True
        )
        sys.exit(2)


def _owner_chain(rpc: str | None, contract: str | None) -> tuple[Settings, Web3, str]:
    """Settings (``--rpc`` applied), a client and the RoyaltySettlement address: ``--contract``
    or the local deployment record of the node's chain."""
    from contracts.deploy import load_deployment
    from contracts.transactions import connect

    settings = get_settings()
    if rpc:
        settings = settings.model_copy(update={"eth_rpc_url": rpc})
    w3 = connect(settings)
    if contract:
        return settings, w3, contract
    chain_id = int(w3.eth.chain_id)
    deployment = load_deployment(settings, chain_id)
    if deployment is None:
        raise ValidationFailed(
            f"no deployment record for chain {chain_id} in {settings.deployments_dir}; pass "
            "--contract with the RoyaltySettlement address",
            field="contract",
        )
    return settings, w3, deployment.settlement_address


def _read_statement(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ValidationFailed(f"cannot read {path}: {exc.strerror}", field="statement") from None


def register(app: typer.Typer) -> None:
    @app.command()
    def deploy(
        force: bool = typer.Option(False, "--force", help="Deploy anew even if up to date."),
        as_json: bool = typer.Option(False, "--json"),
    ) -> None:
        """Deploy the contracts to the configured chain, unless its deployment record is valid."""
        from contracts.deploy import ensure_deployed

        with _chain_errors():
            deployment = ensure_deployed(settings=get_settings(), force=force)
        if as_json:
            typer.echo(json.dumps(deployment.to_dict(), indent=2))
            return
        console.print(f"chain {deployment.chain_id}")
        for name, contract in sorted(deployment.contracts.items()):
            console.print(f"  {name:<18} {contract.address}  (block {contract.block_number})")
        console.print(f"  {'token':<18} {deployment.token_address}")

    @app.command()
    def anchor(
        period: str = typer.Argument(..., help="Period UUID, or YYYY-MM with --model."),
        model: str | None = typer.Option(None, "--model", help="Model id when PERIOD is a key."),
        reanchor: bool = typer.Option(
            False,
            "--reanchor",
            help="Publish again under a new settlement id after the guardian revoked the last one.",
        ),
        as_json: bool = typer.Option(False, "--json", help="Machine-readable result."),
    ) -> None:
        """Anchor a closed period on chain: prepare → publish → confirm (safe to re-run)."""
        from api.cli.periods import resolve_period
        from contracts.client import UsefirstChain
        from ledger.db import session_scope
        from ledger.settlements.service import anchor_period

        with _chain_errors():
            settings = get_settings()
            with session_scope(settings) as session:
                period_id = resolve_period(session, period, model).id
            chain = UsefirstChain.connect(settings)

            def progress(step: str, message: str) -> None:
                if not as_json:
                    console.print(f"[bold cyan]{step:>8}[/] {escape(message)}", highlight=False)

            outcome = anchor_period(
                period_id, chain=chain, settings=settings, progress=progress, reanchor=reanchor
            )
        result = {
            "period_id": str(outcome.period_id),
            "period_state": outcome.period_state,
            "settlement_id": str(outcome.settlement_id) if outcome.settlement_id else None,
            "settlement_key": outcome.settlement_key,
            "settlement_state": outcome.settlement_state,
            "merkle_root": outcome.merkle_root,
            "total_units": str(outcome.total_units),
            "lines": outcome.line_count,
            "publish_tx_hash": outcome.publish_tx_hash,
            "publish_block": outcome.publish_block,
            "note": outcome.note,
        }
        if as_json:
            typer.echo(json.dumps(result, indent=2))
        else:
            console.print(f"period {outcome.period_id} is [bold]{outcome.period_state}[/]")

    @app.command()
    def index(as_json: bool = typer.Option(False, "--json")) -> None:
        """Index Claimed and SettlementRevoked events: record claims, post payouts, mark fully
        claimed periods paid, reverse the funding of revoked settlements."""
        from ledger.settlements.service import index_claims

        with _chain_errors():
            outcome = index_claims()
        result = {
            "from_block": outcome.from_block,
            "to_block": outcome.to_block,
            "events_seen": outcome.events_seen,
            "claims_recorded": outcome.claims_recorded,
            "unknown_events": outcome.unknown_events,
            "unmatched_claims": outcome.unmatched_claims,
            "periods_paid": [str(p) for p in outcome.periods_paid],
            "revocations_applied": outcome.revocations_applied,
            "periods_revoked": [str(p) for p in outcome.periods_revoked],
        }
        if as_json:
            typer.echo(json.dumps(result, indent=2))
            return
        console.print(
            f"blocks {outcome.from_block}–{outcome.to_block}: {outcome.events_seen} claim "
            f"events, {outcome.claims_recorded} new, {outcome.unknown_events} of unknown "
            f"settlements, {outcome.unmatched_claims} unmatched; "
            f"{len(outcome.periods_paid)} period(s) now paid; {outcome.revocations_applied} "
            f"revocation(s) applied ({len(outcome.periods_revoked)} period(s) back to closed: "
            "usefirst anchor PERIOD --reanchor once understood)"
        )

    @app.command()
    def reconcile(
        as_json: bool = typer.Option(False, "--json"),
        strict: bool = typer.Option(False, "--strict", help="Exit 1 when there are findings."),
    ) -> None:
        """Compare every settlement in the ledger with the chain and report differences."""
        from ledger.settlements.service import reconcile as run_reconcile

        with _chain_errors():
            report = run_reconcile()
        if as_json:
            typer.echo(
                json.dumps(
                    {
                        "run_id": str(report.run_id),
                        "chain_id": report.chain_id,
                        "contract_address": report.contract_address,
                        "settlements_checked": report.settlements_checked,
                        "findings": [f.as_dict() for f in report.findings],
                    },
                    indent=2,
                )
            )
        else:
            console.print(
                f"run {report.run_id}: {report.settlements_checked} settlement(s) checked, "
                f"{len(report.findings)} finding(s)"
            )
            for f in report.findings:
                values = ""
                if f.ledger_value is not None or f.chain_value is not None:
                    values = f" (ledger {f.ledger_value}, chain {f.chain_value})"
                console.print(
                    f"[yellow]{f.kind}[/] {f.settlement_key}: {escape(f.detail + values)}",
                    highlight=False,
                    soft_wrap=True,
                )
        if strict and report.findings:
            raise typer.Exit(1)

    @app.command()
    def verify(
        account: str = typer.Option(..., "--account", help="The payee address to check."),
        statement: Path = typer.Option(
            ..., "--statement", help="The canonical statement JSON (usefirst period statement)."
        ),
        settlement: str | None = typer.Option(
            None,
            "--settlement",
            help="Settlement id (0x…) or MODEL_ID:PERIOD_ID; default: the statement's own.",
        ),
        contract: str | None = typer.Option(None, "--contract", help="RoyaltySettlement address."),
        rpc: str | None = typer.Option(None, "--rpc", help="EVM JSON-RPC URL."),
        units_per_minor: int | None = typer.Option(
            None, "--units-per-minor", help="Only if the settlement used a configured scale."
        ),
        as_json: bool = typer.Option(False, "--json"),
    ) -> None:
        """Check a statement line's proof against the on-chain root, without our database.

        Exit 0 when every check passes, 1 otherwise.
        """
        from ledger.settlements.verify import verify_statement_line

        with _chain_errors():
            _, w3, address = _owner_chain(rpc, contract)
            result = verify_statement_line(
                w3,
                address,
                _read_statement(statement),
                account,
                settlement=settlement,
                configured_units_per_minor=units_per_minor,
            )
        if as_json:
            typer.echo(json.dumps(result.as_dict(), indent=2))
        else:
            console.print(f"settlement {result.settlement_key} on chain {result.chain_id}")
            console.print(f"contract   {result.contract_address}")
            console.print(f"account    {result.account}")
            if result.amount_units is not None:
                console.print(
                    f"amount     {result.payable_minor} {result.currency} minor units = "
                    f"{result.amount_units} token units ({result.units_per_minor} per minor)"
                )
                console.print(f"leaf       {result.leaf}")
                console.print("proof      " + ("\n           ".join(result.proof) or "(empty)"))
            for check in result.checks:
                mark = "[green]ok[/]  " if check.ok else "[red]FAIL[/]"
                console.print(f"{mark} {check.name}: {escape(check.detail)}", highlight=False)
            if result.claimed is not None:
                console.print(f"claimed    {'yes' if result.claimed else 'no'}")
            console.print("[bold green]OK[/]" if result.ok else "[bold red]FAIL[/]")
        if not result.ok:
            raise typer.Exit(1)

    @app.command()
    def claim(
        statement: Path = typer.Option(..., "--statement", help="The canonical statement JSON."),
        settlement: str | None = typer.Option(
            None, "--settlement", help="Settlement id (0x…) or MODEL_ID:PERIOD_ID."
        ),
        account: str | None = typer.Option(
            None, "--account", help="Whose line to claim (default: the key's address)."
        ),
        private_key_env: str | None = typer.Option(
            None, "--private-key-env", help="Name of the environment variable holding the key."
        ),
        keystore: Path | None = typer.Option(
            None, "--keystore", help="An encrypted JSON keystore (password prompted)."
        ),
        password_env: str | None = typer.Option(
            None, "--password-env", help="Variable holding the keystore password (else prompt)."
        ),
        contract: str | None = typer.Option(None, "--contract", help="RoyaltySettlement address."),
        rpc: str | None = typer.Option(None, "--rpc", help="EVM JSON-RPC URL."),
        units_per_minor: int | None = typer.Option(None, "--units-per-minor"),
        as_json: bool = typer.Option(False, "--json"),
    ) -> None:
        """Verify your line, then claim it on chain with a local key (never printed)."""
        from ledger.settlements.verify import claim_statement_line

        sender = _load_key(private_key_env, keystore, password_env)
        with _chain_errors():
            settings, w3, address = _owner_chain(rpc, contract)
            outcome = claim_statement_line(
                w3,
                address,
                _read_statement(statement),
                sender,
                settings,
                account=account,
                settlement=settlement,
                configured_units_per_minor=units_per_minor,
            )
        v = outcome.verification
        result = {
            "settlement": v.settlement_key,
            "account": v.account,
            "amount_units": str(v.amount_units),
            "already_claimed": outcome.already_claimed,
            "tx_hash": outcome.tx.tx_hash if outcome.tx else None,
            "block_number": outcome.tx.block_number if outcome.tx else None,
        }
        if as_json:
            typer.echo(json.dumps(result, indent=2))
        elif outcome.already_claimed:
            console.print(f"{v.account}'s line of {v.settlement_key} is already claimed")
        else:
            assert outcome.tx is not None
            console.print(
                f"claimed {v.amount_units} token units for {v.account} in "
                f"{outcome.tx.tx_hash} (block {outcome.tx.block_number})"
            )


def _load_key(
    private_key_env: str | None, keystore: Path | None, password_env: str | None
) -> LocalAccount:
    """The claimant's local account; the key itself is never printed or logged."""
    from eth_account import Account

    if (private_key_env is None) == (keystore is None):
        raise ValidationFailed(
            "pass exactly one of --private-key-env VAR or --keystore FILE", field="key"
        )
    if private_key_env is not None:
        secret = os.environ.get(private_key_env)
        if not secret:
            raise ValidationFailed(
                f"environment variable {private_key_env} is not set", field="private_key_env"
            )
        try:
            account: LocalAccount = Account.from_key(secret)
        except (ValueError, TypeError):
            raise ValidationFailed(
                f"{private_key_env} does not hold a valid private key", field="private_key_env"
            ) from None
        return account
    assert keystore is not None
    try:
        encrypted = json.loads(keystore.read_text())
    except (OSError, ValueError) as exc:
        raise ValidationFailed(
            f"cannot read keystore {keystore}: {exc}", field="keystore"
        ) from None
    password = os.environ.get(password_env) if password_env else None
    if password is None:
        password = typer.prompt("keystore password", hide_input=True)
    try:
        decrypted: LocalAccount = Account.from_key(Account.decrypt(encrypted, password))
    except ValueError:
        raise ValidationFailed(
            "the keystore password is wrong or the keystore is damaged", field="keystore"
        ) from None
    return decrypted
