"""Report formatting of money and shares; minor units to major-unit text lives in
``ledger.currencies`` (the one module that owns currency conversions)."""

from __future__ import annotations

from ledger.currencies import EXPONENT_MAX, major_text


def excel_number_format(exponent: int) -> str:
    """The Excel number format showing ``exponent`` decimal places (``#,##0.00`` for 2)."""
    if not 0 <= exponent <= EXPONENT_MAX:
        raise ValueError(f"currency exponent must be 0..{EXPONENT_MAX}, got {exponent}")
    return "#,##0" if exponent == 0 else "#,##0." + "0" * exponent


def bps_percent(share_bps: int) -> str:
    """Basis points as an exact percentage text (``6000`` → ``"60.00 %"``)."""
    return major_text(share_bps, 2) + " %"
