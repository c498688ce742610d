"""Largest-remainder apportionment: known answers and the properties money relies on."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from attribution import apportion

amounts = st.integers(min_value=0, max_value=10**12)
weight_lists = st.lists(st.integers(min_value=0, max_value=10**9), min_size=1, max_size=12).filter(
    lambda weights: sum(weights) > 0
)


def test_three_equal_ways_gives_the_leftover_unit_to_the_first() -> None:
    assert apportion(100, [1, 1, 1]) == [34, 33, 33]


def test_leftover_units_go_to_the_largest_remainders() -> None:
    # Quotas 60.6 and 40.4: the .6 remainder wins the one leftover unit.
    assert apportion(101, [6000, 4000]) == [61, 40]
    # Quotas 0.5, 0.3, 0.2 of 1 unit: the .5 wins even though it is not first.
    assert apportion(1, [3, 5, 2]) == [0, 1, 0]


def test_zero_weight_gets_nothing() -> None:
    assert apportion(10, [0, 5]) == [0, 10]
    assert apportion(7, [0, 1, 0]) == [0, 7, 0]


def test_zero_amount_gives_zeros() -> None:
    assert apportion(0, [3, 4]) == [0, 0]


@pytest.mark.parametrize(
    ("amount", "weights"),
    [(-1, [1]), (1, [0, 0]), (1, []), (1, [2, -1])],
)
def test_rejects_impossible_requests(amount: int, weights: list[int]) -> None:
    with pytest.raises(ValueError):
        apportion(amount, weights)


@settings(max_examples=300, deadline=None)
@given(amounts, weight_lists)
def test_conserves_and_stays_within_one_unit_of_the_quota(amount: int, weights: list[int]) -> None:
    shares = apportion(amount, weights)
    total_weight = sum(weights)
    assert sum(shares) == amount
    for share, weight in zip(shares, weights, strict=True):
        floor = amount * weight // total_weight
        assert share in (floor, floor + 1)
        if weight == 0:
            assert share == 0


@settings(max_examples=300, deadline=None)
@given(amounts, weight_lists)
def test_more_weight_never_gets_less(amount: int, weights: list[int]) -> None:
    shares = apportion(amount, weights)
    for i, weight_i in enumerate(weights):
        for j, weight_j in enumerate(weights):
            if weight_i > weight_j:
                assert shares[i] >= shares[j]


@settings(max_examples=300, deadline=None)
@given(amounts, weight_lists, st.integers(min_value=1, max_value=10**6))
def test_scaling_every_weight_changes_nothing(amount: int, weights: list[int], k: int) -> None:
    assert apportion(amount, [weight * k for weight in weights]) == apportion(amount, weights)
