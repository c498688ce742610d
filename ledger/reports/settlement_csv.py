"""Settlement report as two CSV files: one row per (period, payee), and the breakdown.

Two files rather than one with mixed row types, so each imports into a spreadsheet
or an accounting tool with a fixed set of columns (see docs/ARCHITECTURE.md,
"Reports"). Amounts appear twice: integers of minor units (``*_minor``, exact, what
to compute with) and the same amount in major units as exact decimal text.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Final

from sqlmodel import Session

from ledger.currencies import major_text
from ledger.reports import queries
from ledger.reports.queries import StatementRef
from ledger.reports.streams import Progress, csv_chunks, safe_text
from ledger.reports.totals import LineTotals, check_lines, check_sources

LINE_COLUMNS: Final = (
    "model_id",
    "model_name",
    "period_id",
    "period_key",
    "period_state",
    "currency",
    "currency_exponent",
    "payee_address",
    "accrued_minor",
    "carry_in_minor",
    "adjustment_minor",
    "payable_minor",
    "carried_forward_minor",
    "accrued",
    "carry_in",
    "adjustment",
    "payable",
    "carried_forward",
    "statement_hash",
    "merkle_root",
    "publish_tx_hash",
    "settlement_state",
    "chain_id",
    "contract_address",
)

SOURCE_COLUMNS: Final = (
    "model_id",
    "period_id",
    "period_key",
    "currency",
    "currency_exponent",
    "payee_address",
    "dataset_id",
    "dataset_name",
    "kind",
    "weight",
    "total_weight",
    "sub_pool_minor",
    "dataset_amount_minor",
    "share_bps",
    "amount_minor",
    "amount",
    "rollup_ids",
)


def _line_rows(session: Session, statements: Sequence[StatementRef]) -> Iterator[list[object]]:
    for ref in statements:
        document = queries.statement_document_without_lines(session, ref.period_id)
        settlement = ref.settlement
        on_chain = (
            [
                settlement.merkle_root,
                settlement.publish_tx_hash or "",
                settlement.state,
                settlement.chain_id,
                settlement.contract_address,
            ]
            if settlement is not None
            else ["", "", "", "", ""]
        )
        head = [
            str(ref.model_id),
            safe_text(ref.model_name),
            str(ref.period_id),
            ref.period_key,
            ref.period_state,
            ref.currency,
            ref.currency_exponent,
        ]
        exponent = ref.currency_exponent
        sums = LineTotals()
        for line in queries.stream_lines(session, ref.period_id):
            sums.add(line)
            amounts = line.amounts_minor
            yield [
                *head,
                line.address,
                *amounts,
                *(major_text(amount, exponent) for amount in amounts),
                ref.statement_hash,
                *on_chain,
            ]
        check_lines(ref, document, sums)


def iter_lines_csv(
    session: Session, statements: Sequence[StatementRef], progress: Progress | None = None
) -> Iterator[bytes]:
    """The per-payee CSV (``LINE_COLUMNS``) of ``statements``, in chunks of bytes."""
    total = sum(ref.line_count for ref in statements)
    return csv_chunks(LINE_COLUMNS, _line_rows(session, statements), total=total, progress=progress)


def _source_rows(session: Session, statements: Sequence[StatementRef]) -> Iterator[list[object]]:
    for ref in statements:
        document = queries.statement_document_without_lines(session, ref.period_id)
        head = [
            str(ref.model_id),
            str(ref.period_id),
            ref.period_key,
            ref.currency,
            ref.currency_exponent,
        ]
        amount_minor_sum = 0
        for source in queries.stream_sources(session, ref.period_id):
            amount_minor_sum += source.amount_minor
            yield [
                *head,
                source.address,
                source.dataset_id,
                safe_text(source.dataset_name),
                source.kind,
                source.weight,
                source.total_weight,
                source.sub_pool_minor,
                source.dataset_amount_minor,
                source.share_bps,
                source.amount_minor,
                major_text(source.amount_minor, ref.currency_exponent),
                " ".join(source.rollup_ids),
            ]
        check_sources(ref, document, amount_minor_sum)


def iter_breakdown_csv(
    session: Session, statements: Sequence[StatementRef], progress: Progress | None = None
) -> Iterator[bytes]:
    """The breakdown CSV (``SOURCE_COLUMNS``): one row per payee × dataset × kind."""
    total = sum(ref.source_count for ref in statements)
    return csv_chunks(
        SOURCE_COLUMNS, _source_rows(session, statements), total=total, progress=progress
    )
