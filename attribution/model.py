"""Value types of the attribution engine: period inputs in, a statement out.

Every type is a frozen dataclass. Inputs validate themselves on construction, so a
``PeriodInput`` that exists is valid: each rule below raises a subclass of
``AttributionInputError`` with a stable ``code``. Outputs are built by ``compute_statement`` or
parsed by ``statement_from_json`` and are checked by ``check_statement``.

Units: every ``*_minor`` is an int in minor units of the agreement's currency; every ``*_bps`` is
an int in basis points (1/10,000); weights are exact ``Fraction``s. There are no floats.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from fractions import Fraction
from typing import Final, Literal, TypeVar

from attribution.errors import (
    AddressCaseConflictError,
    BpsOutOfRangeError,
    DuplicateAdjustmentError,
    DuplicateCarryInError,
    DuplicateCoOwnerError,
    DuplicateDatasetError,
    DuplicateRollupError,
    InvalidAddressError,
    InvalidCurrencyError,
    InvalidTextError,
    InvalidTypeError,
    ListLengthOutOfRangeError,
    NegativeAmountError,
    RankOutOfRangeError,
    SharesNotFullError,
    UnknownDatasetError,
    VersionOutOfRangeError,
    ZeroAdjustmentError,
)
from attribution.policies import credit_function

SCHEMA_VERSION: Final = "usefirst.statement/v1"
"""Names the statement layout and rule texts; any change to either gets a new version."""

BPS_DENOMINATOR: Final = 10_000
"""Basis points per whole: rates and shares are int numerators over this."""

LIST_LENGTH_MAX: Final = 100
"""Largest retrieval list length accepted. Why a bound: exact rank-discount weights have
denominators built from the numerators of H_n for every list length present; with all lengths up
to 100 that is ~2,100 digits, within Python's 4,300-digit int/str conversion limit."""

Kind = Literal["training", "retrieval"]
KINDS: Final[tuple[Kind, Kind]] = ("training", "retrieval")
"""The two kinds of use, in split order (the 2-way split breaks ties in favour of training)."""

_ADDRESS_PATTERN: Final = re.compile(r"0x[0-9a-fA-F]{40}")
_CURRENCY_PATTERN: Final = re.compile(r"[A-Z]{3}")

_T = TypeVar("_T")


# --- field checks -------------------------------------------------------------------------------


def _int(value: object, field: str) -> int:
    # type() rather than isinstance(): bool is an int subclass and True must not pass as 1.
    if type(value) is not int:
        raise InvalidTypeError(
            field,
            f"must be an int, got {type(value).__name__} {value!r}; convert SQL numerics "
            "(Decimal from SUM) with int(), never through float",
        )
    return value


def _non_negative(value: object, field: str, context: str) -> int:
    number = _int(value, field)
    if number < 0:
        raise NegativeAmountError(
            field, f"must be >= 0, got {number}{context}; fix the query that produced it"
        )
    return number


def _bps(value: object, field: str, low: int = 0) -> int:
    number = _int(value, field)
    if not low <= number <= BPS_DENOMINATOR:
        raise BpsOutOfRangeError(
            field, f"must be between {low} and {BPS_DENOMINATOR} basis points, got {number}"
        )
    return number


def _text(value: object, field: str) -> str:
    if type(value) is not str:
        raise InvalidTypeError(field, f"must be a str, got {type(value).__name__} {value!r}")
    if not value:
        raise InvalidTextError(field, "must not be empty")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        # Lone surrogates cannot be serialised into the canonical UTF-8 statement.
        raise InvalidTextError(
            field, f"must be valid Unicode text (no lone surrogates), got {value!r}"
        ) from None
    return value


def _address(value: object, field: str) -> str:
    if type(value) is not str or not _ADDRESS_PATTERN.fullmatch(value):
        raise InvalidAddressError(
            field, f"must be an EVM address '0x' + 40 hex digits (checksummed), got {value!r}"
        )
    return value


def _tuple_of(value: object, item_type: type[_T], field: str) -> tuple[_T, ...]:
    # Tuples only: lists are mutable and would make the frozen dataclass a lie.
    if type(value) is not tuple:
        raise InvalidTypeError(
            field, f"must be a tuple of {item_type.__name__}, got {type(value).__name__}"
        )
    for item in value:
        if not isinstance(item, item_type):
            raise InvalidTypeError(
                field,
                f"must contain only {item_type.__name__}, found {type(item).__name__} {item!r}",
            )
    return value


def _is_simple_text(value: object) -> bool:
    # Non-empty ASCII text can hold no lone surrogate, so it needs no encode() round trip.
    return type(value) is str and value != "" and value.isascii()


def _are_simple_ids(value: object) -> bool:
    return type(value) is tuple and all(_is_simple_text(item) for item in value)


def _ids(value: object, field: str) -> tuple[str, ...]:
    ids = _tuple_of(value, str, field)
    for item in ids:
        _text(item, field)
    return ids


# --- inputs -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Agreement:
    """The royalty agreement of a model, as in force for the period.

    - ``royalty_rate_bps``: share of revenue that forms the pool, 0..10,000.
    - ``training_share_bps``: share of the pool for training use, 0..10,000; retrieval gets
      ``10_000 - training_share_bps``.
    - ``min_payout_minor``: a payee balance below this is carried forward, >= 0.
    - ``currency``: ISO 4217 code (three upper-case letters); every amount is in its minor units.
    - ``retrieval_policy``: a name registered in ``RETRIEVAL_POLICIES``.
    """

    agreement_id: str
    version: int
    royalty_rate_bps: int
    training_share_bps: int
    min_payout_minor: int
    currency: str
    retrieval_policy: str

    def __post_init__(self) -> None:
        _text(self.agreement_id, "Agreement.agreement_id")
        if _int(self.version, "Agreement.version") < 1:
            raise VersionOutOfRangeError("Agreement.version", f"must be >= 1, got {self.version}")
        _bps(self.royalty_rate_bps, "Agreement.royalty_rate_bps")
        _bps(self.training_share_bps, "Agreement.training_share_bps")
        _non_negative(self.min_payout_minor, "Agreement.min_payout_minor", "")
        if type(self.currency) is not str or not _CURRENCY_PATTERN.fullmatch(self.currency):
            raise InvalidCurrencyError(
                "Agreement.currency",
                f"must be an ISO 4217 code of three upper-case letters, got {self.currency!r}",
            )
        _text(self.retrieval_policy, "Agreement.retrieval_policy")
        credit_function(self.retrieval_policy)

    @property
    def retrieval_share_bps(self) -> int:
        """Share of the pool for retrieval use: ``10_000 - training_share_bps``."""
        return BPS_DENOMINATOR - self.training_share_bps


@dataclass(frozen=True, slots=True)
class CoOwner:
    """One co-owner of a dataset: a payee address and its share, 1..10,000 bps.

    The address is treated as an opaque string and compared exactly; pass the checksummed
    spelling everywhere. A zero share is rejected: leave such a party out of ``co_owners``.
    """

    address: str
    share_bps: int

    def __post_init__(self) -> None:
        _address(self.address, "CoOwner.address")
        _bps(self.share_bps, "CoOwner.share_bps", low=1)


@dataclass(frozen=True, slots=True)
class DatasetOwners:
    """The co-owners of one dataset; distinct addresses whose shares sum to exactly 10,000."""

    dataset_id: str
    co_owners: tuple[CoOwner, ...]

    def __post_init__(self) -> None:
        _text(self.dataset_id, "DatasetOwners.dataset_id")
        owners = _tuple_of(self.co_owners, CoOwner, "DatasetOwners.co_owners")
        seen: set[str] = set()
        for owner in owners:
            if owner.address in seen:
                raise DuplicateCoOwnerError(
                    "DatasetOwners.co_owners",
                    f"address {owner.address} appears twice in dataset {self.dataset_id!r}; "
                    "merge the entries into one share",
                )
            seen.add(owner.address)
        total_bps = sum(owner.share_bps for owner in owners)
        if total_bps != BPS_DENOMINATOR:
            raise SharesNotFullError(
                "DatasetOwners.co_owners",
                f"shares of dataset {self.dataset_id!r} sum to {total_bps} bps, must be exactly "
                f"{BPS_DENOMINATOR}; pass the registered co-owner shares unchanged",
            )


@dataclass(frozen=True, slots=True)
class TrainingRollup:
    """Training use of one dataset by the model, cumulative up to the period end.

    ``weighted_units`` = Σ units × epochs over every declared training run of this model up to
    the period end (training keeps earning in every later period with revenue), >= 0.
    ``rollup_ids`` are opaque references to the ledger rows behind it, passed to the output.
    """

    dataset_id: str
    weighted_units: int
    rollup_ids: tuple[str, ...]

    def __post_init__(self) -> None:
        units = self.weighted_units
        if (
            type(units) is int
            and units >= 0
            and _is_simple_text(self.dataset_id)
            and _are_simple_ids(self.rollup_ids)
        ):
            return
        _text(self.dataset_id, "TrainingRollup.dataset_id")
        _non_negative(
            self.weighted_units,
            "TrainingRollup.weighted_units",
            f" for dataset {self.dataset_id!r}",
        )
        _ids(self.rollup_ids, "TrainingRollup.rollup_ids")


@dataclass(frozen=True, slots=True)
class RetrievalRollup:
    """Retrieval use in the period: ``hits`` chunks of one dataset were at rank ``rank`` in
    queries that returned ``list_length`` chunks.

    ``list_length`` is 1..LIST_LENGTH_MAX, ``rank`` 1..list_length, ``hits`` >= 0. The dataset's
    retrieval weight is Σ hits × credit(policy, list_length, rank) over its rollups.
    """

    dataset_id: str
    list_length: int
    rank: int
    hits: int
    rollup_ids: tuple[str, ...]

    def __post_init__(self) -> None:
        # Fast path for the common valid row: the ledger builds hundreds of thousands of these
        # per period, and the precise checks below cost several times more than this one test.
        n, r, hits = self.list_length, self.rank, self.hits
        if (
            type(n) is int
            and type(r) is int
            and type(hits) is int
            and 1 <= r <= n <= LIST_LENGTH_MAX
            and hits >= 0
            and _is_simple_text(self.dataset_id)
            and _are_simple_ids(self.rollup_ids)
        ):
            return
        _text(self.dataset_id, "RetrievalRollup.dataset_id")
        n = _int(self.list_length, "RetrievalRollup.list_length")
        if not 1 <= n <= LIST_LENGTH_MAX:
            raise ListLengthOutOfRangeError(
                "RetrievalRollup.list_length",
                f"must be between 1 and {LIST_LENGTH_MAX}, got {n} for dataset "
                f"{self.dataset_id!r}; a query returning more chunks is not supported",
            )
        r = _int(self.rank, "RetrievalRollup.rank")
        if not 1 <= r <= n:
            raise RankOutOfRangeError(
                "RetrievalRollup.rank",
                f"must be between 1 and list_length={n}, got {r} for dataset "
                f"{self.dataset_id!r}; ranks are 1-based",
            )
        _non_negative(self.hits, "RetrievalRollup.hits", f" for dataset {self.dataset_id!r}")
        _ids(self.rollup_ids, "RetrievalRollup.rollup_ids")


@dataclass(frozen=True, slots=True)
class CarryIn:
    """Balance carried forward to this period for one payee (same model and currency).

    May be negative (a negative adjustment that was carried) or zero (ignored).
    """

    address: str
    balance_minor: int

    def __post_init__(self) -> None:
        _address(self.address, "CarryIn.address")
        _int(self.balance_minor, "CarryIn.balance_minor")


@dataclass(frozen=True, slots=True)
class Adjustment:
    """A correction, made in this period, to a closed earlier period: a signed non-zero amount
    with a human ``reason`` and an audit ``reference`` (unique per address)."""

    address: str
    amount_minor: int
    reason: str
    reference: str

    def __post_init__(self) -> None:
        _address(self.address, "Adjustment.address")
        if _int(self.amount_minor, "Adjustment.amount_minor") == 0:
            raise ZeroAdjustmentError(
                "Adjustment.amount_minor",
                f"must not be 0 (reference {self.reference!r}); drop the adjustment instead",
            )
        _text(self.reason, "Adjustment.reason")
        _text(self.reference, "Adjustment.reference")


@dataclass(frozen=True, slots=True)
class PeriodInput:
    """Everything needed to compute one period's statement for one model and currency.

    ``revenue_minor`` (>= 0) is the sum of the period's revenue events, in
    ``agreement.currency``. ``datasets`` must cover every dataset a rollup refers to. Keys are
    unique: datasets by dataset_id, training rollups by dataset_id, retrieval rollups by
    (dataset_id, list_length, rank), carry-ins by address, adjustments by (address, reference).
    The order of every tuple is irrelevant: the statement is the same for any permutation.
    """

    model_id: str
    period_id: str
    revenue_minor: int
    agreement: Agreement
    training: tuple[TrainingRollup, ...]
    retrieval: tuple[RetrievalRollup, ...]
    datasets: tuple[DatasetOwners, ...]
    carry_in: tuple[CarryIn, ...]
    adjustments: tuple[Adjustment, ...]

    def __post_init__(self) -> None:
        _text(self.model_id, "PeriodInput.model_id")
        _text(self.period_id, "PeriodInput.period_id")
        _non_negative(self.revenue_minor, "PeriodInput.revenue_minor", "")
        if not isinstance(self.agreement, Agreement):
            raise InvalidTypeError(
                "PeriodInput.agreement",
                f"must be an Agreement, got {type(self.agreement).__name__}",
            )
        datasets = _tuple_of(self.datasets, DatasetOwners, "PeriodInput.datasets")
        training = _tuple_of(self.training, TrainingRollup, "PeriodInput.training")
        retrieval = _tuple_of(self.retrieval, RetrievalRollup, "PeriodInput.retrieval")
        carry_in = _tuple_of(self.carry_in, CarryIn, "PeriodInput.carry_in")
        adjustments = _tuple_of(self.adjustments, Adjustment, "PeriodInput.adjustments")

        known: set[str] = set()
        for dataset in datasets:
            if dataset.dataset_id in known:
                raise DuplicateDatasetError(
                    "PeriodInput.datasets",
                    f"dataset {dataset.dataset_id!r} is listed twice; list each dataset once",
                )
            known.add(dataset.dataset_id)

        trained: set[str] = set()
        for rollup in training:
            if rollup.dataset_id not in known:
                raise _unknown_dataset("PeriodInput.training", rollup.dataset_id)
            if rollup.dataset_id in trained:
                raise DuplicateRollupError(
                    "PeriodInput.training",
                    f"two training rollups for dataset {rollup.dataset_id!r}; "
                    "aggregate them into one (GROUP BY dataset_id)",
                )
            trained.add(rollup.dataset_id)

        # dataset -> {list_length * (LIST_LENGTH_MAX + 1) + rank}: int keys rather than one
        # tuple per row, because this runs over every retrieval row of the period.
        retrieved: dict[str, set[int]] = {}
        for row in retrieval:
            keys = retrieved.get(row.dataset_id)
            if keys is None:
                if row.dataset_id not in known:
                    raise _unknown_dataset("PeriodInput.retrieval", row.dataset_id)
                keys = retrieved[row.dataset_id] = set()
            key = row.list_length * (LIST_LENGTH_MAX + 1) + row.rank
            if key in keys:
                raise DuplicateRollupError(
                    "PeriodInput.retrieval",
                    f"two retrieval rollups for dataset {row.dataset_id!r} with "
                    f"list_length={row.list_length}, rank={row.rank}; aggregate them into one "
                    "(GROUP BY dataset_id, list_length, rank)",
                )
            keys.add(key)

        carried: set[str] = set()
        for carry in carry_in:
            if carry.address in carried:
                raise DuplicateCarryInError(
                    "PeriodInput.carry_in",
                    f"two carry-ins for {carry.address}; pass one balance per address",
                )
            carried.add(carry.address)

        adjusted: set[tuple[str, str]] = set()
        for adjustment in adjustments:
            adjustment_key = (adjustment.address, adjustment.reference)
            if adjustment_key in adjusted:
                raise DuplicateAdjustmentError(
                    "PeriodInput.adjustments",
                    f"two adjustments for {adjustment.address} with reference "
                    f"{adjustment.reference!r}; give each correction its own reference",
                )
            adjusted.add(adjustment_key)

        addresses = {owner.address for dataset in datasets for owner in dataset.co_owners}
        addresses |= carried
        addresses.update(address for address, _ in adjusted)
        by_folded: dict[str, str] = {}
        for address in sorted(addresses):
            other = by_folded.setdefault(address.lower(), address)
            if other != address:
                raise AddressCaseConflictError(
                    "PeriodInput",
                    f"addresses {other} and {address} differ only in letter case; use the "
                    "checksummed spelling everywhere",
                )


def _unknown_dataset(field: str, dataset_id: str) -> UnknownDatasetError:
    return UnknownDatasetError(
        field,
        f"dataset {dataset_id!r} has usage but is missing from PeriodInput.datasets; "
        "add its co-owners (or reject the usage upstream)",
    )


# --- outputs ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LineSource:
    """What one payee earned from one (dataset, kind) in the period.

    ``dataset_amount_minor`` is the dataset's largest-remainder share of ``sub_pool_minor`` by
    ``weight / total_weight``; ``amount_minor`` is this payee's largest-remainder share of it by
    ``share_bps / 10_000``. ``rollup_ids`` are the ledger rows behind the weight, sorted.
    """

    dataset_id: str
    kind: Kind
    weight: Fraction
    total_weight: Fraction
    sub_pool_minor: int
    dataset_amount_minor: int
    share_bps: int
    amount_minor: int
    rollup_ids: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class AppliedAdjustment:
    """An adjustment as it appears on a line."""

    amount_minor: int
    reason: str
    reference: str


@dataclass(frozen=True, slots=True)
class Line:
    """One payee's line: this period's accrual plus carried balance and adjustments.

    ``balance = accrued_minor + carry_in_minor + adjustment_minor``. If the period had revenue
    and ``balance > 0`` and ``balance >= min_payout_minor`` then ``payable_minor = balance`` and
    ``carried_forward_minor = 0``; otherwise ``payable_minor = 0`` and
    ``carried_forward_minor = balance`` (which may be negative). ``sources`` are sorted by
    (dataset_id, kind); ``adjustments`` by (reference, reason, amount_minor).
    """

    address: str
    accrued_minor: int
    carry_in_minor: int
    adjustment_minor: int
    adjustments: tuple[AppliedAdjustment, ...]
    payable_minor: int
    carried_forward_minor: int
    sources: tuple[LineSource, ...]

    @property
    def balance_minor(self) -> int:
        """accrued + carry-in + adjustments, before the minimum payout rule."""
        return self.accrued_minor + self.carry_in_minor + self.adjustment_minor


@dataclass(frozen=True, slots=True)
class SubPool:
    """One kind's part of the pool.

    ``share_bps`` is the agreement's nominal share for this kind; ``amount_minor`` what the
    kind actually got (all or nothing under the fallback, see ``Statement.split_rule``);
    ``total_weight`` the sum of the weights of its ``dataset_count`` datasets with weight > 0.
    """

    kind: Kind
    share_bps: int
    amount_minor: int
    total_weight: Fraction
    dataset_count: int


@dataclass(frozen=True, slots=True)
class Totals:
    """Sums over the lines. Always:
    ``payable_total + carried_forward_total == accrued_total + carry_in_total + adjustment_total``.
    """

    accrued_total_minor: int
    carry_in_total_minor: int
    adjustment_total_minor: int
    payable_total_minor: int
    carried_forward_total_minor: int


@dataclass(frozen=True, slots=True)
class Statement:
    """The result of closing one period for one model: the exact amount of every payee.

    ``pool_minor = floor(revenue_minor * royalty_rate_bps / 10_000)``; the rounding remainder is
    ``pool_remainder_numerator / pool_remainder_denominator`` of one minor unit. When there is an
    accrual, the sub-pools and ``totals.accrued_total_minor`` equal ``pool_minor`` exactly and
    ``no_accrual_reason`` is None; otherwise both sub-pools are 0, no line has sources, and
    ``no_accrual_reason`` says why. ``lines`` are sorted by address.
    """

    schema_version: str
    model_id: str
    period_id: str
    currency: str
    agreement_id: str
    agreement_version: int
    retrieval_policy: str
    revenue_minor: int
    royalty_rate_bps: int
    training_share_bps: int
    min_payout_minor: int
    pool_minor: int
    pool_remainder_numerator: int
    pool_remainder_denominator: int
    pool_rounding_rule: str
    split_rule: str
    allocation_rule: str
    payout_rule: str
    training: SubPool
    retrieval: SubPool
    lines: tuple[Line, ...]
    totals: Totals
    no_accrual_reason: str | None
