"""The end-to-end demo: three owners register corpora that ship with Python, a model
team reports a training run (OpenLineage) and a few hundred BM25 retrievals (LangChain),
revenue arrives, finance closes the period, the worker anchors it on chain, every owner
claims with their own key, the ledger reconciles with the chain and the exports land in
``demo-output/``. Every run uses a fresh model, hence a fresh period."""

from __future__ import annotations

import base64
import json
import os
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from eth_account import Account as EthAccount
from eth_account.messages import encode_defunct
from eth_account.signers.local import LocalAccount
from openlineage.client.event_v2 import Run, RunEvent, RunState
from rich.console import Console
from rich.table import Table

from api import embedded
from api.demo_corpus import Corpus, all_corpora, passages, questions, write_corpus
from api.embedded.apiserver import ApiServer
from api.sdk import Chunk, UsageReporter, UsefirstClient
from contracts.client import UsefirstChain
from ledger.datasets.fingerprint import fingerprint_directory
from ledger.settings import get_settings, reset_settings_cache

ROYALTY_BPS = 1_000
TRAINING_SHARE_BPS = 3_000
REVENUE_MINOR = 1_250_000
TERMS = b"usefirst demo terms: training use only, attribution required, no redistribution.\n"
KEY_VARIABLE = "USEFIRST_DEMO_OWNER_KEY"


@dataclass
class DemoResult:
    """What the demo did, for its summary table and its test."""

    output: Path
    model_id: uuid.UUID
    period_id: uuid.UUID
    pool_minor: int = 0
    lines: dict[str, int] = field(default_factory=dict)
    statement_root: str = ""
    chain_root: str = ""
    claimed: dict[str, bool] = field(default_factory=dict)
    reconcile_findings: list[Any] = field(default_factory=list)
    quarantine_reasons: list[str] = field(default_factory=list)
    retrievals: int = 0
    exports: list[Path] = field(default_factory=list)
    owners: dict[str, str] = field(default_factory=dict)  # address → name


def _hex(signature: bytes | str) -> str:
    text = signature.hex() if isinstance(signature, bytes) else signature
    return "0x" + text.removeprefix("0x")


def _cli(*args: str) -> str:
    """``usefirst …`` in process; its stdout."""
    from typer.testing import CliRunner

    from api.cli import app

    result = CliRunner().invoke(app, list(args), catch_exceptions=False)
    if result.exit_code != 0:
        raise RuntimeError(f"usefirst {' '.join(args)} failed: {result.output}")
    return result.stdout


def _bootstrap_admin() -> str:
    """An admin API key, created directly in the database (as an operator would with
    ``usefirst admin``)."""
    from sqlmodel import Session

    from ledger.access.service import create_api_key
    from ledger.db import get_engine
    from ledger.owners.service import create_account

    with Session(get_engine()) as session:
        account = create_account(session, role="admin", display_name="demo admin")
        issued = create_api_key(session, account.id, label="demo")
        session.commit()
        return issued.plaintext


def run_demo(console: Console, question_count: int = 300, output: Path | None = None) -> DemoResult:
    started = time.monotonic()
    os.environ.setdefault("USEFIRST_CHAIN_CHALLENGE_WINDOW_S", "0")
    reset_settings_cache()
    settings = get_settings()
    out = (output or Path("demo-output")).resolve()
    out.mkdir(parents=True, exist_ok=True)
    console.rule("[bold]usefirst demo: use first, pay later")

    console.print("[bold]1. services[/]: PostgreSQL, anvil, Celery worker; contracts")
    embedded.up(settings)
    from contracts.deploy import ensure_deployed

    deployment = ensure_deployed(settings=settings)
    chain = UsefirstChain.connect(settings, deploy=True)
    console.print(
        f"   RoyaltySettlement on chain {deployment.chain_id}; token {deployment.token_address}"
    )
    admin_key = _bootstrap_admin()

    with ApiServer(log=out / "api-server.log") as server:
        result = _story(console, server.url, admin_key, chain, out, question_count)
    _summary(console, result, time.monotonic() - started)
    return result


@dataclass
class _Owner:
    name: str
    key: LocalAccount
    sdk: UsefirstClient


def _story(
    console: Console,
    url: str,
    admin_key: str,
    chain: UsefirstChain,
    out: Path,
    question_count: int,
) -> DemoResult:
    from langchain_community.retrievers import BM25Retriever
    from langchain_core.documents import Document

    from api.integrations.langchain import UsefirstCallbackHandler
    from api.integrations.openlineage import (
        PRODUCER,
        lineage_client,
        model_facets,
        model_job,
        usefirst_input,
    )

    admin = UsefirstClient(url, admin_key)

    def account(role: Any, name: str) -> UsefirstClient:
        created = admin.create_account(role=role, display_name=name)
        issued = admin.issue_api_key(created.id, label="demo")
        return UsefirstClient(url, issued.key or "")

    now = datetime.now(UTC)
    month_start = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)

    console.print("[bold]2. three data owners[/] link fresh keys (EIP-191 challenge)")
    owners: list[_Owner] = []
    for name in ("Python Reference Lab", "Formats Press", "Paths & Time Institute"):
        wallet: LocalAccount = EthAccount.create()
        sdk = account("owner", name)
        challenge = sdk.address_challenge(wallet.address)
        proof = wallet.sign_message(encode_defunct(text=challenge.message)).signature
        sdk.link_address(address=wallet.address, signature=_hex(proof))
        owners.append(_Owner(name, wallet, sdk))
        console.print(f"   {name}: {wallet.address}")

    console.print("[bold]3. corpora[/] written, fingerprinted, registered, signed (EIP-712)")
    corpora = all_corpora()
    plans: list[tuple[Corpus, _Owner, list[tuple[_Owner, int]], str, list[Any]]] = [
        (corpora[0], owners[0], [(owners[0], 10_000)], "PSF-2.0", ["train", "rag"]),
        (
            corpora[1],
            owners[1],
            [(owners[1], 6_000), (owners[2], 4_000)],
            "CC-BY-4.0",
            ["train", "rag"],
        ),
        (corpora[2], owners[2], [(owners[2], 10_000)], "LicenseRef-usefirst-demo-terms", ["train"]),
    ]
    dataset_ids: dict[str, uuid.UUID] = {}
    for corpus, registrant, shares, licence, uses in plans:
        directory = write_corpus(corpus, out / "corpora")
        # The edition note makes each run's content root unique: registering the same
        # root under another owner set would open a dispute.
        (directory / "EDITION.txt").write_text(
            f"{corpus.title}\nedition {uuid.uuid4()} registered by {registrant.key.address}\n",
            encoding="utf-8",
        )
        fingerprint = fingerprint_directory(directory)
        terms = base64.b64encode(TERMS).decode() if licence.startswith("LicenseRef") else None
        dataset = registrant.sdk.register_dataset(
            registrant=registrant.key.address,
            name=f"{corpus.name} ({uuid.uuid4().hex[:6]})",
            description=corpus.title,
            licence=licence,
            terms_document_base64=terms,
            allowed_uses=uses,
            valid_from=month_start,
            files=[e.as_dict() for e in fingerprint.entries],
            co_owners=[
                {"address": o.key.address, "share_bps": bps, "display_name": o.name}
                for o, bps in shares
            ],
        )
        for signer, _bps in shares:
            typed = signer.sdk.typed_data(dataset.id, signer=signer.key.address)
            signed = signer.key.sign_typed_data(full_message=typed.typed_data)
            confirmed = signer.sdk.confirm_dataset(
                dataset.id,
                signer=signer.key.address,
                signature=_hex(signed.signature),
                nonce=typed.nonce,
            )
        dataset_ids[corpus.name] = dataset.id
        split = " / ".join(f"{o.name} {bps / 100:.0f}%" for o, bps in shares)
        console.print(
            f"   {corpus.name}: {fingerprint.file_count} files, root {fingerprint.root[:18]}…, "
            f"{licence}, uses {'+'.join(uses)}, {split} → {confirmed.dataset_status}"
        )

    console.print("[bold]4. model team[/] registers a RAG app and its agreement")
    team = account("model_team", "Atlas model team")
    model = team.create_model(name=f"atlas-rag-{uuid.uuid4().hex[:8]}", kind="rag_app")
    team.create_agreement(
        model.id,
        royalty_rate_bps=ROYALTY_BPS,
        training_share_bps=TRAINING_SHARE_BPS,
        min_payout_minor=0,
        currency="EUR",
        effective_from=month_start,
    )
    console.print(f"   {model.name}: royalty 10 %, pool 70 % retrieval / 30 % training")

    console.print("[bold]5. training run[/] reported with the openlineage-python client")
    lineage = lineage_client(url, _key(team))
    run_id = str(uuid.uuid4())
    inputs = [
        usefirst_input(dataset_ids[c.name], sum(len(t) for t in c.documents.values()) // 4)
        for c in corpora
    ]
    for state in (RunState.START, RunState.COMPLETE):
        lineage.emit(
            RunEvent(
                eventType=state,
                eventTime=datetime.now(UTC).isoformat(),
                run=Run(runId=run_id, facets=model_facets(model.id)),
                job=model_job(model.id),
                inputs=inputs,
                producer=PRODUCER,
            )
        )
    lineage.close()
    console.print(f"   run {run_id}: {', '.join(f'{i.name[:8]}…' for i in inputs)} (tokens)")

    console.print(f"[bold]6. retrieval[/]: LangChain BM25 answers {question_count} questions")
    documents = [
        Document(
            page_content=p.text,
            metadata={
                "usefirst_dataset_id": str(dataset_ids[c.name]),
                "usefirst_chunk_id": p.chunk_id,
            },
        )
        for c in corpora[:2]
        for p in passages(c)
    ]
    retriever = BM25Retriever.from_documents(documents, k=4)
    asked = questions(corpora[:2], question_count)
    with UsageReporter(team, model.id, flush_interval_s=0.5) as reporter:
        handler = UsefirstCallbackHandler(reporter)
        for question in asked:
            retriever.invoke(question, config={"callbacks": [handler]})
        # One attempted retrieval from the train-only corpus: rejected, quarantined.
        train_only = passages(corpora[2])[0]
        reporter.report_retrieval(
            f"q-{uuid.uuid4().hex[:8]}",
            [Chunk(dataset_id=str(dataset_ids[corpora[2].name]), chunk_id=train_only.chunk_id)],
        )
        reporter.flush(timeout_s=60)
        stats = reporter.stats
    console.print(
        f"   {len(documents)} chunks indexed; {stats.accepted} retrievals accepted, "
        f"{stats.rejected} rejected"
    )
    quarantined = team.list_quarantine(model_id=model.id).items
    for item in quarantined:
        console.print(f"   [yellow]quarantine[/]: {item.reason_code}: {item.message}")

    console.print("[bold]7. revenue[/] arrives; finance closes the period through the API")
    team.record_revenue(
        model.id,
        amount_minor=REVENUE_MINOR,
        currency="EUR",
        external_ref=f"invoice-{uuid.uuid4().hex[:8]}",
        occurred_at=datetime.now(UTC),
    )
    finance = account("finance", "Finance")
    [period] = finance.list_periods(model_id=model.id).items
    accepted = finance.close_period(period.id)
    deadline = time.monotonic() + 120
    job = finance.get_job(accepted.job_id)
    while job.state not in ("succeeded", "failed"):
        if time.monotonic() > deadline:
            raise RuntimeError(f"job {job.id} still {job.state} after 120 s")
        time.sleep(0.3)
        job = finance.get_job(accepted.job_id)
    if job.state != "succeeded":
        raise RuntimeError(f"close/anchor job failed: {job.error}")
    done = job.result or {}
    console.print(
        f"   worker job {job.id}: period {done.get('period_state')}, "
        f"{done.get('line_count')} lines, publish tx {str(done.get('publish_tx_hash'))[:18]}…"
    )

    result = DemoResult(out, model.id, period.id, retrievals=stats.accepted)
    result.quarantine_reasons = [q.reason_code for q in quarantined]
    statement_file = out / "statement.json"
    _cli("export", "statement-json", "--period", str(period.id), "-o", str(statement_file))
    statement = json.loads(statement_file.read_text())
    result.exports.append(statement_file)
    from sqlmodel import Session, select

    from ledger.db import get_engine
    from ledger.settlements.models import Settlement

    with Session(get_engine()) as session:
        settlement = session.exec(select(Settlement).where(Settlement.period_id == period.id)).one()
        result.statement_root = settlement.merkle_root.lower()
        settlement_key = settlement.settlement_key
    record = chain.get_settlement(bytes.fromhex(settlement_key[2:]))
    if record is None:
        raise RuntimeError("the settlement is not on chain")
    result.chain_root = "0x" + record.merkle_root.hex()
    result.pool_minor = int(statement["pool_minor"])
    result.lines = _statement_lines(statement)
    console.print(
        f"   anchored: root {result.chain_root[:18]}… (ledger {result.statement_root[:18]}…)"
    )

    console.print("[bold]8. every owner verifies and claims[/] with their own key")
    w3 = chain.w3
    faucet = w3.eth.accounts[0]  # anvil's unlocked dev account pays the owners' gas
    for owner in owners:
        gas = w3.eth.send_transaction(
            {"from": faucet, "to": owner.key.address, "value": w3.to_wei(0.05, "ether")}
        )
        w3.eth.wait_for_transaction_receipt(gas)
    for owner in owners:
        address = owner.key.address
        if address not in result.lines:
            continue
        os.environ[KEY_VARIABLE] = owner.key.key.hex()
        try:
            claimed = json.loads(
                _cli(
                    "claim",
                    "--statement",
                    str(statement_file),
                    "--private-key-env",
                    KEY_VARIABLE,
                    "--json",
                )
            )
        finally:
            os.environ.pop(KEY_VARIABLE, None)
        result.claimed[address] = bool(claimed.get("tx_hash") or claimed.get("already_claimed"))
        console.print(f"   {owner.name}: claimed, tx {str(claimed.get('tx_hash'))[:18]}…")
    verify = ["verify", "--account", owners[0].key.address, "--statement", str(statement_file)]
    console.print(f"   an owner checks their line: [cyan]usefirst {' '.join(verify)}[/]")
    verified = json.loads(_cli(*verify, "--json"))
    console.print(f"   → ok={verified['ok']} claimed={verified['claimed']}")

    console.print("[bold]9. finance[/] indexes claims and reconciles ledger against chain")
    indexed = json.loads(_cli("index", "--json"))
    report = json.loads(_cli("reconcile", "--json"))
    result.reconcile_findings = list(report.get("findings", []))
    console.print(
        f"   claims recorded {indexed.get('claims_recorded')}; reconcile: "
        f"{report.get('settlements_checked')} settlements, "
        f"{len(result.reconcile_findings)} findings"
    )

    console.print("[bold]10. exports[/] → demo-output/")
    csv_file, xlsx_file = out / "settlement.csv", out / "settlement.xlsx"
    _cli("export", "settlement", "--period", str(period.id), "-o", str(csv_file))
    _cli(
        "export", "settlement", "--period", str(period.id), "--format", "xlsx", "-o", str(xlsx_file)
    )
    result.exports += [csv_file, xlsx_file]
    for owner in owners:
        if owner.key.address in result.lines:
            pdf = out / f"statement-{_slug(owner.name)}.pdf"
            _cli(
                "export",
                "statement-pdf",
                "--period",
                str(period.id),
                "--payee",
                owner.key.address,
                "-o",
                str(pdf),
            )
            result.exports.append(pdf)
    for path in result.exports:
        console.print(f"   {path}")
    result.owners = {o.key.address: o.name for o in owners}
    return result


def _slug(name: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in name.lower()).strip("-")


def _key(sdk: UsefirstClient) -> str:
    return str(sdk.api_key)


def _statement_lines(statement: dict[str, Any]) -> dict[str, int]:
    """Payable amount (minor units) per payee address."""
    return {str(line["address"]): int(line["payable_minor"]) for line in statement["lines"]}


def _summary(console: Console, result: DemoResult, elapsed: float) -> None:
    names = result.owners
    table = Table(title=f"Settlement of period {result.period_id}")
    table.add_column("payee")
    table.add_column("address")
    table.add_column("amount (EUR)", justify="right")
    table.add_column("claimed")
    for address, amount in sorted(result.lines.items()):
        table.add_row(
            names.get(address, "?"),
            address,
            f"{amount / 100:.2f}",
            "yes" if result.claimed.get(address) else "no",
        )
    table.add_row("total", "", f"{sum(result.lines.values()) / 100:.2f}", "")
    console.print(table)
    console.print(
        f"pool {result.pool_minor / 100:.2f} EUR; chain root = ledger root: "
        f"{result.chain_root == result.statement_root}; reconcile findings: "
        f"{len(result.reconcile_findings)}; quarantined: {', '.join(result.quarantine_reasons)}"
    )
    console.rule(f"[green]demo complete in {elapsed:.0f} s")
