"""Settlement report as an XLSX workbook, streamed with openpyxl's write-only mode.

Sheets: ``Statements`` (one row per statement), then per statement a sheet named
``<period key> <model id prefix>`` (a header block, the lines, a SUM totals row, the
statement's exact totals and a check row) and ``<…> breakdown`` (payee × dataset ×
kind). Amounts are integers of minor units plus a major-unit column formatted with the
currency's decimals.

openpyxl writes numbers through ``"%.16g" % value`` (a float conversion); so a
major-unit amount is handed over as its exact decimal text in a cell marked numeric,
and the XML holds exactly ``12.34``. Integers below 10**15 (Excel's exact range) are
written as numbers, larger ones the same way as exact numeric text.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import suppress
from typing import Any, Final

from openpyxl import Workbook
from openpyxl.cell import WriteOnlyCell
from openpyxl.cell.cell import ILLEGAL_CHARACTERS_RE
from openpyxl.styles import Font
from openpyxl.utils import get_column_letter
from openpyxl.worksheet._write_only import WriteOnlyWorksheet
from sqlmodel import Session

from ledger.currencies import major_text
from ledger.reports import queries
from ledger.reports.amounts import excel_number_format
from ledger.reports.queries import StatementRef
from ledger.reports.streams import FETCH_ROWS, BinarySink, Progress
from ledger.reports.totals import LineTotals, check_lines, check_sources, statement_totals

# Excel keeps 15 significant digits; integers beyond are written as exact numeric text.
EXCEL_EXACT_INT_MAX: Final = 10**15 - 1
SHEET_TITLE_MAX: Final = 31

LINE_HEADINGS: Final = (
    "Payee",
    "Accrued (minor)",
    "Carry-in (minor)",
    "Adjustment (minor)",
    "Payable (minor)",
    "Carried forward (minor)",
    "Accrued",
    "Carry-in",
    "Adjustment",
    "Payable",
    "Carried forward",
)
SOURCE_HEADINGS: Final = (
    "Payee",
    "Dataset id",
    "Dataset name",
    "Kind",
    "Weight",
    "Total weight",
    "Sub-pool (minor)",
    "Dataset amount (minor)",
    "Share (bps)",
    "Amount (minor)",
    "Amount",
    "Rollup ids",
)
SUMMARY_HEADINGS: Final = (
    "Sheet",
    "Model",
    "Model id",
    "Period",
    "Period id",
    "State",
    "Currency",
    "Revenue (minor)",
    "Pool (minor)",
    "Payable total (minor)",
    "Lines",
    "Statement hash",
    "Merkle root",
    "Publish tx hash",
)
_BOLD: Final = Font(bold=True)


class _Cells:
    """Cell factories for one write-only sheet."""

    def __init__(self, sheet: WriteOnlyWorksheet, exponent: int = 0) -> None:
        self.sheet = sheet
        self.major_format = excel_number_format(exponent)
        self.exponent = exponent

    def text(self, value: str | None) -> WriteOnlyCell:
        """Free text, always stored as text: never a formula or an error code."""
        cell = WriteOnlyCell(self.sheet, value=ILLEGAL_CHARACTERS_RE.sub("", value or ""))
        cell.data_type = "s"
        return cell

    def bold(self, value: str) -> WriteOnlyCell:
        cell = self.text(value)
        cell.font = _BOLD
        return cell

    def minor(self, amount_minor: int) -> int | WriteOnlyCell:
        if -EXCEL_EXACT_INT_MAX <= amount_minor <= EXCEL_EXACT_INT_MAX:
            return amount_minor
        return self._numeric_text(str(amount_minor), "0")

    def major(self, amount_minor: int) -> WriteOnlyCell:
        return self._numeric_text(major_text(amount_minor, self.exponent), self.major_format)

    def _numeric_text(self, digits: str, number_format: str) -> WriteOnlyCell:
        cell = WriteOnlyCell(self.sheet, value=digits)
        cell.data_type = "n"  # the exact decimal text goes into <v> as is
        cell.number_format = number_format
        return cell

    def formula(self, formula: str, number_format: str | None = None) -> WriteOnlyCell:
        cell = WriteOnlyCell(self.sheet, value=formula)
        cell.font = _BOLD
        if number_format is not None:
            cell.number_format = number_format
        return cell


def _unique_title(title: str, used: set[str]) -> str:
    title = title[:SHEET_TITLE_MAX]
    candidate, n = title, 2
    while candidate.lower() in used:
        suffix = f" {n}"
        candidate = title[: SHEET_TITLE_MAX - len(suffix)] + suffix
        n += 1
    used.add(candidate.lower())
    return candidate


def _header_block(c: _Cells, ref: StatementRef, document: dict[str, Any]) -> list[list[object]]:
    s = ref.settlement
    training, retrieval = document["training"], document["retrieval"]
    rows: list[list[object]] = [
        [c.bold("usefirst settlement report")],
        [c.bold("Model"), c.text(ref.model_name), str(ref.model_id)],
        [c.bold("Period"), ref.period_key, str(ref.period_id)],
        [c.bold("Window (UTC)"), ref.starts_at.isoformat(), ref.ends_at.isoformat()],
        [c.bold("Period state"), ref.period_state],
        [c.bold("Currency"), ref.currency, f"exponent {ref.currency_exponent}"],
        [c.bold("Revenue"), c.minor(ref.revenue_minor), c.major(ref.revenue_minor)],
        [c.bold("Royalty pool"), c.minor(ref.pool_minor), c.major(ref.pool_minor)],
        [
            c.bold("Training sub-pool"),
            c.minor(int(training["amount_minor"])),
            c.major(int(training["amount_minor"])),
        ],
        [
            c.bold("Retrieval sub-pool"),
            c.minor(int(retrieval["amount_minor"])),
            c.major(int(retrieval["amount_minor"])),
        ],
        [c.bold("Royalty rate (bps)"), int(document["royalty_rate_bps"])],
        [c.bold("No accrual reason"), c.text(document["no_accrual_reason"])],
        [c.bold("Statement hash (SHA-256)"), ref.statement_hash],
        [c.bold("Merkle root"), s.merkle_root if s else "not anchored"],
        [c.bold("Publish tx hash"), (s.publish_tx_hash or "") if s else ""],
        [c.bold("Contract"), s.contract_address if s else "", f"chain {s.chain_id}" if s else ""],
        [c.bold("Settlement key"), s.settlement_key if s else ""],
        [c.bold("Settlement state"), s.state if s else ""],
        [c.bold("Lines"), ref.line_count],
        [],
    ]
    return rows


def _write_statement_sheet(
    sheet: WriteOnlyWorksheet,
    session: Session,
    ref: StatementRef,
    document: dict[str, Any],
    on_rows: Progress,
) -> None:
    c = _Cells(sheet, ref.currency_exponent)
    header = _header_block(c, ref, document)
    first_line_row = len(header) + 2  # the block, the headings, then the lines
    sheet.column_dimensions["A"].width = 46
    for column in range(2, len(LINE_HEADINGS) + 1):
        sheet.column_dimensions[get_column_letter(column)].width = 18
    sheet.freeze_panes = f"B{first_line_row}"
    for row in header:
        sheet.append(row)
    sheet.append([c.bold(h) for h in LINE_HEADINGS])
    sums = LineTotals()
    for line in queries.stream_lines(session, ref.period_id):
        sums.add(line)
        amounts = line.amounts_minor
        sheet.append([line.address, *(c.minor(a) for a in amounts), *(c.major(a) for a in amounts)])
        if sums.lines % FETCH_ROWS == 0:
            on_rows(sums.lines, 0)
    on_rows(sums.lines, 0)
    check_lines(ref, document, sums)

    last_line_row = first_line_row + sums.lines - 1
    sum_row = last_line_row + 1
    statement_row = sum_row + 1
    formats = ["0"] * 5 + [c.major_format] * 5
    totals: list[object] = [c.bold("Total (SUM of lines)")]
    for index, number_format in enumerate(formats, start=2):
        letter = get_column_letter(index)
        formula = f"=SUM({letter}{first_line_row}:{letter}{last_line_row})" if sums.lines else "=0"
        totals.append(c.formula(formula, number_format))
    sheet.append(totals)
    exact = statement_totals(document)
    sheet.append(
        [
            c.bold("Statement totals (exact)"),
            *(c.minor(v) for v in exact),
            *(c.major(v) for v in exact),
        ]
    )
    checks: list[object] = [c.bold("Check")]
    for index in range(2, 2 + len(formats)):
        letter = get_column_letter(index)
        checks.append(c.formula(f'=IF({letter}{sum_row}={letter}{statement_row},"OK","MISMATCH")'))
    sheet.append(checks)


def _write_breakdown_sheet(
    sheet: WriteOnlyWorksheet,
    session: Session,
    ref: StatementRef,
    document: dict[str, Any],
    on_rows: Progress,
) -> None:
    c = _Cells(sheet, ref.currency_exponent)
    sheet.column_dimensions["A"].width = 46
    sheet.column_dimensions["B"].width = 38
    sheet.column_dimensions["C"].width = 28
    sheet.freeze_panes = "B4"
    sheet.append([c.bold(f"Breakdown of {ref.short_name}"), c.text(ref.model_name)])
    sheet.append([c.bold("Statement hash (SHA-256)"), ref.statement_hash])
    sheet.append([c.bold(h) for h in SOURCE_HEADINGS])
    first_row, count, amount_minor_sum = 4, 0, 0
    for source in queries.stream_sources(session, ref.period_id):
        count += 1
        amount_minor_sum += source.amount_minor
        sheet.append(
            [
                source.address,
                source.dataset_id,
                c.text(source.dataset_name),
                source.kind,
                source.weight,
                source.total_weight,
                c.minor(source.sub_pool_minor),
                c.minor(source.dataset_amount_minor),
                source.share_bps,
                c.minor(source.amount_minor),
                c.major(source.amount_minor),
                " ".join(source.rollup_ids),
            ]
        )
        if count % FETCH_ROWS == 0:
            on_rows(count, 0)
    on_rows(count, 0)
    check_sources(ref, document, amount_minor_sum)
    last_row = first_row + count - 1
    amount_sum = f"=SUM(J{first_row}:J{last_row})" if count else "=0"
    major_sum = f"=SUM(K{first_row}:K{last_row})" if count else "=0"
    sum_row = last_row + 1
    accrued_total = statement_totals(document)[0]
    sheet.append(
        [
            c.bold("Total (SUM of sources)"),
            *[None] * 8,
            c.formula(amount_sum, "0"),
            c.formula(major_sum, c.major_format),
        ]
    )
    sheet.append(
        [
            c.bold("Accrued total (statement, exact)"),
            *[None] * 8,
            c.minor(accrued_total),
            c.major(accrued_total),
        ]
    )
    sheet.append(
        [c.bold("Check"), *[None] * 8, c.formula(f'=IF(J{sum_row}=J{sum_row + 1},"OK","MISMATCH")')]
    )


def _write_summary_sheet(
    sheet: WriteOnlyWorksheet,
    statements: Sequence[StatementRef],
    titles: Sequence[str],
    documents: dict[Any, dict[str, Any]],
) -> None:
    c = _Cells(sheet)
    sheet.column_dimensions["A"].width = 28
    sheet.append([c.bold("usefirst settlement report"), f"{len(statements)} statement(s)"])
    sheet.append([c.bold(h) for h in SUMMARY_HEADINGS])
    for ref, title in zip(statements, titles, strict=True):
        s = ref.settlement
        payable_total = statement_totals(documents[ref.period_id])[3]
        sheet.append(
            [
                title,
                c.text(ref.model_name),
                str(ref.model_id),
                ref.period_key,
                str(ref.period_id),
                ref.period_state,
                ref.currency,
                c.minor(ref.revenue_minor),
                c.minor(ref.pool_minor),
                c.minor(payable_total),
                ref.line_count,
                ref.statement_hash,
                s.merkle_root if s else "",
                (s.publish_tx_hash or "") if s else "",
            ]
        )


def _discard(workbook: Workbook) -> None:
    """Close the sheets of an abandoned workbook and remove their temporary files (the
    streaming writers would otherwise write into closed files at GC, and leave files)."""
    for sheet in workbook.worksheets:
        with suppress(Exception):
            sheet.close()
        with suppress(Exception):
            sheet._writer.cleanup()


def write_settlement_xlsx(
    session: Session,
    statements: Sequence[StatementRef],
    out: BinarySink,
    progress: Progress | None = None,
) -> None:
    """Write the workbook for ``statements`` to ``out``; ``progress(rows, total)`` counts
    line and breakdown rows. Raises ExportIntegrityError if a statement does not add up."""
    total = sum(ref.line_count + ref.source_count for ref in statements)
    done_before = 0

    def on_rows(done_in_sheet: int, _total: int) -> None:
        if progress is not None:
            progress(done_before + done_in_sheet, total)

    documents = {
        ref.period_id: queries.statement_document_without_lines(session, ref.period_id)
        for ref in statements
    }
    used: set[str] = {"statements"}
    titles = [_unique_title(ref.short_name, used) for ref in statements]
    workbook = Workbook(write_only=True)
    try:
        _write_summary_sheet(workbook.create_sheet("Statements"), statements, titles, documents)
        for ref, title in zip(statements, titles, strict=True):
            document = documents[ref.period_id]
            _write_statement_sheet(workbook.create_sheet(title), session, ref, document, on_rows)
            done_before += ref.line_count
            breakdown_title = _unique_title(f"{title} breakdown", used)
            _write_breakdown_sheet(
                workbook.create_sheet(breakdown_title), session, ref, document, on_rows
            )
            done_before += ref.source_count
    except BaseException:
        _discard(workbook)
        raise
    workbook.save(out)
    if progress is not None:
        progress(total, total)
