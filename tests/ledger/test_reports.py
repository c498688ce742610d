"""Finance exports against the real database: periods built through ingestion, revenue
and the real close, then exported as CSV, XLSX, journal CSV, PDF and canonical JSON."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import subprocess
import sys
import uuid
import zipfile
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from openpyxl import load_workbook
from sqlalchemy import Engine, text, update
from sqlmodel import Session

import attribution as attr
from contracts.merkle import statement_tree
from ledger.currencies import major_display, major_text
from ledger.errors import NotFound, StateError, ValidationFailed
from ledger.periods import close as closing
from ledger.periods import service as periods
from ledger.periods.models import Period, PeriodAdjustment
from ledger.reports import service as reports
from ledger.reports.streams import ExportIntegrityError, csv_chunks, safe_text
from ledger.revenue.service import record_revenue
from ledger.settings import Settings
from ledger.settlements.models import Settlement
from ledger.usage.service import ingest_retrievals, ingest_training
from tests.ledger.factories import make_agreement, make_dataset, make_model
from tests.ledger.test_close import _retrieval, _training, _two_co_owned_model

SEP = datetime(2026, 9, 10, 12, 0, tzinfo=UTC)
OCT = datetime(2026, 10, 10, 12, 0, tzinfo=UTC)
NOV = datetime(2026, 11, 10, 12, 0, tzinfo=UTC)
ADJUSTMENT_REASON = "September usage over-declared by the model team"


@dataclass(frozen=True)
class World:
    model_id: uuid.UUID  # EUR: September and October closed, October anchored
    september: Period
    october: Period
    open_november: Period
    yen_model_id: uuid.UUID  # JPY (exponent 0), October closed; its name starts with "="
    yen_october: Period
    adjusted_payee: str


def _period_of(session: Session, model_id: uuid.UUID, at: datetime) -> Period:
    return periods.period_for(session, model_id, at)


def _close(session: Session, period: Period) -> Period:
    closing.close_period(session, period.id)
    session.commit()
    session.refresh(period)
    return period


def _anchor(session: Session, period: Period) -> None:
    """Record a settlement as the chain service would (the tree is the real one)."""
    statement = closing.load_statement(session, period)
    units_per_minor = 10**16  # a 18-decimals token for a 2-decimals currency
    lines = [
        (line.address, line.payable_minor * units_per_minor)
        for line in statement.lines
        if line.payable_minor
    ]
    tree = statement_tree(lines)
    session.add(
        Settlement(
            period_id=period.id,
            chain_id=31337,
            contract_address="0x" + "5e" * 20,
            token_address="0x" + "70" * 20,
            settlement_key="0x" + hashlib.sha256(str(period.id).encode()).hexdigest(),
            merkle_root=tree.root_hex,
            statement_hash="0x" + str(period.statement_hash),
            total_units=sum(units for _, units in lines),
            units_per_minor=units_per_minor,
            line_count=len(lines),
            tree_dump=tree.dump(),
            state="confirmed",
            publish_tx_hash="0x" + "ab" * 32,
            publish_block=42,
        )
    )
    session.execute(update(Period).where(Period.id == period.id).values(state="anchored"))  # type: ignore[arg-type]
    session.commit()
    session.refresh(period)


@pytest.fixture(scope="module")
def world(db_engine: Engine) -> Iterator[World]:
    with Session(db_engine, expire_on_commit=False) as session:
        model_id, a, b, c = _two_co_owned_model(session)
        ingest_training(session, model_id, [_training(a, 4_000, SEP), _training(b, 1_000, SEP)])
        ingest_retrievals(session, model_id, [_retrieval([c, b], SEP)])
        record_revenue(session, model_id, 12_345, "EUR", "sep-invoice", SEP)
        session.commit()
        september = _close(session, _period_of(session, model_id, SEP))

        ingest_training(session, model_id, [_training(a, 2_000, OCT)])
        ingest_retrievals(
            session, model_id, [_retrieval([b, c], OCT), _retrieval([c], OCT), _retrieval([a], OCT)]
        )
        record_revenue(session, model_id, 100_001, "EUR", "oct-invoice", OCT)
        session.commit()
        october = _period_of(session, model_id, OCT)
        adjusted_payee = session.execute(
            text("SELECT min(address) FROM dataset_co_owner WHERE dataset_id = :d"), {"d": c}
        ).scalar_one()
        session.add(
            PeriodAdjustment(
                period_id=october.id,
                corrects_period_id=september.id,
                address=adjusted_payee,
                amount_minor=-40,
                reason=ADJUSTMENT_REASON,
                reference="adj-1",
            )
        )
        session.commit()
        october = _close(session, october)
        _anchor(session, october)
        open_november = _period_of(session, model_id, NOV)
        session.commit()

        yen = make_model(session, agreement=False)
        yen.name = "=1+2 Yen Ltd"
        session.add(yen)
        make_agreement(session, yen.id, currency="JPY", currency_exponent=0)
        d = make_dataset(session, co_owners=3)
        session.commit()
        ingest_retrievals(session, yen.id, [_retrieval([d.id], OCT)])
        record_revenue(session, yen.id, 99_999, "JPY", "yen-oct", OCT)
        session.commit()
        yen_october = _close(session, _period_of(session, yen.id, OCT))
        yield World(
            model_id=model_id,
            september=september,
            october=october,
            open_november=open_november,
            yen_model_id=yen.id,
            yen_october=yen_october,
            adjusted_payee=adjusted_payee,
        )


@pytest.fixture
def session(db_engine: Engine) -> Iterator[Session]:
    with Session(db_engine, expire_on_commit=False) as s:
        yield s
        s.rollback()


def _statement(session: Session, period: Period) -> attr.Statement:
    return closing.load_statement(session, period)


def _csv(data: bytes) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(data.decode("utf-8"), newline="")))


def test_settlement_csv_rows_are_the_statement_lines_and_sum_to_the_pool(
    session: Session, world: World
) -> None:
    refs = reports.statements_for_period(session, str(world.october.id))
    out = io.BytesIO()
    result = reports.write_settlement(session, refs, "csv", out)
    rows = _csv(out.getvalue())
    statement = _statement(session, world.october)

    assert result.rows == len(rows) == len(statement.lines) > 3
    assert result.sha256 == hashlib.sha256(out.getvalue()).hexdigest()
    by_address = {row["payee_address"]: row for row in rows}
    assert [row["payee_address"] for row in rows] == [line.address for line in statement.lines]
    for line in statement.lines:
        row = by_address[line.address]
        for field in ("accrued", "carry_in", "adjustment", "payable", "carried_forward"):
            minor = getattr(line, f"{field}_minor")
            assert int(row[f"{field}_minor"]) == minor
            assert row[field] == major_text(minor, 2)
        assert row["statement_hash"] == world.october.statement_hash
        assert row["period_key"] == "2026-10" and row["currency"] == "EUR"
        assert row["settlement_state"] == "confirmed"
        assert row["publish_tx_hash"] == "0x" + "ab" * 32
        assert row["merkle_root"].startswith("0x") and len(row["merkle_root"]) == 66
    assert sum(int(row["accrued_minor"]) for row in rows) == statement.pool_minor == 10_000
    assert by_address[world.adjusted_payee]["adjustment_minor"] == "-40"
    assert sum(int(r["payable_minor"]) for r in rows) == statement.totals.payable_total_minor


def test_breakdown_csv_rows_are_the_sources_of_each_line(session: Session, world: World) -> None:
    refs = reports.statements_for_period(session, "2026-10", world.model_id)
    out = io.BytesIO()
    result = reports.write_settlement(session, refs, "breakdown-csv", out)
    rows = _csv(out.getvalue())
    statement = _statement(session, world.october)
    expected = [
        (line.address, source.dataset_id, source.kind, source.amount_minor, source.share_bps)
        for line in statement.lines
        for source in line.sources
    ]
    got = [
        (
            r["payee_address"],
            r["dataset_id"],
            r["kind"],
            int(r["amount_minor"]),
            int(r["share_bps"]),
        )
        for r in rows
    ]
    assert got == expected and result.rows == len(expected)
    assert sum(int(r["amount_minor"]) for r in rows) == statement.pool_minor
    assert all(r["dataset_name"].startswith("dataset ") for r in rows)
    assert all(r["rollup_ids"].startswith("rollup:") for r in rows)


def test_a_date_range_exports_every_closed_statement_in_it(session: Session, world: World) -> None:
    everything = reports.statements_in_range(session, "2026-09-01", "2026-10-31")
    ours = [ref for ref in everything if ref.model_id in (world.model_id, world.yen_model_id)]
    assert [(ref.period_key, ref.model_id) for ref in ours] == [
        ("2026-09", world.model_id),
        *sorted(
            [("2026-10", world.model_id), ("2026-10", world.yen_model_id)],
            key=lambda key: next(r.model_name for r in ours if r.model_id == key[1]),
        ),
    ]
    one_model = reports.statements_in_range(
        session, date(2026, 9, 1), date(2026, 12, 31), world.model_id
    )
    # November is open, so only September and October (anchored) are in it.
    assert [(ref.period_key, ref.period_state) for ref in one_model] == [
        ("2026-09", "closed"),
        ("2026-10", "anchored"),
    ]
    out = io.BytesIO()
    reports.write_settlement(session, one_model, "csv", out)
    rows = _csv(out.getvalue())
    assert {row["period_key"] for row in rows} == {"2026-09", "2026-10"}
    # Each statement's lines carry its own totals: September's line for the adjusted payee
    # was carried into October's carry-in or paid.
    for ref in one_model:
        lines = [row for row in rows if row["period_id"] == str(ref.period_id)]
        assert sum(int(row["accrued_minor"]) for row in lines) == ref.pool_minor


def test_xlsx_has_a_sheet_per_statement_and_totals_that_add_up(
    session: Session, world: World, tmp_path: Path
) -> None:
    refs = reports.statements_in_range(session, "2026-09-01", "2026-10-31", world.model_id)
    path = tmp_path / "settlement.xlsx"
    with path.open("wb") as fh:
        result = reports.write_settlement(session, refs, "xlsx", fh)
    assert result.rows == sum(ref.line_count + ref.source_count for ref in refs)

    workbook = load_workbook(path)
    short = world.model_id.hex[:8]
    assert workbook.sheetnames == [
        "Statements",
        f"2026-09 {short}",
        f"2026-09 {short} breakdown",
        f"2026-10 {short}",
        f"2026-10 {short} breakdown",
    ]
    sheet = workbook[f"2026-10 {short}"]
    statement = _statement(session, world.october)
    rows = list(sheet.iter_rows(values_only=True))
    labels = {row[0]: row for row in rows if row and row[0]}
    assert labels["Statement hash (SHA-256)"][1] == world.october.statement_hash
    assert labels["Royalty pool"][1] == 10_000
    assert labels["Merkle root"][1].startswith("0x")
    assert labels["Publish tx hash"][1] == "0x" + "ab" * 32
    heading = next(i for i, row in enumerate(rows) if row[0] == "Payee")
    lines = rows[heading + 1 : heading + 1 + len(statement.lines)]
    assert [row[0] for row in lines] == [line.address for line in statement.lines]
    for row, line in zip(lines, statement.lines, strict=True):
        assert row[1:6] == (
            line.accrued_minor,
            line.carry_in_minor,
            line.adjustment_minor,
            line.payable_minor,
            line.carried_forward_minor,
        )
        assert round(row[9] * 100) == line.payable_minor
    sums_row = rows[heading + 1 + len(statement.lines)]
    first, last = heading + 2, heading + 1 + len(statement.lines)
    assert sums_row[0] == "Total (SUM of lines)"
    assert sums_row[1] == f"=SUM(B{first}:B{last})"
    assert sums_row[4] == f"=SUM(E{first}:E{last})"
    exact = rows[heading + 2 + len(statement.lines)]
    totals = statement.totals
    assert exact[1:6] == (
        totals.accrued_total_minor,
        totals.carry_in_total_minor,
        totals.adjustment_total_minor,
        totals.payable_total_minor,
        totals.carried_forward_total_minor,
    )
    assert exact[1] == sum(row[1] for row in lines) == 10_000
    assert exact[4] == sum(row[4] for row in lines)
    # Major units carry the currency's decimals; the XML holds the exact decimal text.
    payable_major = sheet.cell(row=first, column=10)
    assert payable_major.number_format == "#,##0.00"
    with zipfile.ZipFile(path) as archive:
        sheet_xml = archive.read("xl/worksheets/sheet4.xml").decode()
    assert f"<v>{major_text(statement.lines[0].payable_minor, 2)}</v>" in sheet_xml

    breakdown = list(workbook[f"2026-10 {short} breakdown"].iter_rows(values_only=True))
    sources = [row for row in breakdown[3:] if row[0] and str(row[0]).startswith("0x")]
    assert sum(row[9] for row in sources) == statement.pool_minor
    assert any(
        row[0] == "Accrued total (statement, exact)" and row[9] == 10_000 for row in breakdown
    )


def test_xlsx_formats_zero_decimal_currencies_and_keeps_names_as_text(
    session: Session, world: World, tmp_path: Path
) -> None:
    ref = reports.statement_for_period(session, "2026-10", world.yen_model_id)
    path = tmp_path / "yen.xlsx"
    with path.open("wb") as fh:
        reports.write_settlement(session, [ref], "xlsx", fh)
    workbook = load_workbook(path)
    sheet = workbook[ref.short_name]
    model_cell = sheet.cell(row=2, column=2)
    assert model_cell.value == "=1+2 Yen Ltd" and model_cell.data_type == "s"
    heading = next(row[0].row for row in sheet.iter_rows() if row[0].value == "Payee")
    assert sheet.cell(row=heading + 1, column=7).number_format == "#,##0"
    out = io.BytesIO()
    reports.write_settlement(session, [ref], "csv", out)
    rows = _csv(out.getvalue())
    assert {row["model_name"] for row in rows} == {"'=1+2 Yen Ltd"}
    assert sum(int(row["payable"]) for row in rows) == ref.pool_minor == 9_999


def test_journal_csv_balances_per_transaction(session: Session, world: World) -> None:
    today = datetime.now(UTC).date()
    out = io.BytesIO()
    result = reports.write_journal_csv(session, today - timedelta(days=1), today, out)
    rows = _csv(out.getvalue())
    assert result.rows == len(rows) > 0
    balance: dict[tuple[str, str], int] = defaultdict(int)
    for row in rows:
        debit, credit = int(row["debit_minor"]), int(row["credit_minor"])
        assert (debit == 0) != (credit == 0) and debit >= 0 and credit >= 0
        assert row["debit"] == major_text(debit, 2) or row["currency"] != "EUR"
        balance[(row["transaction_id"], row["currency"])] += debit - credit
    assert set(balance.values()) == {0}
    close_rows = [
        row
        for row in rows
        if row["kind"] == "royalty_accrual"
        and json.loads(row["reference"] or "{}").get("period_id") == str(world.october.id)
    ]
    expense = [row for row in close_rows if row["account_code"].endswith("royalty_expense")]
    assert [int(row["debit_minor"]) for row in expense] == [10_000]
    # Nothing outside the window: a window in the past is empty but well-formed.
    empty = io.BytesIO()
    assert reports.write_journal_csv(session, "2001-01-01", "2001-01-31", empty).rows == 0
    assert empty.getvalue().startswith(b"transaction_id,posted_at,kind")


def test_statement_pdf_shows_the_payee_line_breakdown_settlement_and_chart(
    session: Session, world: World
) -> None:
    pypdf = pytest.importorskip("pypdf", reason="pypdf extracts the PDF text (dev dependency)")
    ref = reports.statement_for_period(session, world.october.id)
    payee = world.adjusted_payee.lower()  # any letter case finds the line
    out = io.BytesIO()
    result = reports.write_statement_pdf(session, ref, payee, out)
    data = out.getvalue()
    assert data.startswith(b"%PDF-") and result.rows >= 1

    reader = pypdf.PdfReader(io.BytesIO(data))
    assert len(reader.pages) == result.rows
    content = "\n".join(page.extract_text() for page in reader.pages)
    flat = content.replace("\n", " ")
    line = next(
        line
        for line in _statement(session, world.october).lines
        if line.address == world.adjusted_payee
    )
    assert world.adjusted_payee in flat
    assert f"{major_display(line.payable_minor, 2)} EUR" in flat
    assert f"{major_display(line.carry_in_minor, 2)} EUR" in flat
    assert "-0.40 EUR" in flat and ADJUSTMENT_REASON in flat
    assert ref.settlement is not None and ref.settlement.merkle_root in flat
    assert f"usefirst verify --account {world.adjusted_payee}" in flat
    assert "training units" in flat and "retrieval hits" in flat
    assert "2026-09" in flat  # the chart's category axis spans the model's periods


def test_uncompressed_pdf_carries_the_text_in_its_page_streams(
    session: Session, world: World
) -> None:
    ref = reports.statement_for_period(session, world.yen_october.id)
    payee = _statement(session, world.yen_october).lines[0].address
    out = io.BytesIO()
    reports.write_statement_pdf(session, ref, payee, out, compress=False)
    data = out.getvalue()
    assert data.startswith(b"%PDF-")
    assert b"/Type /Page" in data
    # Addresses and commands are set in Courier, a standard font: plain text in the stream.
    assert f"({payee})".encode() in data
    assert b"(usefirst verify --account " in data
    assert b"/FlateDecode" not in data


def test_statement_json_is_the_anchored_bytes(session: Session, world: World) -> None:
    ref = reports.statement_for_period(session, "2026-10", world.model_id)
    out = io.BytesIO()
    result = reports.write_statement_json(session, ref, out)
    assert hashlib.sha256(out.getvalue()).hexdigest() == world.october.statement_hash
    assert result.sha256 == world.october.statement_hash
    assert out.getvalue() == closing.statement_bytes(session, world.october)
    seen: list[tuple[int, int]] = []
    chunks = list(
        reports.iter_statement_json(session, ref, lambda d, t: seen.append((d, t)), chunk_bytes=97)
    )
    assert len(chunks) > 5 and b"".join(chunks) == out.getvalue()
    assert seen[-1] == (len(out.getvalue()), len(out.getvalue()))


def test_selection_errors_are_precise(session: Session, world: World) -> None:
    with pytest.raises(NotFound) as unknown:
        reports.statements_for_period(session, str(uuid.uuid4()))
    assert unknown.value.code == "period_not_found"
    with pytest.raises(StateError) as still_open:
        reports.statements_for_period(session, "2026-11", world.model_id)
    assert still_open.value.code == "period_not_closed"
    assert "open" in still_open.value.message
    with pytest.raises(ValidationFailed) as bad_key:
        reports.statements_for_period(session, "2026-13")
    assert bad_key.value.code == "period_invalid"
    with pytest.raises(NotFound) as no_model:
        reports.statements_for_period(session, "2026-10", uuid.uuid4())
    assert no_model.value.code == "model_not_found"
    with pytest.raises(ValidationFailed) as ambiguous:
        reports.statement_for_period(session, "2026-10")
    assert ambiguous.value.code == "period_ambiguous"
    with pytest.raises(ValidationFailed) as backwards:
        reports.statements_in_range(session, "2026-10-31", "2026-10-01")
    assert backwards.value.code == "date_range_invalid"
    ref = reports.statement_for_period(session, world.october.id)
    with pytest.raises(NotFound) as stranger:
        reports.write_statement_pdf(session, ref, "0x" + "ab" * 20, io.BytesIO())
    assert stranger.value.code == "payee_not_in_statement"
    with pytest.raises(ValidationFailed) as not_an_address:
        reports.write_statement_pdf(session, ref, "alice", io.BytesIO())
    assert not_an_address.value.code == "payee_invalid"
    with pytest.raises(ValidationFailed) as bad_format:
        reports.write_settlement(session, [ref], "ods", io.BytesIO())
    assert bad_format.value.code == "format_invalid"


def test_lines_that_do_not_add_up_stop_the_export(session: Session, world: World) -> None:
    ref = reports.statement_for_period(session, world.september.id)
    # Corrupt one stored line inside this (rolled back) transaction.
    session.execute(
        text(
            "UPDATE statement_line SET accrued_minor = accrued_minor + 1 WHERE period_id = :p "
            "AND address = (SELECT min(address) FROM statement_line WHERE period_id = :p)"
        ),
        {"p": world.september.id},
    )
    for fmt in ("csv", "xlsx"):
        with pytest.raises(ExportIntegrityError, match="accrued_total_minor"):
            reports.write_settlement(session, [ref], fmt, io.BytesIO())


def test_csv_streams_in_chunks_with_progress() -> None:
    calls: list[tuple[int, int]] = []
    rows = ([i, "x" * 100] for i in range(10_000))
    chunks = list(
        csv_chunks(("n", "text"), rows, total=10_000, progress=lambda d, t: calls.append((d, t)))
    )
    assert len(chunks) > 3
    assert calls[-1] == (10_000, 10_000) and calls == sorted(calls)
    assert b"".join(chunks).count(b"\r\n") == 10_001


@pytest.mark.parametrize(
    ("minor", "exponent", "text_", "display"),
    [
        (-5, 2, "-0.05", "-0.05"),
        (0, 2, "0.00", "0.00"),
        (123_456_789, 2, "1234567.89", "1,234,567.89"),
        (99_999, 0, "99999", "99,999"),
        (1_234, 3, "1.234", "1.234"),
        (-(10**20) - 1, 2, "-1000000000000000000.01", "-1,000,000,000,000,000,000.01"),
    ],
)
def test_major_units_are_exact(minor: int, exponent: int, text_: str, display: str) -> None:
    assert major_text(minor, exponent) == text_
    assert major_display(minor, exponent) == display


def test_free_text_cannot_become_a_formula() -> None:
    assert safe_text("=HYPERLINK(1)") == "'=HYPERLINK(1)"
    assert safe_text("@SUM") == "'@SUM"
    assert safe_text("Acme -- data") == "Acme -- data"
    assert safe_text(None) == ""


def _usefirst(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "api.cli", *args],
        capture_output=True,
        text=True,
        env=dict(os.environ),
        timeout=120,
    )


def test_cli_exports_and_reports_errors(
    session: Session, world: World, database: Settings, tmp_path: Path
) -> None:
    target = tmp_path / "statement.json"
    done = _usefirst(
        "export", "statement-json", "--period", str(world.october.id), "-o", str(target), "--json"
    )
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert summary["sha256"] == world.october.statement_hash
    assert hashlib.sha256(target.read_bytes()).hexdigest() == world.october.statement_hash
    assert summary["statements"][0]["period_key"] == "2026-10"

    workbook = tmp_path / "range.xlsx"
    ranged = _usefirst(
        "export", "settlement", "--from", "2026-09-01", "--to", "2026-10-31",
        "--model", str(world.model_id), "--format", "xlsx", "-o", str(workbook), "--json",
    )  # fmt: skip
    assert ranged.returncode == 0, ranged.stderr
    assert [s["period_key"] for s in json.loads(ranged.stdout)["statements"]] == [
        "2026-09",
        "2026-10",
    ]
    assert len(load_workbook(workbook, read_only=True).sheetnames) == 5

    refused = _usefirst(
        "export", "settlement", "--period", "2026-11", "--model", str(world.model_id),
        "--format", "csv", "-o", str(tmp_path / "x.csv"),
    )  # fmt: skip
    assert refused.returncode == 2
    assert "period_not_closed" in refused.stderr
    assert not (tmp_path / "x.csv").exists()
    assert not list(tmp_path.glob(".x.csv.*"))  # no temporary file left behind
