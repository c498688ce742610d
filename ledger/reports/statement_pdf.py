"""A payee's statement as PDF (reportlab): their line, where it came from, the on-chain
settlement and how to verify it, and a chart of their datasets' usage over time.

Only one payee's rows are read (their line, its sources and adjustments, their
datasets' rollups for the model's last 12 periods), so the size of the statement does
not matter. Free text is escaped before it reaches reportlab's paragraph markup.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import timedelta
from functools import lru_cache
from pathlib import Path
from typing import Any, Final
from xml.sax.saxutils import escape

import reportlab
from reportlab.graphics.charts.barcharts import VerticalBarChart
from reportlab.graphics.shapes import Drawing, Group, String
from reportlab.lib import colors
from reportlab.lib.pagesizes import A4
from reportlab.lib.styles import ParagraphStyle, getSampleStyleSheet
from reportlab.lib.units import mm
from reportlab.pdfbase import pdfmetrics
from reportlab.pdfbase.ttfonts import TTFont
from reportlab.platypus import (
    KeepTogether,
    LongTable,
    Paragraph,
    SimpleDocTemplate,
    Spacer,
    Table,
    TableStyle,
)
from reportlab.platypus.flowables import Flowable

from ledger.currencies import major_display
from ledger.reports.amounts import bps_percent
from ledger.reports.queries import PayeeLine, StatementRef, UsagePoint
from ledger.reports.streams import BinarySink

# Datasets charted per statement (the most used first); the rest are listed by name.
CHART_DATASETS_MAX: Final = 12
_FONT, _FONT_BOLD, _MONO = "Vera", "VeraBd", "Courier"
_GRID: Final = colors.HexColor("#c8ccd2")
_SHADE: Final = colors.HexColor("#eef1f5")
_TRAIN_COLOUR: Final = colors.HexColor("#2f6db5")
_RAG_COLOUR: Final = colors.HexColor("#e08a1e")


@lru_cache(maxsize=1)
def _register_fonts() -> None:
    # Bitstream Vera ships inside reportlab: embedded TrueType, so names beyond ASCII
    # render and text extraction works, with no system fonts needed.
    fonts = Path(reportlab.__file__).parent / "fonts"
    pdfmetrics.registerFont(TTFont(_FONT, str(fonts / "Vera.ttf")))
    pdfmetrics.registerFont(TTFont(_FONT_BOLD, str(fonts / "VeraBd.ttf")))


@dataclass(frozen=True)
class _Styles:
    title: ParagraphStyle
    heading: ParagraphStyle
    body: ParagraphStyle
    small: ParagraphStyle
    mono: ParagraphStyle
    code: ParagraphStyle


@lru_cache(maxsize=1)
def _styles() -> _Styles:
    _register_fonts()
    base = getSampleStyleSheet()
    body = ParagraphStyle("uf-body", parent=base["BodyText"], fontName=_FONT, fontSize=9)
    return _Styles(
        title=ParagraphStyle("uf-title", parent=base["Title"], fontName=_FONT_BOLD, fontSize=17),
        heading=ParagraphStyle(
            "uf-heading",
            parent=base["Heading2"],
            fontName=_FONT_BOLD,
            fontSize=12,
            keepWithNext=1,
        ),
        body=body,
        small=ParagraphStyle("uf-small", parent=body, fontSize=7.5, leading=9),
        mono=ParagraphStyle("uf-mono", parent=body, fontName=_MONO, fontSize=8, leading=10),
        code=ParagraphStyle(
            "uf-code",
            parent=body,
            fontName=_MONO,
            fontSize=7.5,
            leading=9.5,
            backColor=_SHADE,
            borderPadding=3,
            leftIndent=4,
            spaceAfter=6,
        ),
    )


def _p(value: object, style: ParagraphStyle) -> Paragraph:
    """A paragraph of plain text: markup characters escaped, newlines kept."""
    return Paragraph(escape(str(value)).replace("\n", "<br/>"), style)


def _table(rows: list[list[Any]], widths: list[float], header: bool = True) -> Table:
    table = LongTable(rows, colWidths=widths, repeatRows=1 if header else 0)
    commands: list[tuple[Any, ...]] = [
        ("FONTNAME", (0, 0), (-1, -1), _FONT),
        ("FONTSIZE", (0, 0), (-1, -1), 8.5),
        ("VALIGN", (0, 0), (-1, -1), "TOP"),
        ("LINEBELOW", (0, 0), (-1, -1), 0.25, _GRID),
    ]
    if header:
        commands += [
            ("FONTNAME", (0, 0), (-1, 0), _FONT_BOLD),
            ("BACKGROUND", (0, 0), (-1, 0), _SHADE),
        ]
    table.setStyle(TableStyle(commands))
    return table


def _identity(ref: StatementRef, payee: PayeeLine, st: _Styles) -> Table:
    rows = [
        ["Payee", _p(payee.line.address, st.mono)],
        ["Owner", _p(payee.owner_name or "—", st.body)],
        ["Model", _p(f"{ref.model_name} ({ref.model_id})", st.body)],
        [
            "Period",
            _p(
                f"{ref.period_key}: {ref.starts_at:%Y-%m-%d} to "
                f"{ref.ends_at - timedelta(microseconds=1):%Y-%m-%d} (UTC), {ref.period_state}",
                st.body,
            ),
        ],
        ["Currency", _p(f"{ref.currency} ({ref.currency_exponent} decimals)", st.body)],
        ["Statement hash", _p(ref.statement_hash, st.mono)],
    ]
    table = _table(rows, [32 * mm, 138 * mm], header=False)
    table.setStyle(TableStyle([("FONTNAME", (0, 0), (0, -1), _FONT_BOLD)]))
    return table


def _line_table(ref: StatementRef, payee: PayeeLine, st: _Styles) -> Table:
    line, exponent, currency = payee.line, ref.currency_exponent, ref.currency

    def money(amount_minor: int) -> str:
        return f"{major_display(amount_minor, exponent)} {currency}"

    rows: list[list[Any]] = [
        ["", f"Amount ({currency})", "Minor units"],
        ["Accrued this period", money(line.accrued_minor), str(line.accrued_minor)],
        [
            "Carried in from the previous period",
            money(line.carry_in_minor),
            str(line.carry_in_minor),
        ],
    ]
    for amount_minor, reason, reference in payee.adjustments:
        rows.append(
            [
                _p(f"Adjustment {reference}: {reason}", st.body),
                money(amount_minor),
                str(amount_minor),
            ]
        )
    rows += [
        ["Adjustments, total", money(line.adjustment_minor), str(line.adjustment_minor)],
        ["Payable now", money(line.payable_minor), str(line.payable_minor)],
        ["Carried forward", money(line.carried_forward_minor), str(line.carried_forward_minor)],
    ]
    table = _table(rows, [92 * mm, 48 * mm, 30 * mm])
    payable_row = len(rows) - 2
    table.setStyle(
        TableStyle(
            [
                ("ALIGN", (1, 0), (-1, -1), "RIGHT"),
                ("FONTNAME", (0, payable_row), (-1, payable_row), _FONT_BOLD),
                ("BACKGROUND", (0, payable_row), (-1, payable_row), _SHADE),
            ]
        )
    )
    return table


def _breakdown_table(ref: StatementRef, payee: PayeeLine, st: _Styles) -> Flowable:
    if not payee.sources:
        return _p(
            "No usage accrued to you this period; the line holds carried or adjusted amounts.",
            st.body,
        )
    exponent = ref.currency_exponent
    rows: list[list[Any]] = [
        ["Dataset", "Use", "Weight of total", "Dataset amount", "Your share", "Your amount"]
    ]
    for source in payee.sources:
        rows.append(
            [
                _p(f"{source.dataset_name or '(unknown)'}\n{source.dataset_id}", st.small),
                source.kind,
                _p(f"{source.weight} of {source.total_weight}", st.small),
                major_display(source.dataset_amount_minor, exponent),
                bps_percent(source.share_bps),
                major_display(source.amount_minor, exponent),
            ]
        )
    total = sum(source.amount_minor for source in payee.sources)
    rows.append(["Total", "", "", "", "", major_display(total, exponent)])
    table = _table(rows, [52 * mm, 18 * mm, 34 * mm, 24 * mm, 18 * mm, 24 * mm])
    table.setStyle(
        TableStyle(
            [
                ("ALIGN", (3, 0), (-1, -1), "RIGHT"),
                ("FONTNAME", (0, -1), (-1, -1), _FONT_BOLD),
            ]
        )
    )
    return table


def _settlement_section(ref: StatementRef, payee: PayeeLine, st: _Styles) -> list[Flowable]:
    s = ref.settlement
    if s is None:
        return [
            _p(
                "This statement has not been anchored on chain yet. Once it is, the settlement "
                "contract holds its Merkle root and the funds, and you can claim your payable "
                "amount with a proof.",
                st.body,
            )
        ]
    amount_units = payee.line.payable_minor * s.units_per_minor
    rows = [
        ["Chain id", _p(s.chain_id, st.mono)],
        ["Settlement contract", _p(s.contract_address, st.mono)],
        ["Token", _p(s.token_address, st.mono)],
        ["Settlement key", _p(s.settlement_key, st.mono)],
        ["Merkle root", _p(s.merkle_root, st.mono)],
        ["Statement hash on chain", _p(s.statement_hash, st.mono)],
        ["Publish transaction", _p(s.publish_tx_hash or "not sent yet", st.mono)],
        ["Block", _p(s.publish_block if s.publish_block is not None else "—", st.mono)],
        ["Settlement state", _p(s.state, st.body)],
        ["Your claimable amount", _p(f"{amount_units} token base units", st.mono)],
    ]
    table = _table(rows, [45 * mm, 125 * mm], header=False)
    table.setStyle(TableStyle([("FONTNAME", (0, 0), (0, -1), _FONT_BOLD)]))
    return [table]


def _verify_section(ref: StatementRef, payee: PayeeLine, st: _Styles) -> list[Flowable]:
    address, period, s = payee.line.address, ref.period_id, ref.settlement
    contract = f" --contract {s.contract_address}" if s is not None else ""
    chain = f"chain {s.chain_id}" if s is not None else "the settlement chain"
    flow: list[Flowable] = [
        _p(
            "1. The statement: get its canonical JSON (finance exports it with the first "
            "command) and hash it. The SHA-256 must equal the statement hash above and the "
            "hash published with the settlement.",
            st.body,
        ),
        _p(
            f"usefirst export statement-json --period {period} -o statement.json\n"
            "sha256sum statement.json",
            st.code,
        ),
        _p(
            "2. Your line, with nothing but the statement file and a node of "
            f"{chain}: the command rebuilds the Merkle tree from the statement, checks the "
            "published statement hash and root, and verifies your proof with the contract's "
            "own verifyLine.",
            st.body,
        ),
        _p(
            f"usefirst verify --account {address} --statement statement.json{contract} "
            "--rpc <RPC URL>",
            st.code,
        ),
    ]
    if s is not None:
        units = payee.line.payable_minor * s.units_per_minor
        flow += [
            _p(
                "3. Or call the free view function of the settlement contract yourself, with "
                "your proof:",
                st.body,
            ),
            _p(f"verifyLine({s.settlement_key}, {address}, {units}, proof)", st.code),
        ]
    return flow


def _usage_charts(points: list[UsagePoint], period_keys: list[str], st: _Styles) -> list[Flowable]:
    if not points:
        return [_p("No usage of your datasets by this model in these periods.", st.body)]
    by_dataset: dict[str, dict[str, UsagePoint]] = defaultdict(dict)
    names: dict[str, str] = {}
    for point in points:
        key = str(point.dataset_id)
        by_dataset[key][point.period_key] = point
        names[key] = point.dataset_name
    ranked = sorted(
        by_dataset,
        key=lambda d: (
            -sum(p.training_units + p.retrieval_hits for p in by_dataset[d].values()),
            d,
        ),
    )
    flow: list[Flowable] = []
    for dataset_id in ranked[:CHART_DATASETS_MAX]:
        usage = by_dataset[dataset_id]
        training = [usage[k].training_units if k in usage else 0 for k in period_keys]
        hits = [usage[k].retrieval_hits if k in usage else 0 for k in period_keys]
        drawing = Drawing(170 * mm, 52 * mm)
        drawing.add(
            String(
                0, 48 * mm, f"{names[dataset_id]} ({dataset_id})", fontName=_FONT_BOLD, fontSize=8.5
            )
        )
        drawing.add(_bar_chart(period_keys, training, "training units", _TRAIN_COLOUR, 0))
        drawing.add(_bar_chart(period_keys, hits, "retrieval hits", _RAG_COLOUR, 88 * mm))
        flow.append(KeepTogether([drawing, Spacer(1, 3 * mm)]))
    rest = ranked[CHART_DATASETS_MAX:]
    if rest:
        flow.append(
            _p(
                f"{len(rest)} more dataset(s) not charted: " + ", ".join(names[d] for d in rest),
                st.small,
            )
        )
    return flow


def _bar_chart(
    period_keys: list[str], values: list[int], label: str, colour: colors.Color, x: float
) -> Group:
    group = Group()
    chart = VerticalBarChart()
    chart.x, chart.y = x + 14 * mm, 10 * mm
    chart.width, chart.height = 66 * mm, 30 * mm
    chart.data = [values]
    chart.bars[0].fillColor = colour
    chart.bars[0].strokeColor = None
    # Whole-number ticks: four steps up to a round maximum.
    step = max(1, -(-max(values, default=0) // 4))
    chart.valueAxis.valueMin = 0
    chart.valueAxis.valueMax = step * 4
    chart.valueAxis.valueStep = step
    chart.valueAxis.labels.fontName = _FONT
    chart.valueAxis.labels.fontSize = 6
    chart.valueAxis.labelTextFormat = lambda v: f"{v:,.0f}"
    chart.categoryAxis.categoryNames = period_keys
    chart.categoryAxis.labels.fontName = _FONT
    chart.categoryAxis.labels.fontSize = 5.5
    chart.categoryAxis.labels.angle = 45
    chart.categoryAxis.labels.boxAnchor = "ne"
    group.add(chart)
    group.add(String(chart.x, 42 * mm, label, fontName=_FONT, fontSize=7.5, fillColor=colour))
    return group


def write_statement_pdf(
    ref: StatementRef,
    payee: PayeeLine,
    usage: list[UsagePoint],
    period_keys: list[str],
    out: BinarySink,
    *,
    compress: bool = True,
) -> int:
    """Render the payee's statement to ``out``; returns the number of pages.

    ``compress=False`` leaves page streams readable (for inspection and tests).
    """
    st = _styles()
    doc = SimpleDocTemplate(
        out,
        pagesize=A4,
        leftMargin=20 * mm,
        rightMargin=20 * mm,
        topMargin=18 * mm,
        bottomMargin=18 * mm,
        title=f"usefirst statement {ref.period_key} {payee.line.address}",
        author="usefirst",
        subject=f"Royalty statement, model {ref.model_id}, period {ref.period_id}",
        pageCompression=1 if compress else 0,
    )
    footer = f"usefirst royalty statement · {ref.period_key} · {payee.line.address}"

    def on_page(canvas: Any, document: Any) -> None:
        canvas.saveState()
        canvas.setFont(_FONT, 7)
        canvas.setFillColor(colors.grey)
        canvas.drawString(20 * mm, 10 * mm, footer)
        canvas.drawRightString(A4[0] - 20 * mm, 10 * mm, f"page {document.page}")
        canvas.restoreState()

    story: list[Flowable] = [
        _p("Royalty statement", st.title),
        _identity(ref, payee, st),
        _p("Your line", st.heading),
        _line_table(ref, payee, st),
        _p("Where it came from", st.heading),
        _p(
            "Each row is one dataset you co-own and one kind of use. The dataset amount is its "
            "exact share (weight / total weight) of the training or retrieval sub-pool; your "
            "amount is your co-owner share of it (largest-remainder rounding, see the "
            "statement's allocation rule).",
            st.small,
        ),
        _breakdown_table(ref, payee, st),
        _p("On-chain settlement", st.heading),
        *_settlement_section(ref, payee, st),
        _p("How to verify", st.heading),
        *_verify_section(ref, payee, st),
        _p("Usage of your datasets by this model", st.heading),
        _p(
            "Training units (sum of quantity × epochs) and retrieval hits per period, for the "
            f"model's last {len(period_keys)} period(s) up to {ref.period_key}.",
            st.small,
        ),
        *_usage_charts(usage, period_keys, st),
    ]
    doc.build(story, onFirstPage=on_page, onLaterPages=on_page)
    return int(doc.page)
