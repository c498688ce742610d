"""Exact totals of a streamed statement, checked against the statement itself.

An export adds up the lines it writes (Python ints, exact) and, at the end of each
statement, compares the sums with the ``totals`` of the canonical statement and the
pool. A mismatch raises :class:`ExportIntegrityError` instead of finishing a report
whose numbers do not add up.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ledger.reports.queries import LineRow, StatementRef
from ledger.reports.streams import ExportIntegrityError


@dataclass
class LineTotals:
    """Running sums of the lines written so far, in ``LineRow.amounts_minor`` order."""

    amounts_minor: list[int] = field(default_factory=lambda: [0] * 5)
    lines: int = 0

    def add(self, line: LineRow) -> None:
        for index, amount_minor in enumerate(line.amounts_minor):
            self.amounts_minor[index] += amount_minor
        self.lines += 1

    @property
    def accrued_minor(self) -> int:
        return self.amounts_minor[0]


STATEMENT_TOTAL_KEYS = (
    "accrued_total_minor",
    "carry_in_total_minor",
    "adjustment_total_minor",
    "payable_total_minor",
    "carried_forward_total_minor",
)


def statement_totals(document: dict[str, Any]) -> tuple[int, int, int, int, int]:
    """The five ``totals`` of a canonical statement document, as ints."""
    totals = document["totals"]
    accrued, carry_in, adjustment, payable, carried = (int(totals[k]) for k in STATEMENT_TOTAL_KEYS)
    return accrued, carry_in, adjustment, payable, carried


def check_lines(ref: StatementRef, document: dict[str, Any], sums: LineTotals) -> None:
    """Raise unless the streamed lines add up to the statement: the line count, the
    five totals, the pool, and Σ accrued = pool when something accrued."""
    problems: list[str] = []
    if sums.lines != ref.line_count:
        problems.append(f"{sums.lines} lines read, {ref.line_count} stored")
    expected = statement_totals(document)
    for name, got, want in zip(STATEMENT_TOTAL_KEYS, sums.amounts_minor, expected, strict=True):
        if got != want:
            problems.append(f"{name}: lines sum to {got}, statement says {want}")
    if int(document["pool_minor"]) != ref.pool_minor:
        problems.append(f"pool_minor: statement {document['pool_minor']}, period {ref.pool_minor}")
    if document["no_accrual_reason"] is None and sums.accrued_minor != ref.pool_minor:
        problems.append(f"accrued {sums.accrued_minor} differs from the pool {ref.pool_minor}")
    if problems:
        raise ExportIntegrityError(
            f"statement {ref.short_name} ({ref.period_id}) does not add up: " + "; ".join(problems)
        )


def check_sources(ref: StatementRef, document: dict[str, Any], sources_amount_minor: int) -> None:
    """Raise unless the breakdown sources add up to the statement's accrued total."""
    accrued_total = statement_totals(document)[0]
    if sources_amount_minor != accrued_total:
        raise ExportIntegrityError(
            f"statement {ref.short_name} ({ref.period_id}): breakdown sources sum to "
            f"{sources_amount_minor}, accrued total is {accrued_total}"
        )
