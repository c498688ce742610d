"""Errors raised by the attribution engine.

Every error is a value with a stable machine ``code`` (for problem+json mapping in the API) and a
human message that names the offending field and says how to fix it. Input errors carry the
dotted ``field`` path they are about.
"""

from __future__ import annotations

from typing import ClassVar


class AttributionError(Exception):
    """Base of every error the attribution package raises on purpose."""

    code: ClassVar[str] = "attribution_error"


class AttributionInputError(AttributionError, ValueError):
    """A period input (or one of its parts) breaks a documented rule.

    ``field`` is the dotted name of the offending field, e.g. ``"CoOwner.share_bps"`` or
    ``"PeriodInput.training"``; the message starts with it.
    """

    code: ClassVar[str] = "invalid_input"

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        super().__init__(f"{field}: {message}")


class InvalidTypeError(AttributionInputError):
    """A field has the wrong Python type (e.g. a float or Decimal where an int is required)."""

    code = "invalid_type"


class InvalidTextError(AttributionInputError):
    """A text field is empty or is not encodable as UTF-8."""

    code = "invalid_text"


class InvalidAddressError(AttributionInputError):
    """An address is not of the form 0x followed by 40 hex digits."""

    code = "invalid_address"


class InvalidCurrencyError(AttributionInputError):
    """A currency is not a three-letter upper-case ISO 4217 code."""

    code = "invalid_currency"


class NegativeAmountError(AttributionInputError):
    """A count or amount that must be >= 0 is negative."""

    code = "negative_amount"


class BpsOutOfRangeError(AttributionInputError):
    """A basis-point value lies outside its allowed range."""

    code = "bps_out_of_range"


class VersionOutOfRangeError(AttributionInputError):
    """An agreement version is < 1."""

    code = "version_out_of_range"


class SharesNotFullError(AttributionInputError):
    """The co-owner shares of one dataset do not add up to exactly 10,000 bps."""

    code = "shares_not_10000"


class DuplicateCoOwnerError(AttributionInputError):
    """The same address appears twice among one dataset's co-owners."""

    code = "duplicate_co_owner"


class ListLengthOutOfRangeError(AttributionInputError):
    """A retrieval list length is outside 1..LIST_LENGTH_MAX."""

    code = "list_length_out_of_range"


class RankOutOfRangeError(AttributionInputError):
    """A retrieval rank is outside 1..list_length."""

    code = "rank_out_of_range"


class UnknownPolicyError(AttributionInputError):
    """A retrieval credit policy name is not in the registry."""

    code = "unknown_policy"


class UnknownDatasetError(AttributionInputError):
    """A rollup refers to a dataset that is missing from ``PeriodInput.datasets``."""

    code = "unknown_dataset"


class DuplicateDatasetError(AttributionInputError):
    """The same dataset_id appears twice in ``PeriodInput.datasets``."""

    code = "duplicate_dataset"


class DuplicateRollupError(AttributionInputError):
    """Two rollups have the same key (dataset for training; dataset, n, r for retrieval)."""

    code = "duplicate_rollup"


class DuplicateCarryInError(AttributionInputError):
    """Two carry-ins name the same address."""

    code = "duplicate_carry_in"


class DuplicateAdjustmentError(AttributionInputError):
    """Two adjustments share the same (address, reference)."""

    code = "duplicate_adjustment"


class ZeroAdjustmentError(AttributionInputError):
    """An adjustment has amount 0, which would record nothing."""

    code = "zero_adjustment"


class AddressCaseConflictError(AttributionInputError):
    """Two spellings of one address differ only in letter case.

    Lines are keyed by the exact address string, so two spellings would split one payee into two
    lines; the caller must pass one (checksummed) spelling throughout.
    """

    code = "address_case_conflict"


class StatementFormatError(AttributionError, ValueError):
    """Bytes given to ``statement_from_json`` are not a canonical statement of this schema."""

    code = "statement_format"


class StatementInconsistentError(AttributionError, ValueError):
    """A statement breaks one of its own arithmetic identities (see ``check_statement``)."""

    code = "statement_inconsistent"


class PayeeNotFoundError(AttributionError, LookupError):
    """``explain`` was asked about an address that has no line in the statement."""

    code = "payee_not_found"
