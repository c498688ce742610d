"""Finance exports over HTTP and the report-generation job; reconciliation findings.

Periods are closed by the real close service and one is anchored on the session's anvil
(fresh contracts for this module), so the reports carry a real Merkle root, publish
transaction and on-chain statement hash. The export job runs on the real Celery worker.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import uuid
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from eth_account import Account
from fastapi.testclient import TestClient
from openpyxl import load_workbook
from pypdf import PdfReader
from sqlalchemy import Engine, text
from sqlmodel import Session, select
from typer.testing import CliRunner

from api import jobs
from api.sdk import ConflictError, NotFoundError, UsefirstClient
from api.tasks import generate_export, resume_stale_jobs
from contracts.client import UsefirstChain
from ledger.periods.models import Period
from ledger.reports import exports
from ledger.reports.journal_csv import COLUMNS as JOURNAL_COLUMNS
from ledger.reports.settlement_csv import LINE_COLUMNS
from ledger.settings import Settings, get_settings
from ledger.settlements.models import Settlement
from ledger.settlements.service import anchor_period, reconcile
from tests.api.conftest import ApiPrincipal
from tests.api.test_statements_api import _settle
from tests.ledger.factories import make_model, make_period
from tests.ledger.factories_settlement import ClosedPeriod, closed_period, deploy_chain

Make = Callable[..., ApiPrincipal]
# Months no other test closes periods in, so a date range selects this module's only.
JULY = datetime(2029, 7, 15, tzinfo=UTC)
SEPTEMBER = datetime(2029, 9, 15, tzinfo=UTC)
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


@dataclass(frozen=True)
class World:
    chain: UsefirstChain
    anchored: ClosedPeriod  # July, model 1: anchored on chain, three payees
    closed: ClosedPeriod  # July, model 2: closed, not anchored
    open_period_id: uuid.UUID

    @property
    def payees(self) -> list[str]:
        return [address for address, _ in self.anchored.lines]


@pytest.fixture(scope="module")
def world(
    db_engine: Engine,
    chain_settings: Settings,
    database: Settings,
    tmp_path_factory: pytest.TempPathFactory,
) -> World:
    chain = deploy_chain(chain_settings, tmp_path_factory.mktemp("exports"))
    weights = {Account.create().address: weight for weight in (1, 2, 3)}
    anchored = closed_period(db_engine, weights, at=JULY)
    anchor_period(anchored.period_id, chain=chain, settings=chain.settings)
    closed = closed_period(db_engine, {Account.create().address: 5}, revenue_minor=50_000, at=JULY)
    with Session(db_engine, expire_on_commit=False) as session:
        model = make_model(session)
        open_period = make_period(session, model.id, JULY)
        session.commit()
    return World(chain, anchored, closed, open_period.id)


@pytest.fixture
def finance(principal: Make) -> ApiPrincipal:
    return principal("finance")


def _period(db_engine: Engine, period_id: uuid.UUID) -> Period:
    with Session(db_engine, expire_on_commit=False) as session:
        found = session.get(Period, period_id)
        assert found is not None
        return found


def _settlement(db_engine: Engine, period_id: uuid.UUID) -> Settlement:
    with Session(db_engine, expire_on_commit=False) as session:
        return session.exec(select(Settlement).where(Settlement.period_id == period_id)).one()


def _filename(response: Any) -> str:
    disposition = response.headers["content-disposition"]
    assert disposition.startswith("attachment; filename=")
    return str(disposition.split("filename=", 1)[1].strip('"'))


def _csv(content: bytes) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(content.decode("utf-8"), newline="")))


def _cells(content: bytes) -> dict[str, list[list[object]]]:
    """Every sheet's cell values (the workbook's timestamps differ between two writes)."""
    workbook = load_workbook(io.BytesIO(content))
    return {
        sheet.title: [[cell.value for cell in row] for row in sheet.iter_rows()]
        for sheet in workbook.worksheets
    }


def _problem(response: Any, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = response.json()
    assert body["code"] == code, body
    assert body["status"] == status and body["detail"]
    return body


# --- synchronous exports --------------------------------------------------------------------


def test_settlement_csv_of_an_anchored_period(
    client: TestClient, world: World, finance: ApiPrincipal, db_engine: Engine
) -> None:
    period = _period(db_engine, world.anchored.period_id)
    settlement = _settlement(db_engine, period.id)
    response = client.get(
        "/v1/exports/settlement", params={"period": str(period.id)}, headers=finance.headers
    )
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "text/csv; charset=utf-8"
    assert _filename(response) == f"settlement-2029-07-{period.model_id.hex[:8]}.csv"
    assert response.content.decode().split("\r\n", 1)[0] == ",".join(LINE_COLUMNS)
    rows = _csv(response.content)
    assert [row["payee_address"] for row in rows] == world.payees
    assert sum(int(row["payable_minor"]) for row in rows) == period.pool_minor == 123_456
    for row in rows:
        assert row["period_state"] == "anchored"
        assert row["statement_hash"] == period.statement_hash
        assert row["merkle_root"] == settlement.merkle_root
        assert row["publish_tx_hash"] == settlement.publish_tx_hash
        assert row["publish_tx_hash"].startswith("0x") and len(row["publish_tx_hash"]) == 66
        assert row["settlement_state"] == "confirmed"


def test_settlement_xlsx_has_a_sheet_per_statement_with_totals_root_and_tx(
    client: TestClient, world: World, finance: ApiPrincipal, db_engine: Engine
) -> None:
    anchored = _period(db_engine, world.anchored.period_id)
    closed = _period(db_engine, world.closed.period_id)
    settlement = _settlement(db_engine, anchored.id)
    response = client.get(
        "/v1/exports/settlement",
        params={"from": "2029-07-01", "to": "2029-07-31", "format": "xlsx"},
        headers=finance.headers,
    )
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == XLSX
    assert _filename(response) == "settlement-2029-07-01-2029-07-31.xlsx"
    workbook = load_workbook(io.BytesIO(response.content))
    names = {p.id: f"2029-07 {p.model_id.hex[:8]}" for p in (anchored, closed)}
    assert sorted(workbook.sheetnames) == sorted(
        ["Statements", *names.values(), *(f"{n} breakdown" for n in names.values())]
    )
    for period in (anchored, closed):
        rows = [[cell.value for cell in row] for row in workbook[names[period.id]].iter_rows()]
        by_label = {row[0]: row for row in rows if row and isinstance(row[0], str)}
        assert by_label["Royalty pool"][1] == period.pool_minor
        headings = next(i for i, row in enumerate(rows) if row[0] == "Payee")
        sum_row = next(i for i, row in enumerate(rows) if row[0] == "Total (SUM of lines)")
        lines = rows[headings + 1 : sum_row]
        assert len(lines) == len(
            world.anchored.lines if period.id == anchored.id else world.closed.lines
        )
        accrued = sum(int(line[1]) for line in lines)  # type: ignore[call-overload]
        assert accrued == period.pool_minor
        # The totals row adds up exactly the line rows; the exact row equals the pool.
        assert rows[sum_row][1] == f"=SUM(B{headings + 2}:B{sum_row})"
        assert by_label["Statement totals (exact)"][1] == period.pool_minor
        assert by_label["Statement hash (SHA-256)"][1] == period.statement_hash
    anchored_rows = {
        row[0]: row for row in workbook[names[anchored.id]].iter_rows(values_only=True) if row
    }
    assert anchored_rows["Merkle root"][1] == settlement.merkle_root
    assert anchored_rows["Publish tx hash"][1] == settlement.publish_tx_hash
    closed_rows = {
        row[0]: row for row in workbook[names[closed.id]].iter_rows(values_only=True) if row
    }
    assert closed_rows["Merkle root"][1] == "not anchored"


def test_journal_csv_balances_per_transaction_and_currency(
    client: TestClient, world: World, finance: ApiPrincipal
) -> None:
    today = datetime.now(UTC).date()
    response = client.get(
        "/v1/exports/journal",
        params={"from": str(today - timedelta(days=1)), "to": str(today + timedelta(days=1))},
        headers=finance.headers,
    )
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "text/csv; charset=utf-8"
    assert _filename(response).startswith("journal-")
    assert response.content.decode().split("\r\n", 1)[0] == ",".join(JOURNAL_COLUMNS)
    rows = _csv(response.content)
    balance: dict[tuple[str, str], int] = defaultdict(int)
    for row in rows:
        debit, credit = int(row["debit_minor"]), int(row["credit_minor"])
        assert debit >= 0 and credit >= 0 and (debit == 0 or credit == 0)
        balance[(row["transaction_id"], row["currency"])] += debit - credit
    assert balance and all(value == 0 for value in balance.values())
    # This module's close accrual and settlement funding are in it.
    references = " ".join(row["reference"] for row in rows)
    assert str(world.anchored.period_id) in references


def test_statement_json_is_the_byte_string_anchored_on_chain(
    client: TestClient, world: World, finance: ApiPrincipal, db_engine: Engine
) -> None:
    period = _period(db_engine, world.anchored.period_id)
    settlement = _settlement(db_engine, period.id)
    response = client.get(f"/v1/exports/statements/{period.id}.json", headers=finance.headers)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/json"
    assert _filename(response) == f"statement-2029-07-{period.model_id.hex[:8]}.json"
    digest = hashlib.sha256(response.content).hexdigest()
    assert digest == period.statement_hash == response.headers["x-statement-sha256"]
    record = world.chain.get_settlement(bytes.fromhex(settlement.settlement_key[2:]))
    assert record is not None and record.statement_hash.hex() == digest
    document = json.loads(response.content)
    assert {line["address"] for line in document["lines"]} == set(world.payees)
    same = client.get(f"/v1/periods/{period.id}/statement", headers=finance.headers)
    assert same.content == response.content


def test_pdf_statement_names_the_payee(
    client: TestClient, world: World, finance: ApiPrincipal, db_engine: Engine
) -> None:
    period_id = world.anchored.period_id
    payee = world.payees[1]
    response = client.get(
        f"/v1/exports/statements/{period_id}/payees/{payee}.pdf", headers=finance.headers
    )
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/pdf"
    assert _filename(response).endswith(f"-{payee}.pdf")
    reader = PdfReader(io.BytesIO(response.content))
    content = " ".join(page.extract_text() for page in reader.pages).replace("\n", " ")
    assert payee in content
    statement_hash = _period(db_engine, period_id).statement_hash
    assert statement_hash is not None and statement_hash in content.replace(" ", "")
    lower = client.get(
        f"/v1/exports/statements/{period_id}/payees/{payee.lower()}.pdf", headers=finance.headers
    )
    assert lower.status_code == 200 and _filename(lower) == _filename(response)


# --- bad input and authorization ------------------------------------------------------------


def test_bad_input_is_a_precise_problem(
    client: TestClient, world: World, finance: ApiPrincipal
) -> None:
    h = finance.headers
    anchored = world.anchored.period_id

    def settlement(**params: str) -> Any:
        return client.get("/v1/exports/settlement", params=params, headers=h)

    _problem(settlement(period=str(uuid.uuid4())), 404, "period_not_found")
    _problem(settlement(period=str(world.open_period_id)), 409, "period_not_closed")
    _problem(settlement(period="2029-13"), 422, "period_invalid")
    _problem(settlement(period=str(anchored), format="pdf"), 422, "format_invalid")
    _problem(settlement(), 422, "selector_invalid")
    _problem(settlement(period=str(anchored), **{"from": "2029-07-01"}), 422, "selector_invalid")
    _problem(settlement(**{"from": "2029-07-01"}), 422, "selector_invalid")
    _problem(settlement(**{"from": "2029-07-32", "to": "2029-08-01"}), 422, "date_invalid")
    _problem(settlement(**{"from": "2029-08-01", "to": "2029-07-01"}), 422, "date_range_invalid")
    journal = client.get(
        "/v1/exports/journal", params={"from": "2029-07-01", "to": "9999-12-31"}, headers=h
    )
    _problem(journal, 422, "date_invalid")
    journal = client.get(
        "/v1/exports/journal", params={"from": "2029-07-02", "to": "2029-07-01"}, headers=h
    )
    _problem(journal, 422, "date_range_invalid")
    _problem(client.get("/v1/exports/journal", headers=h), 422, "validation_failed")

    base = f"/v1/exports/statements/{anchored}"
    _problem(
        client.get(f"/v1/exports/statements/{uuid.uuid4()}.json", headers=h),
        404,
        "period_not_found",
    )
    _problem(
        client.get(f"/v1/exports/statements/{world.open_period_id}.json", headers=h),
        409,
        "period_not_closed",
    )
    payee = world.payees[0]
    broken = payee[:2] + payee[2:].swapcase()  # every letter flipped: the checksum fails
    body = _problem(client.get(f"{base}/payees/{broken}.pdf", headers=h), 422, "address_checksum")
    assert body["errors"][0]["field"] == "address"
    _problem(client.get(f"{base}/payees/0x1234.pdf", headers=h), 422, "address_invalid")
    stranger = Account.create().address
    _problem(client.get(f"{base}/payees/{stranger}.pdf", headers=h), 404, "payee_not_in_statement")

    def create(body: dict[str, Any]) -> Any:
        return client.post("/v1/exports", json=body, headers=h)

    _problem(create({"kind": "journal", "from": "2029-07-01"}), 422, "to_required")
    _problem(
        create({"kind": "journal", "from": "2029-07-01", "to": "2029-07-31", "period": "2029-07"}),
        422,
        "field_not_applicable",
    )
    _problem(create({"kind": "statement-pdf", "period": str(anchored)}), 422, "payee_required")
    _problem(
        create({"kind": "statement-pdf", "period": str(anchored), "payee": broken}),
        422,
        "address_checksum",
    )
    _problem(create({"kind": "settlement", "period": str(uuid.uuid4())}), 404, "period_not_found")
    _problem(
        create({"kind": "statement-json", "period": str(anchored), "format": "xlsx"}),
        422,
        "format_invalid",
    )
    _problem(create({"kind": "everything"}), 422, "validation_failed")

    _problem(client.get("/v1/exports/not-a-job/download", headers=h), 404, "export_not_found")
    _problem(client.get("/v1/exports/a%20b/download", headers=h), 422, "validation_failed")


def test_only_finance_exports(client: TestClient, world: World, principal: Make) -> None:
    period_id = world.anchored.period_id
    payee = world.payees[0]
    requests = [
        ("GET", "/v1/exports/settlement", {"period": str(period_id)}, None),
        ("GET", "/v1/exports/journal", {"from": "2029-07-01", "to": "2029-07-31"}, None),
        ("GET", f"/v1/exports/statements/{period_id}.json", None, None),
        ("GET", f"/v1/exports/statements/{period_id}/payees/{payee}.pdf", None, None),
        ("POST", "/v1/exports", None, {"kind": "settlement", "period": str(period_id)}),
        ("GET", f"/v1/exports/{uuid.uuid4().hex}/download", None, None),
        ("GET", "/v1/reconciliation/findings", None, None),
    ]
    for role in ("owner", "model_team", "admin"):
        who = principal(role)
        for method, path, params, body in requests:
            response = client.request(method, path, params=params, json=body, headers=who.headers)
            assert response.status_code == 403, (role, path, response.text)
            assert response.headers["content-type"] == "application/problem+json"
    for method, path, params, body in requests:
        assert client.request(method, path, params=params, json=body).status_code == 401


# --- the report-generation job --------------------------------------------------------------


def test_export_jobs_on_the_worker_match_the_synchronous_exports(
    client: TestClient, world: World, finance: ApiPrincipal, celery_worker: Settings
) -> None:
    sdk = UsefirstClient("http://testserver/v1/", finance.key, http_client=client)
    period_id = world.anchored.period_id
    key = uuid.uuid4().hex
    accepted = sdk.create_export("settlement", period=period_id, idempotency_key=key)
    replayed = sdk.create_export("settlement", period=period_id, idempotency_key=key)
    assert replayed.job_id == accepted.job_id and accepted.kind == "export"
    with pytest.raises(ConflictError):
        sdk.create_export("settlement", period=period_id, format="xlsx", idempotency_key=key)
    xlsx = sdk.create_export(
        "settlement", date_from="2029-07-01", date_to="2029-07-31", format="xlsx"
    )
    statement = sdk.create_export("statement-json", period=period_id)
    pdf = sdk.create_export("statement-pdf", period=period_id, payee=world.payees[0].lower())

    finished = {}
    for job_id in (accepted.job_id, xlsx.job_id, statement.job_id, pdf.job_id):
        job = sdk.wait_for_job(job_id, timeout_s=120)
        assert job.state == "succeeded", job
        assert job.result is not None
        assert job.result["download_url"] == f"/v1/exports/{job_id}/download"
        finished[job_id] = job.result

    csv_file = sdk.download_export(accepted.job_id)
    assert csv_file.content == sdk.export_settlement(period=period_id).content
    assert csv_file.filename == f"settlement-2029-07-{world.anchored.model_id.hex[:8]}.csv"
    assert csv_file.media_type == "text/csv; charset=utf-8"
    assert finished[accepted.job_id]["sha256"] == hashlib.sha256(csv_file.content).hexdigest()
    assert finished[accepted.job_id]["bytes"] == len(csv_file.content)

    xlsx_file = sdk.download_export(xlsx.job_id)
    same = sdk.export_settlement(date_from="2029-07-01", date_to="2029-07-31", format="xlsx")
    assert xlsx_file.media_type == XLSX and xlsx_file.filename == same.filename
    assert _cells(xlsx_file.content) == _cells(same.content)

    statement_file = sdk.download_export(statement.job_id)
    assert statement_file.content == sdk.export_statement_json(period_id).content
    assert (
        hashlib.sha256(statement_file.content).hexdigest() == finished[statement.job_id]["sha256"]
    )

    pdf_file = sdk.download_export(pdf.job_id)
    assert pdf_file.media_type == "application/pdf"
    text_of = " ".join(p.extract_text() for p in PdfReader(io.BytesIO(pdf_file.content)).pages)
    assert world.payees[0] in text_of.replace("\n", " ")

    # usefirst jobs lists them like the close and anchor jobs.
    from api.cli import app as cli_app

    listed = CliRunner().invoke(cli_app, ["jobs", "--json", "--limit", "50"])
    assert listed.exit_code == 0, listed.output
    kinds = {row["id"]: row["kind"] for row in json.loads(listed.output)}
    assert kinds[accepted.job_id] == "export"


def test_download_before_the_job_finished_is_a_conflict(
    client: TestClient, finance: ApiPrincipal, db_engine: Engine, world: World
) -> None:
    params = {"kind": "journal", "format": "csv", "from": "2029-07-01", "to": "2029-07-31"}
    with Session(db_engine, expire_on_commit=False) as session:
        queued = jobs.create_job(session, "export", params, finance.account_id)
        failed = jobs.create_job(session, "export", params, finance.account_id)
        failed.state, failed.error = "failed", "export_integrity: something did not add up"
        session.add(failed)
        session.commit()
    body = _problem(
        client.get(f"/v1/exports/{queued.id}/download", headers=finance.headers),
        409,
        "export_not_ready",
    )
    assert f"/v1/jobs/{queued.id}" in body["detail"]
    _problem(
        client.get(f"/v1/exports/{failed.id}/download", headers=finance.headers),
        409,
        "export_failed",
    )
    sdk = UsefirstClient("http://testserver/v1/", finance.key, http_client=client, retries=0)
    with pytest.raises(ConflictError):
        sdk.download_export(queued.id)
    with pytest.raises(NotFoundError):
        sdk.download_export(uuid.uuid4().hex)


def _exports_dir() -> Path:
    return exports.exports_dir(get_settings())


def _files_of(job_id: str) -> list[str]:
    return sorted(p.name for p in _exports_dir().glob(f"*{job_id}*"))


def test_a_rerun_after_a_crash_finishes_without_duplicating(
    client: TestClient, finance: ApiPrincipal, db_engine: Engine, world: World
) -> None:
    params = {"kind": "settlement", "format": "csv", "period": str(world.closed.period_id)}
    with Session(db_engine, expire_on_commit=False) as session:
        job = jobs.create_job(session, "export", params, finance.account_id)
        session.commit()
    target = exports.stored_path(get_settings(), job.id, "csv")
    target.parent.mkdir(parents=True, exist_ok=True)
    # A run that died mid-write left a partial file; one that died after the rename, a file.
    target.with_name(f".{target.name}.4242.dead.tmp").write_bytes(b"model_id,model")
    target.write_bytes(b"stale")
    with Session(db_engine) as session:
        session.execute(text("UPDATE job SET state = 'running' WHERE id = :id"), {"id": job.id})
        session.commit()

    first = generate_export(job.id)
    assert _files_of(job.id) == [target.name]
    expected = client.get(
        "/v1/exports/settlement",
        params={"period": str(world.closed.period_id)},
        headers=finance.headers,
    )
    assert target.read_bytes() == expected.content
    assert first["sha256"] == hashlib.sha256(expected.content).hexdigest()
    stamp = target.stat().st_mtime_ns
    # A duplicate delivery of a finished job returns its result and writes nothing.
    assert generate_export(job.id) == first
    assert target.stat().st_mtime_ns == stamp and _files_of(job.id) == [target.name]
    assert client.get(f"/v1/jobs/{job.id}", headers=finance.headers).json()["result"] == first


def test_the_sweep_resumes_an_orphaned_export_on_the_worker(
    client: TestClient,
    finance: ApiPrincipal,
    db_engine: Engine,
    world: World,
    celery_worker: Settings,
) -> None:
    sdk = UsefirstClient("http://testserver/v1/", finance.key, http_client=client)
    params = {"kind": "statement-json", "format": "json", "period": str(world.closed.period_id)}
    with Session(db_engine, expire_on_commit=False) as session:
        job = jobs.create_job(session, "export", params, finance.account_id)
        session.commit()
        # Its worker was SIGKILLed while writing a day ago: the row went quiet, a partial
        # file stayed, and the broker forgot the message.
        session.execute(
            text(
                "UPDATE job SET state = 'running', updated_at = now() - interval '1 day' "
                "WHERE id = :id"
            ),
            {"id": job.id},
        )
        session.commit()
    target = exports.stored_path(get_settings(), job.id, "json")
    target.parent.mkdir(parents=True, exist_ok=True)
    target.with_name(f".{target.name}.4242.dead.tmp").write_bytes(b'{"lines":[')

    assert job.id in resume_stale_jobs(stale_after_s=3600)
    done = sdk.wait_for_job(job.id, timeout_s=120)
    assert done.state == "succeeded", done
    assert _files_of(job.id) == [target.name]
    downloaded = sdk.download_export(job.id)
    assert hashlib.sha256(downloaded.content).hexdigest() == (
        _period(db_engine, world.closed.period_id).statement_hash
    )


# --- reconciliation findings ----------------------------------------------------------------


def test_findings_of_the_latest_run_page_by_page(
    client: TestClient, finance: ApiPrincipal, db_engine: Engine, world: World
) -> None:
    # A period whose settlement the ledger records on this contract but the chain never saw.
    ghost = closed_period(db_engine, {Account.create().address: 1}, at=SEPTEMBER)
    fake = _settle(db_engine, ghost)
    with Session(db_engine) as session:
        session.execute(
            text(
                "UPDATE settlement SET chain_id = :chain, contract_address = :contract "
                "WHERE id = :id"
            ),
            {
                "chain": world.chain.chain_id,
                "contract": world.chain.settlement.address,
                "id": fake.id,
            },
        )
        session.commit()
    report = reconcile(chain=world.chain, settings=world.chain.settings)
    kinds = sorted(f.kind for f in report.findings)
    assert "missing_on_chain" in kinds and len(kinds) >= 2

    sdk = UsefirstClient("http://testserver/v1/", finance.key, http_client=client)
    first = sdk.list_findings(limit=1)
    assert first.run is not None and first.run.id == report.run_id
    assert first.run.findings_count == len(kinds)
    assert first.next_cursor is not None
    everything = list(sdk.iter_all(sdk.list_findings))
    assert sorted(f.kind for f in everything) == kinds
    assert len({f.id for f in everything}) == len(kinds)
    missing = next(f for f in everything if f.kind == "missing_on_chain")
    assert missing.settlement_id == fake.id and missing.settlement_key == fake.settlement_key
    assert missing.period_id == ghost.period_id and missing.period_key == "2029-09"
    assert missing.model_id == ghost.model_id and missing.chain_value == "none"

    only = sdk.list_findings(kind="missing_on_chain", run_id=report.run_id)
    assert [f.id for f in only.items] == [missing.id]
    raw = client.get(
        "/v1/reconciliation/findings", params={"limit": 1}, headers=finance.headers
    ).json()
    assert set(raw) == {"items", "next_cursor", "run"}
    assert set(raw["items"][0]) == {
        "id",
        "run_id",
        "kind",
        "detail",
        "settlement_id",
        "settlement_key",
        "period_id",
        "period_key",
        "model_id",
        "ledger_value",
        "chain_value",
    }

    h = finance.headers
    _problem(
        client.get("/v1/reconciliation/findings", params={"run_id": str(uuid.uuid4())}, headers=h),
        404,
        "reconciliation_run_not_found",
    )
    _problem(
        client.get("/v1/reconciliation/findings", params={"cursor": "garbage"}, headers=h),
        422,
        "invalid_cursor",
    )
    _problem(
        client.get(
            "/v1/reconciliation/findings",
            params={"cursor": first.next_cursor, "run_id": str(uuid.uuid4())},
            headers=h,
        ),
        422,
        "invalid_cursor",
    )
    _problem(
        client.get("/v1/reconciliation/findings", params={"kind": "DROP TABLE"}, headers=h),
        422,
        "validation_failed",
    )
