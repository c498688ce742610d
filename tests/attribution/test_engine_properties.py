"""Properties of compute_statement over random agreements, usage, revenue and balances.

The invariants from the brief: conservation, determinism under any input order, no revenue no
debt; plus the fairness properties of largest remainder (scale invariance, monotonicity) and an
exact JSON round trip.
"""

from __future__ import annotations

import dataclasses
from collections import defaultdict
from fractions import Fraction
from itertools import pairwise
from typing import TypeVar

from hypothesis import given, settings
from hypothesis import strategies as st

from attribution import (
    NO_ACCRUAL_NO_REVENUE,
    RETRIEVAL_POLICIES,
    Adjustment,
    Agreement,
    CarryIn,
    CoOwner,
    DatasetOwners,
    PeriodInput,
    RetrievalRollup,
    Statement,
    TrainingRollup,
    canonical_json,
    check_statement,
    compute_statement,
    explain,
    statement_from_json,
    statement_hash,
)

T = TypeVar("T")
R = TypeVar("R", TrainingRollup, RetrievalRollup)

PROPERTY_SETTINGS = settings(max_examples=200, deadline=None)

# Distinct even when lower-cased, mixing cases the way checksummed addresses do.
ADDRESSES = (
    "0x" + "a" * 40,
    "0x" + "B" * 40,
    "0x" + "1" * 40,
    "0x" + "c3" * 20,
    "0x" + "D4" * 20,
    "0x" + "5e" * 20,
    "0x" + "6F" * 20,
    "0x" + "07" * 20,
)
DATASET_IDS = ("ds-a", "ds-b", "ds-c", "ds-d", "ds-e", "ds-f", "ds-ü")


@st.composite
def shares_bps(draw: st.DrawFn, count: int) -> list[int]:
    if 10_000 % count == 0 and draw(st.booleans()):
        # Equal shares make equal remainders, which exercises the address tie-break.
        return [10_000 // count] * count
    cuts = sorted(
        draw(st.lists(st.integers(1, 9999), min_size=count - 1, max_size=count - 1, unique=True))
    )
    bounds = [0, *cuts, 10_000]
    return [high - low for low, high in pairwise(bounds)]


@st.composite
def dataset_owners(draw: st.DrawFn, dataset_id: str) -> DatasetOwners:
    owners = draw(st.lists(st.sampled_from(ADDRESSES), min_size=1, max_size=4, unique=True))
    shares = draw(shares_bps(len(owners)))
    return DatasetOwners(
        dataset_id,
        tuple(CoOwner(address, share) for address, share in zip(owners, shares, strict=True)),
    )


rollup_ids = st.lists(st.sampled_from([f"row-{index}" for index in range(12)]), max_size=3).map(
    tuple
)
# Repeated small values make equal weights, which exercises the dataset_id tie-break.
units = st.one_of(st.sampled_from([0, 1, 7]), st.integers(0, 1000), st.integers(0, 10**15))
hits = st.one_of(st.sampled_from([0, 1, 7]), st.integers(0, 50), st.integers(0, 10**9))


@st.composite
def retrieval_rows(draw: st.DrawFn, dataset_id: str) -> list[RetrievalRollup]:
    max_length = draw(st.sampled_from([1, 3, 8, 100]))
    keys: set[tuple[int, int]] = set()
    for _ in range(draw(st.integers(1, 6))):
        n = draw(st.integers(1, max_length))
        keys.add((n, draw(st.integers(1, n))))
    return [
        RetrievalRollup(dataset_id, n, r, draw(hits), draw(rollup_ids)) for n, r in sorted(keys)
    ]


agreements = st.builds(
    Agreement,
    agreement_id=st.sampled_from(["agr-1", "agr-2"]),
    version=st.integers(1, 5),
    royalty_rate_bps=st.one_of(st.integers(0, 10_000), st.sampled_from([0, 1, 5000, 10_000])),
    training_share_bps=st.one_of(st.integers(0, 10_000), st.sampled_from([0, 5000, 10_000])),
    min_payout_minor=st.one_of(st.just(0), st.integers(0, 5000)),
    currency=st.sampled_from(["EUR", "USD", "JPY"]),
    retrieval_policy=st.sampled_from(sorted(RETRIEVAL_POLICIES)),
)


@st.composite
def periods(draw: st.DrawFn) -> PeriodInput:
    dataset_ids = draw(st.lists(st.sampled_from(DATASET_IDS), min_size=1, max_size=6, unique=True))
    datasets = tuple(draw(dataset_owners(dataset_id)) for dataset_id in dataset_ids)
    trained = draw(st.lists(st.sampled_from(dataset_ids), unique=True))
    retrieved = draw(st.lists(st.sampled_from(dataset_ids), unique=True))
    retrieval: list[RetrievalRollup] = []
    for dataset_id in retrieved:
        retrieval += draw(retrieval_rows(dataset_id))
    carried = draw(st.lists(st.sampled_from(ADDRESSES), unique=True, max_size=4))
    adjustment_keys = draw(
        st.lists(
            st.tuples(st.sampled_from(ADDRESSES), st.sampled_from(["adj-1", "adj-2", "adj-3"])),
            unique=True,
            max_size=4,
        )
    )
    return PeriodInput(
        model_id=draw(st.sampled_from(["model-1", "rag-app"])),
        period_id=draw(st.sampled_from(["2024-05", "2024-06"])),
        revenue_minor=draw(st.one_of(st.just(0), st.integers(1, 1000), st.integers(0, 10**12))),
        agreement=draw(agreements),
        training=tuple(
            TrainingRollup(dataset_id, draw(units), draw(rollup_ids)) for dataset_id in trained
        ),
        retrieval=tuple(retrieval),
        datasets=datasets,
        carry_in=tuple(CarryIn(address, draw(st.integers(-5000, 5000))) for address in carried),
        adjustments=tuple(
            Adjustment(
                address,
                draw(st.integers(-3000, 3000).filter(bool)),
                draw(st.sampled_from(["late refund", "missed usage", 'quote " and\nbreak'])),
                reference,
            )
            for address, reference in adjustment_keys
        ),
    )


def dataset_amounts(statement: Statement) -> dict[tuple[str, str], tuple[Fraction, int, int]]:
    """(kind, dataset_id) → (weight, dataset amount, Σ co-owner amounts)."""
    found: dict[tuple[str, str], tuple[Fraction, int, int]] = {}
    for line in statement.lines:
        for source in line.sources:
            key = (source.kind, source.dataset_id)
            _, _, paid = found.get(key, (source.weight, source.dataset_amount_minor, 0))
            found[key] = (source.weight, source.dataset_amount_minor, paid + source.amount_minor)
    return found


@PROPERTY_SETTINGS
@given(periods())
def test_conservation_and_the_payable_identity(period: PeriodInput) -> None:
    statement = compute_statement(period)
    check_statement(statement)
    totals = statement.totals
    accrued_total = sum(line.accrued_minor for line in statement.lines)
    assert accrued_total == totals.accrued_total_minor
    sub_pools = statement.training.amount_minor + statement.retrieval.amount_minor
    if statement.no_accrual_reason is None:
        assert accrued_total == statement.pool_minor == sub_pools
    else:
        assert accrued_total == sub_pools == 0
    assert totals.carry_in_total_minor == sum(carry.balance_minor for carry in period.carry_in)
    assert totals.adjustment_total_minor == sum(item.amount_minor for item in period.adjustments)
    assert (
        totals.payable_total_minor + totals.carried_forward_total_minor
        == totals.accrued_total_minor + totals.carry_in_total_minor + totals.adjustment_total_minor
    )
    assert statement.pool_minor == period.revenue_minor * period.agreement.royalty_rate_bps // (
        10_000
    )


@PROPERTY_SETTINGS
@given(periods())
def test_no_line_has_a_negative_accrual_or_payout(period: PeriodInput) -> None:
    for line in compute_statement(period).lines:
        assert line.accrued_minor >= 0
        assert line.payable_minor >= 0
        assert line.payable_minor == 0 or line.payable_minor >= period.agreement.min_payout_minor


@PROPERTY_SETTINGS
@given(periods())
def test_co_owner_amounts_add_up_to_their_dataset_amount(period: PeriodInput) -> None:
    for _, dataset_minor, paid_minor in dataset_amounts(compute_statement(period)).values():
        assert paid_minor == dataset_minor


def shuffle(data: st.DataObject, items: tuple[T, ...]) -> tuple[T, ...]:
    return tuple(data.draw(st.permutations(items)))


@PROPERTY_SETTINGS
@given(periods(), st.data())
def test_any_input_order_gives_the_same_bytes(period: PeriodInput, data: st.DataObject) -> None:
    def ids_reordered(rollup: R) -> R:
        return dataclasses.replace(rollup, rollup_ids=shuffle(data, rollup.rollup_ids))

    reordered = dataclasses.replace(
        period,
        training=shuffle(data, tuple(ids_reordered(rollup) for rollup in period.training)),
        retrieval=shuffle(data, tuple(ids_reordered(rollup) for rollup in period.retrieval)),
        datasets=shuffle(
            data,
            tuple(
                dataclasses.replace(dataset, co_owners=shuffle(data, dataset.co_owners))
                for dataset in period.datasets
            ),
        ),
        carry_in=shuffle(data, period.carry_in),
        adjustments=shuffle(data, period.adjustments),
    )
    assert canonical_json(compute_statement(reordered)) == canonical_json(compute_statement(period))


@PROPERTY_SETTINGS
@given(periods())
def test_zero_revenue_means_no_accrual_and_nothing_payable(period: PeriodInput) -> None:
    statement = compute_statement(dataclasses.replace(period, revenue_minor=0))
    assert statement.no_accrual_reason == NO_ACCRUAL_NO_REVENUE
    assert statement.pool_minor == 0
    assert statement.totals.accrued_total_minor == 0
    assert statement.totals.payable_total_minor == 0
    assert all(not line.sources for line in statement.lines)


def amounts_only(statement: Statement) -> object:
    return (
        statement.pool_minor,
        statement.training.amount_minor,
        statement.retrieval.amount_minor,
        statement.no_accrual_reason,
        [
            (
                line.address,
                line.accrued_minor,
                line.payable_minor,
                line.carried_forward_minor,
                [
                    (
                        source.dataset_id,
                        source.kind,
                        source.dataset_amount_minor,
                        source.amount_minor,
                    )
                    for source in line.sources
                ],
            )
            for line in statement.lines
        ],
    )


@PROPERTY_SETTINGS
@given(periods(), st.integers(1, 10**6))
def test_scaling_every_weight_changes_no_amount(period: PeriodInput, k: int) -> None:
    scaled = dataclasses.replace(
        period,
        training=tuple(
            dataclasses.replace(rollup, weighted_units=rollup.weighted_units * k)
            for rollup in period.training
        ),
        retrieval=tuple(
            dataclasses.replace(rollup, hits=rollup.hits * k) for rollup in period.retrieval
        ),
    )
    assert amounts_only(compute_statement(scaled)) == amounts_only(compute_statement(period))


@PROPERTY_SETTINGS
@given(periods())
def test_more_weight_never_earns_less_within_a_sub_pool(period: PeriodInput) -> None:
    by_kind: defaultdict[str, list[tuple[Fraction, int]]] = defaultdict(list)
    for (kind, _), (weight, dataset_minor, _) in dataset_amounts(compute_statement(period)).items():
        by_kind[kind].append((weight, dataset_minor))
    for entries in by_kind.values():
        for weight_a, amount_a in entries:
            for weight_b, amount_b in entries:
                if weight_a > weight_b:
                    assert amount_a >= amount_b


@PROPERTY_SETTINGS
@given(periods())
def test_json_round_trip_is_exact(period: PeriodInput) -> None:
    statement = compute_statement(period)
    data = canonical_json(statement)
    parsed = statement_from_json(data)
    assert parsed == statement
    assert canonical_json(parsed) == data
    assert statement_hash(parsed) == statement_hash(statement)


@PROPERTY_SETTINGS
@given(periods())
def test_every_line_can_be_explained(period: PeriodInput) -> None:
    statement = compute_statement(period)
    for line in statement.lines:
        text = explain(statement, line.address)
        assert f"Payee {line.address}" in text
        assert f"payable {line.payable_minor}, carried forward {line.carried_forward_minor}" in text
