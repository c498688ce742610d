"""From a statement to its settlement tree: pure, so owners rebuild exactly what we publish.

Used by the anchoring service (from the stored statement) and by ``usefirst verify`` (from
the exported statement file alone, no database), so both take the same path:

- ``units_per_minor = 10 ** (token_decimals − currency_exponent)`` token base units per minor
  unit of the statement's currency; exact integer arithmetic, no rounding anywhere;
- one leaf ``(address, payable_minor × units_per_minor)`` per line with ``payable_minor > 0``
  (lines that carry their balance forward are not paid this period);
- the OpenZeppelin ``StandardMerkleTree`` of those leaves (``contracts.merkle``).
"""

from __future__ import annotations

from dataclasses import dataclass

import attribution as attr
from contracts.merkle import StandardMerkleTree, statement_tree
from ledger.currencies import currency_exponent
from ledger.errors import ValidationFailed


@dataclass(frozen=True)
class SettlementLine:
    """One payable line: ``amount_units`` token base units for ``payable_minor``."""

    account: str
    payable_minor: int
    amount_units: int


@dataclass(frozen=True)
class SettlementTree:
    lines: tuple[SettlementLine, ...]
    units_per_minor: int
    tree: StandardMerkleTree | None  # None when no line is payable

    @property
    def total_units(self) -> int:
        return sum(line.amount_units for line in self.lines)

    @property
    def total_minor(self) -> int:
        return sum(line.payable_minor for line in self.lines)


def units_per_minor(
    token_decimals: int, currency: str, *, configured_units_per_minor: int | None = None
) -> int:
    """Token base units per minor unit of ``currency`` for a token with ``token_decimals``.

    ``configured_units_per_minor`` (``USEFIRST_CHAIN_UNITS_PER_MINOR``) replaces the derived
    scale. Raises ValidationFailed (code ``token_decimals_too_few``) when the token cannot
    represent the currency's minor unit exactly and no scale is configured.
    """
    if configured_units_per_minor is not None:
        if configured_units_per_minor < 1:
            raise ValidationFailed(
                f"units per minor must be a positive integer, got {configured_units_per_minor}",
                field="chain_units_per_minor",
            )
        return configured_units_per_minor
    exponent = currency_exponent(currency)
    if token_decimals < exponent:
        raise ValidationFailed(
            f"the settlement token has {token_decimals} decimals but {currency} has "
            f"{exponent}: one minor unit cannot be paid exactly; use a token with at least "
            f"{exponent} decimals or set USEFIRST_CHAIN_UNITS_PER_MINOR deliberately",
            field="chain_token_address",
            code="token_decimals_too_few",
        )
    return 10 ** (token_decimals - exponent)


def payable_lines(
    lines: list[tuple[str, int]] | tuple[tuple[str, int], ...], scale: int
) -> tuple[SettlementLine, ...]:
    """``(address, payable_minor)`` pairs → payable settlement lines (zero lines left out)."""
    return tuple(
        SettlementLine(account=address, payable_minor=payable, amount_units=payable * scale)
        for address, payable in lines
        if payable > 0
    )


def build_tree(
    lines: list[tuple[str, int]] | tuple[tuple[str, int], ...], scale: int
) -> SettlementTree:
    """The settlement tree of ``(address, payable_minor)`` lines at ``scale`` units per minor."""
    payable = payable_lines(lines, scale)
    tree = (
        statement_tree((line.account, line.amount_units) for line in payable) if payable else None
    )
    return SettlementTree(lines=payable, units_per_minor=scale, tree=tree)


def statement_settlement_tree(statement: attr.Statement, scale: int) -> SettlementTree:
    """The settlement tree of a parsed canonical statement."""
    return build_tree([(line.address, line.payable_minor) for line in statement.lines], scale)
