"""ISO 4217 currencies and their minor-unit exponents, from the CLDR data Babel ships.

Money is an integer number of minor units (``*_minor``); the exponent says how many
minor units make a major one (``10 ** exponent``: USD 2, JPY 0, BHD 3). Nothing here is
hard-coded: the table is CLDR's (maintained with Babel releases). CLDR follows ISO 4217
except where a currency's fractional unit is out of use in practice (e.g. IQD and IRR:
ISO says 3 and 2, CLDR 0); for royalty payouts the practical unit is the right one.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Final

from babel.core import get_global
from babel.numbers import get_currency_precision

from ledger.errors import ValidationFailed


@lru_cache(maxsize=1)
def active_currencies() -> frozenset[str]:
    """Codes some country or territory uses today (CLDR territory data, no end date).

    Historic codes (DEM, FRF) are not in it, nor the codes CLDR files under the unknown
    region ``ZZ`` (metals, SDR, the testing code XTS) or ``XXX`` ("no currency"): none of
    them can be paid out.
    """
    territory_currencies = get_global("territory_currencies")
    return frozenset(
        code
        for territory, entries in territory_currencies.items()
        if territory != "ZZ"
        for code, _start, end, _tender in entries
        if end is None and code != "XXX"
    )


def normalize_currency(code: object, field: str = "currency") -> str:
    """Return the upper-case ISO 4217 code, or raise ValidationFailed (``currency_invalid``,
    ``currency_unknown``) naming ``field``."""
    if not isinstance(code, str) or len(code.strip()) != 3 or not code.strip().isalpha():
        raise ValidationFailed(
            f"{field} must be a three-letter ISO 4217 code such as EUR or USD, got {code!r}",
            field=field,
            code="currency_invalid",
        )
    upper = code.strip().upper()
    if upper not in active_currencies():
        raise ValidationFailed(
            f"{field} {upper!r} is not an ISO 4217 currency in use today; "
            "use the code of a current currency such as EUR, USD or JPY",
            field=field,
            code="currency_unknown",
        )
    return upper


def currency_exponent(code: str) -> int:
    """Decimal places of the currency's minor unit (USD 2, JPY 0, BHD 3).

    Raises ValidationFailed for a code that is not a current ISO 4217 currency.
    """
    upper = normalize_currency(code)
    return int(get_currency_precision(upper))


# --- minor units as text --------------------------------------------------------------
# Built from the integer with divmod (never through a float), so -5 EUR minor is "-0.05".

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


def major_display(amount_minor: int, exponent: int) -> str:
    """``major_text`` with thousands separators, for people (``123456`` → ``"1,234.56"``)."""
    text = major_text(amount_minor, exponent)
    sign = "-" if text.startswith("-") else ""
    whole, _, fraction = text.lstrip("-").partition(".")
    grouped = f"{int(whole):,}"
    return f"{sign}{grouped}.{fraction}" if fraction else f"{sign}{grouped}"
