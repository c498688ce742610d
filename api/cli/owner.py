"""``usefirst owner …``: what a data owner does, straight on the database.

The same services as the owner routes of the HTTP API. Signing happens locally: the
private key is read from the environment variable named by ``--private-key-env`` (never
from the command line, where it would land in the shell history), the EIP-712 typed data
is built exactly as ``GET /v1/datasets/{id}/typed-data`` returns it, signed, and
submitted. ``--json`` prints what the HTTP API would return.

- ``address link`` links the key's address to an owner account (with the proof of control
  the API asks for); ``address list`` shows an account's addresses;
- ``dataset register PATH`` fingerprints a folder (progress bar on stderr), or takes a
  manifest (``--manifest``) or a Croissant file (``--croissant``), and registers it;
- ``dataset typed-data`` prints the typed data a wallet signs; ``dataset sign`` signs it
  and submits the confirmation; ``dataset revoke`` signs and submits a revocation;
- ``statements`` and ``claim`` show an address's statement lines and claim data.
"""

from __future__ import annotations

import json
import os
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

import typer
from eth_account import Account as EthAccount
from eth_account.messages import encode_defunct
from eth_account.signers.local import LocalAccount
from rich.console import Console

from api.cli.admin import JSON_OPTION, emit_json, emit_table
from api.schemas.accounts import owner_address_out
from api.schemas.datasets import (
    dataset_out,
    dataset_summary,
    rights_out,
    typed_data_out,
)
from api.schemas.statements import claim_out, statement_line_out
from ledger.errors import ValidationFailed

console = Console()
owner_app = typer.Typer(help="Data owners: addresses, datasets, signatures, statements.")
address_app = typer.Typer(help="Addresses an owner account controls.", no_args_is_help=True)
dataset_app = typer.Typer(help="Register, sign, revoke and inspect datasets.", no_args_is_help=True)
owner_app.add_typer(address_app, name="address")
owner_app.add_typer(dataset_app, name="dataset")

KEY_ENV_OPTION = typer.Option(
    ...,
    "--private-key-env",
    help="Name of the environment variable holding the signer's hex private key.",
)


def register(app: typer.Typer) -> None:
    app.add_typer(owner_app, name="owner")


def _uuid(value: str, name: str) -> uuid.UUID:
    try:
        return uuid.UUID(value)
    except ValueError:
        raise ValidationFailed(f"{name} {value!r} is not a UUID", field=name) from None


def _local_key(variable: str) -> LocalAccount:
    """The key in environment variable ``variable`` (refused when unset or malformed)."""
    value = os.environ.get(variable, "").strip()
    if not value:
        raise ValidationFailed(
            f"environment variable {variable} is not set; export the signer's private key "
            f"in it (e.g. read -s {variable} && export {variable})",
            field="private_key_env",
            code="private_key_missing",
        )
    try:
        return EthAccount.from_key(value)
    except (ValueError, TypeError):
        raise ValidationFailed(
            f"environment variable {variable} does not hold a 32-byte hex private key",
            field="private_key_env",
            code="private_key_invalid",
        ) from None


def _moment(value: str | None, name: str) -> datetime | None:
    if value is None:
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        raise ValidationFailed(
            f"{name} {value!r} is not an ISO 8601 date-time such as 2026-01-01T00:00:00Z",
            field=name,
            code="datetime_invalid",
        ) from None


def _co_owner(text: str) -> dict[str, Any]:
    """``ADDRESS:BPS[:NAME]`` → a co-owner mapping for registration."""
    parts = text.split(":", 2)
    try:
        share = int(parts[1])
    except (IndexError, ValueError):
        raise ValidationFailed(
            f"--co-owner {text!r} must be ADDRESS:SHARE_BPS[:NAME], e.g. 0xAb…:7000:Lumen",
            field="co_owners",
            code="co_owners_invalid",
        ) from None
    return {
        "address": parts[0],
        "share_bps": share,
        "display_name": parts[2] if len(parts) > 2 else None,
    }


# --- addresses ----------------------------------------------------------------------------


@address_app.command("link")
def address_link(
    account: str = typer.Option(..., "--account", help="The owner account's id."),
    private_key_env: str = KEY_ENV_OPTION,
    name: str | None = typer.Option(None, "--name", help="Display name of the address."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Link the key's address to an owner account, signing the proof of control."""
    from ledger.db import session_scope
    from ledger.owners.service import address_proof_message, link_owner_address

    key = _local_key(private_key_env)
    account_id = _uuid(account, "account")
    proof = key.sign_message(encode_defunct(text=address_proof_message(account_id, key.address)))
    with session_scope() as session:
        linked = link_owner_address(
            session, account_id, key.address, bytes(proof.signature), display_name=name
        )
        out = owner_address_out(linked.owner)
    if as_json:
        emit_json(out)
        return
    state = "linked" if linked.linked_now else "was already linked"
    console.print(f"{out.address} {state} to account {account_id}")


@address_app.command("list")
def address_list(
    account: str = typer.Option(..., "--account", help="The owner account's id."),
    as_json: bool = JSON_OPTION,
) -> None:
    """The addresses linked to an owner account."""
    from ledger.db import session_scope
    from ledger.owners import queries

    with session_scope() as session:
        found = queries.owner_addresses_page(
            session, _uuid(account, "account"), after=None, limit=500
        )
        rows = [owner_address_out(o) for o in found]
    if as_json:
        emit_json(rows)
        return
    emit_table(
        "addresses",
        ("address", "name", "linked"),
        [(a.address, a.display_name, a.created_at) for a in rows],
    )


# --- datasets -----------------------------------------------------------------------------


@dataset_app.command("register")
def dataset_register(
    path: Path | None = typer.Argument(None, help="The dataset folder (or file) to fingerprint."),
    registrant: str = typer.Option(..., "--registrant", help="Registering co-owner's address."),
    co_owner: list[str] = typer.Option(..., "--co-owner", help="ADDRESS:SHARE_BPS[:NAME]; repeat."),
    use: list[str] = typer.Option(..., "--use", help="train and/or rag; repeat for both."),
    valid_from: str = typer.Option(
        ..., "--valid-from", help="ISO 8601, e.g. 2026-01-01T00:00:00Z."
    ),
    valid_until: str | None = typer.Option(None, "--valid-until", help="ISO 8601; none: no end."),
    licence: str | None = typer.Option(None, "--licence", help="SPDX expression or LicenseRef-…"),
    name: str | None = typer.Option(None, "--name"),
    description: str | None = typer.Option(None, "--description"),
    terms_document: Path | None = typer.Option(None, "--terms-document", help="Custom terms text."),
    manifest: Path | None = typer.Option(
        None, "--manifest", help="A `dataset fingerprint --json` file."
    ),
    croissant: Path | None = typer.Option(None, "--croissant", help="A Croissant JSON-LD file."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Register a dataset: fingerprint PATH (or read --manifest / --croissant) and store
    terms version 1, waiting for every co-owner's signature."""
    from api.cli.datasets import fingerprint_with_progress
    from ledger.datasets.croissant import registration_fields
    from ledger.datasets.fingerprint import manifest_from_json
    from ledger.datasets.queries import dataset_view
    from ledger.datasets.service import register_dataset, registrant_owner
    from ledger.db import session_scope

    if (path is not None and manifest is not None) or (path, manifest, croissant) == (None,) * 3:
        raise ValidationFailed(
            "give the files as PATH (a folder to fingerprint) or --manifest, or take them "
            "from --croissant",
            field="files",
            code="files_required",
        )
    files = None
    if path is not None:
        files = fingerprint_with_progress(path).entries
    elif manifest is not None:
        files = manifest_from_json(json.loads(manifest.read_text(encoding="utf-8"))).entries
    fields = registration_fields(
        croissant.read_bytes() if croissant is not None else None,
        name=name if name is not None else (path.name if path is not None else None),
        description=description,
        licence=licence,
        files=files,
    )
    co_owners = [_co_owner(text) for text in co_owner]
    with session_scope() as session:
        owner = registrant_owner(session, registrant, co_owners, controlled=None)
        dataset = register_dataset(
            session,
            registrant_owner_id=owner.id,
            allowed_uses=use,
            valid_from=_moment(valid_from, "valid_from"),  # type: ignore[arg-type]
            valid_until=_moment(valid_until, "valid_until"),
            co_owners=co_owners,
            terms_document=terms_document,
            **fields,
        )
        out = dataset_out(dataset_view(session, dataset))
    if as_json:
        emit_json(out)
        return
    console.print(f"dataset {out.id} registered: {out.status}, content root {out.content_root}")
    console.print(f"waiting for signatures of: {', '.join(out.missing_signers) or 'nobody'}")


@dataset_app.command("list")
def dataset_list(
    address: str = typer.Option(..., "--address", help="Datasets this address co-owns."),
    status: str | None = typer.Option(None, "--status"),
    limit: int = typer.Option(100, "--limit", min=1, max=500),
    as_json: bool = JSON_OPTION,
) -> None:
    """Datasets an address co-owns (in any terms version), newest first."""
    from ledger.datasets import queries
    from ledger.db import session_scope
    from ledger.owners.service import normalize_address

    with session_scope() as session:
        found = queries.datasets_page(
            session, addresses={normalize_address(address)}, status=status, after=None, limit=limit
        )
        rows = [dataset_summary(d) for d in found]
    if as_json:
        emit_json(rows)
        return
    emit_table(
        "datasets",
        ("id", "name", "status", "terms", "licence", "files"),
        [(d.id, d.name, d.status, d.terms_version, d.licence, d.file_count) for d in rows],
    )


@dataset_app.command("show")
def dataset_show(
    dataset_id: str = typer.Argument(...),
    as_json: bool = JSON_OPTION,
) -> None:
    """A dataset's terms, co-owners and who still has to sign."""
    from ledger.datasets.queries import dataset_view
    from ledger.datasets.service import get_dataset
    from ledger.db import session_scope

    with session_scope() as session:
        dataset = get_dataset(session, _uuid(dataset_id, "dataset_id"))
        out = dataset_out(dataset_view(session, dataset))
    if as_json:
        emit_json(out)
        return
    console.print(f"{out.name} ({out.id}): {out.status}, terms version {out.terms_version}")
    emit_table(
        "co-owners",
        ("address", "share bps", "name", "signed"),
        [
            (c.address, c.share_bps, c.display_name, "yes" if c.confirmed else "no")
            for c in out.co_owners
        ],
    )


@dataset_app.command("typed-data")
def dataset_typed_data(
    dataset_id: str = typer.Argument(...),
    signer: str = typer.Option(..., "--signer", help="The co-owner address that will sign."),
    kind: str = typer.Option("confirmation", "--kind", help="confirmation or revocation."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Print the EIP-712 typed data to pass to eth_signTypedData_v4 (with --json: also the
    nonce and the digest)."""
    from ledger.db import session_scope
    from ledger.rights.service import typed_data_to_sign

    with session_scope() as session:
        out = typed_data_out(
            typed_data_to_sign(session, _uuid(dataset_id, "dataset_id"), signer, kind)
        )
    if as_json:
        emit_json(out)
        return
    typer.echo(json.dumps(out.typed_data, indent=2))


def _sign_and_submit(dataset_id: str, private_key_env: str, kind: str, as_json: bool) -> None:
    from ledger.db import session_scope
    from ledger.rights.service import submit_confirmation, submit_revocation, typed_data_to_sign

    key = _local_key(private_key_env)
    target = _uuid(dataset_id, "dataset_id")
    submit = submit_confirmation if kind == "confirmation" else submit_revocation
    with session_scope() as session:
        typed = typed_data_to_sign(session, target, key.address, kind)
        signature = key.sign_typed_data(full_message=typed.document).signature
        out = rights_out(submit(session, target, key.address, bytes(signature), typed.nonce))
    if as_json:
        emit_json(out)
        return
    console.print(
        f"{kind} of {out.signer} accepted (nonce {out.nonce}); dataset is now "
        f"{out.dataset_status}; still to sign: {', '.join(out.missing_signers) or 'nobody'}"
    )


@dataset_app.command("sign")
def dataset_sign(
    dataset_id: str = typer.Argument(...),
    private_key_env: str = KEY_ENV_OPTION,
    kind: str = typer.Option("confirmation", "--kind", help="confirmation or revocation."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Sign the current terms (or a revocation) with a local key and submit it."""
    _sign_and_submit(dataset_id, private_key_env, kind, as_json)


@dataset_app.command("revoke")
def dataset_revoke(
    dataset_id: str = typer.Argument(...),
    private_key_env: str = KEY_ENV_OPTION,
    as_json: bool = JSON_OPTION,
) -> None:
    """Revoke a dataset with a co-owner's local key: its usage stops counting from now."""
    _sign_and_submit(dataset_id, private_key_env, "revocation", as_json)


# --- statements and claims ----------------------------------------------------------------


@owner_app.command("statements")
def statements(
    address: str = typer.Option(..., "--address", help="The payee address."),
    limit: int = typer.Option(50, "--limit", min=1, max=500),
    as_json: bool = JSON_OPTION,
) -> None:
    """An address's statement lines across closed periods, newest first."""
    from ledger.db import session_scope
    from ledger.owners import queries
    from ledger.owners.service import normalize_address

    with session_scope() as session:
        found = queries.statement_lines_page(
            session, addresses={normalize_address(address)}, model_id=None, after=None, limit=limit
        )
        rows = [statement_line_out(line) for line in found]
    if as_json:
        emit_json(rows)
        return
    emit_table(
        f"statements of {address}",
        ("period", "model", "currency", "accrued", "payable", "carried forward", "state"),
        [
            (r.period, r.model_name, r.currency, r.accrued_minor, r.payable_minor,
             r.carried_forward_minor, r.period_state)
            for r in rows
        ],
    )  # fmt: skip


@owner_app.command("claim")
def claim(
    period_id: str = typer.Argument(...),
    address: str = typer.Argument(...),
    as_json: bool = JSON_OPTION,
) -> None:
    """What the address's wallet sends to RoyaltySettlement.claim for a period."""
    from ledger.db import session_scope
    from ledger.owners import queries
    from ledger.owners.service import normalize_address

    with session_scope() as session:
        out = claim_out(
            queries.claim_data(session, _uuid(period_id, "period_id"), normalize_address(address))
        )
    if as_json:
        emit_json(out)
        return
    console.print(
        f"claim {out.leaf['amount_units']} units of {out.token} for {out.leaf['account']} on "
        f"{out.contract_address} (chain {out.chain_id}), settlement {out.settlement_key}: "
        f"{'claimed' if out.claimed else 'claimable' if out.claimable else out.settlement_state}"
    )
    typer.echo(json.dumps(out.proof))
