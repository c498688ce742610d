"""Minor units to major-unit text, exactly: the reports' only money conversion.

Amounts are integers of minor units; a currency's exponent says how many decimal
places its major unit has (EUR 2, JPY 0, BHD 3). The major-unit text is built from the
integer with ``divmod`` (never through a float), so ``-5`` EUR minor is ``"-0.05"``.
"""

from __future__ import annotations

from typing import Final

# Decimal places a currency can have (ISO 4217 uses 0 to 4).
EXPONENT_MAX: Final = 4


def major_text(amount_minor: int, exponent: int) -> str:
    """``amount_minor`` as a plain decimal string of major units (``1234`` → ``"12.34"``).

    No thousands separators, ``-`` for negatives, exactly ``exponent`` decimal places.
    """
    if type(amount_minor) is not int:
        raise TypeError(f"amount_minor must be an int, got {type(amount_minor).__name__}")
    if not 0 <= exponent <= EXPONENT_MAX:
        raise ValueError(f"currency exponent must be 0..{EXPONENT_MAX}, got {exponent}")
    sign = "-" if amount_minor < 0 else ""
    whole, fraction = divmod(abs(amount_minor), 10**exponent)
    if exponent == 0:
        return f"{sign}{whole}"
    return f"{sign}{whole}.{fraction:0{exponent}d}"


def excel_number_format(exponent: int) -> str:
    """The Excel number format showing ``exponent`` decimal places (``#,##0.00`` for 2)."""
    if not 0 <= exponent <= EXPONENT_MAX:
        raise ValueError(f"currency exponent must be 0..{EXPONENT_MAX}, got {exponent}")
    return "#,##0" if exponent == 0 else "#,##0." + "0" * exponent


def major_display(amount_minor: int, exponent: int) -> str:
    """``major_text`` with thousands separators, for people (``123456`` → ``"1,234.56"``)."""
    text = major_text(amount_minor, exponent)
    sign = "-" if text.startswith("-") else ""
    whole, _, fraction = text.lstrip("-").partition(".")
    grouped = f"{int(whole):,}"
    return f"{sign}{grouped}.{fraction}" if fraction else f"{sign}{grouped}"


def bps_percent(share_bps: int) -> str:
    """Basis points as an exact percentage text (``6000`` → ``"60.00 %"``)."""
    return major_text(share_bps, 2) + " %"
