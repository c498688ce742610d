"""Retrieval credit policies: exact credits, one credit per query, a closed registry."""

from __future__ import annotations

from fractions import Fraction

import pytest

from attribution import (
    LIST_LENGTH_MAX,
    RETRIEVAL_POLICIES,
    UnknownPolicyError,
    credit_function,
    harmonic,
    rank_discount_v1,
    uniform_v1,
)


def test_rank_discount_for_three_chunks() -> None:
    assert [rank_discount_v1(3, r) for r in (1, 2, 3)] == [
        Fraction(6, 11),
        Fraction(3, 11),
        Fraction(2, 11),
    ]


def test_uniform_splits_one_credit_evenly() -> None:
    assert [uniform_v1(4, r) for r in (1, 2, 3, 4)] == [Fraction(1, 4)] * 4


def test_harmonic_numbers() -> None:
    assert harmonic(1) == 1
    assert harmonic(3) == Fraction(11, 6)
    assert harmonic(10) == sum(Fraction(1, k) for k in range(1, 11))


@pytest.mark.parametrize("policy", sorted(RETRIEVAL_POLICIES))
def test_every_query_carries_exactly_one_credit(policy: str) -> None:
    credit = credit_function(policy)
    for n in range(1, LIST_LENGTH_MAX + 1):
        assert sum(credit(n, r) for r in range(1, n + 1)) == 1


@pytest.mark.parametrize("policy", sorted(RETRIEVAL_POLICIES))
def test_credit_never_grows_with_rank(policy: str) -> None:
    credit = credit_function(policy)
    for n in range(1, 30):
        credits = [credit(n, r) for r in range(1, n + 1)]
        assert credits == sorted(credits, reverse=True)


def test_registry_names_are_versioned() -> None:
    assert sorted(RETRIEVAL_POLICIES) == ["rank-discount/v1", "uniform/v1"]


def test_unknown_policy_is_rejected_with_the_known_names() -> None:
    with pytest.raises(UnknownPolicyError) as raised:
        credit_function("rank-discount/v2")
    assert raised.value.code == "unknown_policy"
    assert raised.value.field == "Agreement.retrieval_policy"
    assert "uniform/v1" in str(raised.value)


@pytest.mark.parametrize(("n", "r"), [(0, 1), (3, 0), (3, 4)])
def test_credit_rejects_impossible_ranks(n: int, r: int) -> None:
    with pytest.raises(ValueError):
        uniform_v1(n, r)
    with pytest.raises(ValueError):
        rank_discount_v1(n, r)
