"""compute_statement: a period's input to its exact, deterministic statement.

Steps (each division is a largest-remainder apportionment of integers, so each conserves):

1. pool = floor(revenue × royalty_rate_bps / 10,000); the fraction of a unit left stays with the
   model team.
2. pool → training and retrieval sub-pools by training_share_bps; a kind without weight cedes its
   sub-pool to the other kind.
3. each sub-pool → its datasets pro rata to weight; each dataset amount → its co-owners pro rata
   to share_bps.
4. one line per payee: accrual + carry-in + adjustments, then the minimum payout rule.

Determinism: nothing depends on input order; every collection is sorted by a documented key
before it is apportioned or emitted.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from fractions import Fraction
from math import lcm
from operator import attrgetter
from typing import Final

from attribution.apportion import APPORTION_RULE, apportion
from attribution.model import (
    BPS_DENOMINATOR,
    SCHEMA_VERSION,
    AppliedAdjustment,
    CoOwner,
    Kind,
    Line,
    LineSource,
    PeriodInput,
    RetrievalRollup,
    Statement,
    SubPool,
    Totals,
    TrainingRollup,
)
from attribution.policies import CreditFunction, credit_function

POOL_ROUNDING_RULE: Final = (
    "pool_minor = floor(revenue_minor * royalty_rate_bps / 10000); the remainder "
    "pool_remainder_numerator/pool_remainder_denominator of one minor unit stays with the "
    "model team"
)
SPLIT_RULE_SHARES: Final = (
    "pool split into training and retrieval sub-pools by largest remainder over "
    "training_share_bps : (10000 - training_share_bps); equal remainders favour training"
)
SPLIT_RULE_TRAINING_ONLY: Final = (
    "no retrieval usage with weight in period: the training sub-pool takes the whole pool"
)
SPLIT_RULE_RETRIEVAL_ONLY: Final = (
    "no training usage with weight in period: the retrieval sub-pool takes the whole pool"
)
SPLIT_RULE_NO_ACCRUAL: Final = "no accrual in period: both sub-pools are 0"
ALLOCATION_RULE: Final = (
    "each sub-pool goes to its datasets with weight > 0 pro rata to weight, then each dataset "
    "amount to its co-owners pro rata to share_bps; " + APPORTION_RULE
)
PAYOUT_RULE: Final = (
    "balance = accrued + carry_in + adjustment; if the period has revenue and balance > 0 and "
    "balance >= min_payout_minor then payable = balance and carried_forward = 0, otherwise "
    "payable = 0 and carried_forward = balance (no revenue, no obligations)"
)

NO_ACCRUAL_NO_REVENUE: Final = "no revenue in period"
NO_ACCRUAL_POOL_ZERO: Final = (
    "royalty pool is zero: revenue_minor * royalty_rate_bps / 10000 rounds down to 0"
)
NO_ACCRUAL_NO_USAGE: Final = "no eligible usage in period"


def compute_statement(period: PeriodInput) -> Statement:
    """Compute the statement of ``period``.

    Promises (all exact, all tested as properties):

    - Σ line.accrued_minor == pool_minor == training.amount_minor + retrieval.amount_minor when
      ``no_accrual_reason`` is None; all three accrual figures are 0 otherwise;
    - payable_total + carried_forward_total == accrued_total + carry_in_total + adjustment_total;
    - no line has negative accrued_minor or payable_minor;
    - revenue_minor == 0 gives no accrual and no payable line (no revenue, no debt);
    - the result is identical for any permutation of any input tuple.

    ``period`` is valid by construction; this function raises nothing for a valid input.
    """
    agreement = period.agreement
    pool_minor, pool_remainder = divmod(
        period.revenue_minor * agreement.royalty_rate_bps, BPS_DENOMINATOR
    )

    training_weights, training_ids = _training_weights(period.training)
    retrieval_denominator, retrieval_weights, retrieval_ids = _retrieval_weights(
        period.retrieval, credit_function(agreement.retrieval_policy)
    )
    training_total = sum(training_weights.values())
    retrieval_total = sum(retrieval_weights.values())

    no_accrual_reason: str | None = None
    if period.revenue_minor == 0:
        no_accrual_reason = NO_ACCRUAL_NO_REVENUE
    elif pool_minor == 0:
        no_accrual_reason = NO_ACCRUAL_POOL_ZERO
    elif training_total == 0 and retrieval_total == 0:
        no_accrual_reason = NO_ACCRUAL_NO_USAGE

    training_minor = retrieval_minor = 0
    if no_accrual_reason is not None:
        split_rule = SPLIT_RULE_NO_ACCRUAL
    elif retrieval_total == 0:
        split_rule, training_minor = SPLIT_RULE_TRAINING_ONLY, pool_minor
    elif training_total == 0:
        split_rule, retrieval_minor = SPLIT_RULE_RETRIEVAL_ONLY, pool_minor
    else:
        # Index 0 is training, so equal remainders favour training.
        split_rule = SPLIT_RULE_SHARES
        training_minor, retrieval_minor = apportion(
            pool_minor, [agreement.training_share_bps, agreement.retrieval_share_bps]
        )

    owners = {
        dataset.dataset_id: sorted(dataset.co_owners, key=lambda owner: owner.address)
        for dataset in period.datasets
    }
    sources: defaultdict[str, list[LineSource]] = defaultdict(list)
    if no_accrual_reason is None:
        _allocate("training", training_minor, training_weights, 1, training_ids, owners, sources)
        _allocate(
            "retrieval",
            retrieval_minor,
            retrieval_weights,
            retrieval_denominator,
            retrieval_ids,
            owners,
            sources,
        )

    lines = _lines(period, sources)
    totals = Totals(
        accrued_total_minor=sum(line.accrued_minor for line in lines),
        carry_in_total_minor=sum(line.carry_in_minor for line in lines),
        adjustment_total_minor=sum(line.adjustment_minor for line in lines),
        payable_total_minor=sum(line.payable_minor for line in lines),
        carried_forward_total_minor=sum(line.carried_forward_minor for line in lines),
    )
    return Statement(
        schema_version=SCHEMA_VERSION,
        model_id=period.model_id,
        period_id=period.period_id,
        currency=agreement.currency,
        agreement_id=agreement.agreement_id,
        agreement_version=agreement.version,
        retrieval_policy=agreement.retrieval_policy,
        revenue_minor=period.revenue_minor,
        royalty_rate_bps=agreement.royalty_rate_bps,
        training_share_bps=agreement.training_share_bps,
        min_payout_minor=agreement.min_payout_minor,
        pool_minor=pool_minor,
        pool_remainder_numerator=pool_remainder,
        pool_remainder_denominator=BPS_DENOMINATOR,
        pool_rounding_rule=POOL_ROUNDING_RULE,
        split_rule=split_rule,
        allocation_rule=ALLOCATION_RULE,
        payout_rule=PAYOUT_RULE,
        training=SubPool(
            kind="training",
            share_bps=agreement.training_share_bps,
            amount_minor=training_minor,
            total_weight=Fraction(training_total),
            dataset_count=sum(1 for weight in training_weights.values() if weight > 0),
        ),
        retrieval=SubPool(
            kind="retrieval",
            share_bps=agreement.retrieval_share_bps,
            amount_minor=retrieval_minor,
            total_weight=Fraction(retrieval_total, retrieval_denominator),
            dataset_count=sum(1 for weight in retrieval_weights.values() if weight > 0),
        ),
        lines=lines,
        totals=totals,
        no_accrual_reason=no_accrual_reason,
    )


def _training_weights(
    rollups: Iterable[TrainingRollup],
) -> tuple[dict[str, int], dict[str, tuple[str, ...]]]:
    """Training weight (weighted units) and sorted rollup ids per dataset."""
    weights: dict[str, int] = {}
    ids: dict[str, tuple[str, ...]] = {}
    for rollup in rollups:
        weights[rollup.dataset_id] = rollup.weighted_units
        ids[rollup.dataset_id] = tuple(sorted(set(rollup.rollup_ids)))
    return weights, ids


def _retrieval_weights(
    rollups: Iterable[RetrievalRollup], credit: CreditFunction
) -> tuple[int, dict[str, int], dict[str, tuple[str, ...]]]:
    """Retrieval weights as integer numerators over one common denominator.

    Returns ``(denominator, numerators, rollup_ids)`` where the exact weight of dataset d is
    ``numerators[d] / denominator`` = Σ hits × credit(n, r) over d's rollups.

    Why not Fraction per row: a Fraction addition normalises with a gcd every time. Instead the
    credits of each list length n are brought to that n's own common denominator (small), rows
    are summed as integers per (dataset, n), and only those per-(dataset, n) sums are scaled to
    the global denominator, which can be large under rank-discount (it contains H_n's numerator).
    """
    # length n -> (denominator_n, [0, scaled credit of rank 1, ..., of rank n])
    scaled_by_length: dict[int, tuple[int, list[int]]] = {}
    # dataset -> length n -> Σ hits × scaled credit, over denominator_n
    sums: dict[str, dict[int, int]] = {}
    id_lists: dict[str, list[str]] = {}
    for row in rollups:
        dataset_id, n = row.dataset_id, row.list_length
        scaled = scaled_by_length.get(n)
        if scaled is None:
            scaled = scaled_by_length[n] = _scaled_credits(credit, n)
        by_length = sums.get(dataset_id)
        if by_length is None:
            by_length = sums[dataset_id] = {}
            id_lists[dataset_id] = []
        by_length[n] = by_length.get(n, 0) + row.hits * scaled[1][row.rank]
        id_lists[dataset_id].extend(row.rollup_ids)

    denominator = lcm(*(scaled[0] for scaled in scaled_by_length.values()))
    factor = {n: denominator // scaled[0] for n, scaled in scaled_by_length.items()}
    numerators = {
        dataset_id: sum(total * factor[n] for n, total in by_length.items())
        for dataset_id, by_length in sums.items()
    }
    ids = {dataset_id: tuple(sorted(set(values))) for dataset_id, values in id_lists.items()}
    return denominator, numerators, ids


def _scaled_credits(credit: CreditFunction, n: int) -> tuple[int, list[int]]:
    """The credits of list length n as integers over their common denominator.

    Returns ``(denominator_n, scaled)`` with ``credit(n, r) == scaled[r] / denominator_n`` for
    r in 1..n (``scaled[0]`` is unused so ranks index directly).
    """
    credits = [credit(n, r) for r in range(1, n + 1)]
    denominator_n = lcm(*(value.denominator for value in credits))
    return denominator_n, [0] + [
        value.numerator * (denominator_n // value.denominator) for value in credits
    ]


def _allocate(
    kind: Kind,
    sub_pool_minor: int,
    weights: dict[str, int],
    denominator: int,
    rollup_ids: dict[str, tuple[str, ...]],
    owners: dict[str, list[CoOwner]],
    sources: defaultdict[str, list[LineSource]],
) -> None:
    """Apportion one sub-pool to its datasets, then each dataset amount to its co-owners.

    ``weights`` are integer numerators over ``denominator``; datasets with weight 0 take no part.
    Appends one LineSource per (co-owner, dataset) to ``sources[address]``.
    """
    dataset_ids = sorted(dataset_id for dataset_id, weight in weights.items() if weight > 0)
    if not dataset_ids:
        return
    numerators = [weights[dataset_id] for dataset_id in dataset_ids]
    total_weight = Fraction(sum(numerators), denominator)
    dataset_amounts = apportion(sub_pool_minor, numerators)
    for dataset_id, numerator, dataset_minor in zip(
        dataset_ids, numerators, dataset_amounts, strict=True
    ):
        weight = Fraction(numerator, denominator)
        co_owners = owners[dataset_id]
        owner_amounts = apportion(dataset_minor, [owner.share_bps for owner in co_owners])
        ids = rollup_ids[dataset_id]
        for owner, amount_minor in zip(co_owners, owner_amounts, strict=True):
            sources[owner.address].append(
                LineSource(
                    dataset_id=dataset_id,
                    kind=kind,
                    weight=weight,
                    total_weight=total_weight,
                    sub_pool_minor=sub_pool_minor,
                    dataset_amount_minor=dataset_minor,
                    share_bps=owner.share_bps,
                    amount_minor=amount_minor,
                    rollup_ids=ids,
                )
            )


_SOURCE_ORDER: Final = attrgetter("dataset_id", "kind")
_ADJUSTMENT_ORDER: Final = attrgetter("reference", "reason", "amount_minor")


def _lines(period: PeriodInput, sources: dict[str, list[LineSource]]) -> tuple[Line, ...]:
    """One line per payee with sources, a non-zero carry-in or an adjustment, sorted by address."""
    carry_in = {carry.address: carry.balance_minor for carry in period.carry_in}
    adjustments: defaultdict[str, list[AppliedAdjustment]] = defaultdict(list)
    for adjustment in period.adjustments:
        adjustments[adjustment.address].append(
            AppliedAdjustment(
                amount_minor=adjustment.amount_minor,
                reason=adjustment.reason,
                reference=adjustment.reference,
            )
        )
    addresses = set(sources) | set(adjustments)
    addresses.update(address for address, balance in carry_in.items() if balance != 0)

    may_pay = period.revenue_minor > 0
    min_payout_minor = period.agreement.min_payout_minor
    lines: list[Line] = []
    for address in sorted(addresses):
        own_sources = tuple(sorted(sources.get(address, ()), key=_SOURCE_ORDER))
        own_adjustments = tuple(sorted(adjustments.get(address, ()), key=_ADJUSTMENT_ORDER))
        accrued_minor = sum(source.amount_minor for source in own_sources)
        carry_in_minor = carry_in.get(address, 0)
        adjustment_minor = sum(item.amount_minor for item in own_adjustments)
        balance_minor = accrued_minor + carry_in_minor + adjustment_minor
        if may_pay and balance_minor > 0 and balance_minor >= min_payout_minor:
            payable_minor, carried_forward_minor = balance_minor, 0
        else:
            payable_minor, carried_forward_minor = 0, balance_minor
        lines.append(
            Line(
                address=address,
                accrued_minor=accrued_minor,
                carry_in_minor=carry_in_minor,
                adjustment_minor=adjustment_minor,
                adjustments=own_adjustments,
                payable_minor=payable_minor,
                carried_forward_minor=carried_forward_minor,
                sources=own_sources,
            )
        )
    return tuple(lines)
