"""Largest-remainder apportionment of an integer amount of minor units.

This is the only place where money is divided. It works on integers only: the claimants' weights
are integer numerators over one common (implicit) denominator, so exact quotas and their
fractional remainders are compared without any Fraction arithmetic.
"""

from __future__ import annotations

from collections.abc import Sequence

APPORTION_RULE = (
    "largest remainder: each claimant first gets floor(amount * weight / total_weight); the units "
    "left over go one each to the claimants with the largest fractional remainders; equal "
    "remainders favour the claimant that sorts first (training before retrieval; datasets by "
    "dataset_id ascending; co-owners by address ascending; ascending = Unicode code point order)"
)


def apportion(amount_minor: int, weights: Sequence[int]) -> list[int]:
    """Split ``amount_minor`` over claimants pro rata to ``weights`` by largest remainder.

    Promises, for ``amount_minor >= 0``, every weight ``>= 0`` and ``sum(weights) > 0``:

    - conservation: the result has ``len(weights)`` entries and sums to exactly ``amount_minor``;
    - each entry is ``floor(quota)`` or ``floor(quota) + 1`` where
      ``quota = amount_minor * weight / sum(weights)``; a zero weight always gets 0;
    - monotonicity: a strictly larger weight never gets less than a smaller one;
    - scale invariance: multiplying every weight by the same k >= 1 changes nothing;
    - ties: among equal fractional remainders the leftover units go to the lower index first, so
      callers order claimants by their documented tie-break key before calling.

    Raises ``ValueError`` when the preconditions do not hold (a programming error, never a
    consequence of valid period input).
    """
    if amount_minor < 0:
        raise ValueError(f"apportion needs amount_minor >= 0, got {amount_minor}")
    total_weight = 0
    for weight in weights:
        if weight < 0:
            raise ValueError(f"apportion needs every weight >= 0, got {weight}")
        total_weight += weight
    if total_weight <= 0:
        raise ValueError("apportion needs a positive total weight")

    shares: list[int] = []
    remainders: list[int] = []
    for weight in weights:
        share, remainder = divmod(amount_minor * weight, total_weight)
        shares.append(share)
        remainders.append(remainder)

    # The leftover is Σ remainders / total_weight, an integer smaller than the number of claimants
    # with a positive remainder, so zero-weight claimants can never receive a leftover unit.
    leftover = amount_minor - sum(shares)
    if leftover:
        ranked = sorted(range(len(shares)), key=lambda index: (-remainders[index], index))
        for index in ranked[:leftover]:
            shares[index] += 1
    return shares
