"""Retrieval credit policies: how one query's credit is spread over the chunks it returned.

A policy is a named, versioned, pure function ``credit(n, r) -> Fraction`` giving the credit of
the chunk at rank ``r`` (1-based) in a query that returned ``n`` chunks. Every policy here gives
each query a total credit of exactly 1 (Σ_r credit(n, r) == 1), so a query counts once however
many chunks it returned. A published policy is never changed; a new rule gets a new version.

The retrieval weight of a dataset in a period is Σ hits × credit(policy, n, r) over its
retrieval rollups.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from fractions import Fraction
from functools import lru_cache
from math import lcm
from types import MappingProxyType
from typing import Final

from attribution.errors import UnknownPolicyError

CreditFunction = Callable[[int, int], Fraction]

UNIFORM_V1: Final = "uniform/v1"
RANK_DISCOUNT_V1: Final = "rank-discount/v1"


@lru_cache(maxsize=4096)
def harmonic(n: int) -> Fraction:
    """Return H_n = Σ_{k=1..n} 1/k exactly, for n >= 1."""
    if n < 1:
        raise ValueError(f"harmonic(n) needs n >= 1, got {n}")
    # Integer sum over the common denominator lcm(1..n) instead of n Fraction additions (each of
    # which would normalise with a gcd); cached because rollups repeat the same list lengths.
    denominator = lcm(*range(1, n + 1))
    return Fraction(sum(denominator // k for k in range(1, n + 1)), denominator)


def uniform_v1(n: int, r: int) -> Fraction:
    """Policy "uniform/v1": credit(n, r) = 1/n, one credit per query split evenly over chunks."""
    _check_rank(n, r)
    return Fraction(1, n)


def rank_discount_v1(n: int, r: int) -> Fraction:
    """Policy "rank-discount/v1": credit(n, r) = (1/r) / H_n, so the credits of one query sum to 1.

    For n = 3: 6/11, 3/11, 2/11.
    """
    _check_rank(n, r)
    return Fraction(1, r) / harmonic(n)


def _check_rank(n: int, r: int) -> None:
    if n < 1 or not 1 <= r <= n:
        raise ValueError(f"credit(n, r) needs n >= 1 and 1 <= r <= n, got n={n}, r={r}")


RETRIEVAL_POLICIES: Final[Mapping[str, CreditFunction]] = MappingProxyType(
    {
        UNIFORM_V1: uniform_v1,
        RANK_DISCOUNT_V1: rank_discount_v1,
    }
)


def credit_function(policy: str) -> CreditFunction:
    """Return the credit function registered under ``policy``.

    Raises ``UnknownPolicyError`` (code ``unknown_policy``) for a name not in
    ``RETRIEVAL_POLICIES``.
    """
    try:
        return RETRIEVAL_POLICIES[policy]
    except KeyError:
        known = ", ".join(sorted(RETRIEVAL_POLICIES))
        raise UnknownPolicyError(
            "Agreement.retrieval_policy",
            f"unknown retrieval policy {policy!r}; use one of: {known}",
        ) from None
