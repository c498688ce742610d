"""check_statement: re-derive every amount of a statement from the statement alone.

Given only a statement (e.g. parsed from its published JSON), this checks the pool, the 2-way
split, every largest-remainder apportionment (datasets from their weights, co-owners from their
shares), every line's payout rule and every total. What it cannot check without the inputs is
the weights themselves: for that, recompute the statement from the period input and compare
``statement_hash``.
"""

from __future__ import annotations

from collections import defaultdict
from math import lcm

from attribution.apportion import apportion
from attribution.errors import StatementInconsistentError
from attribution.model import BPS_DENOMINATOR, KINDS, SCHEMA_VERSION, Kind, LineSource, Statement


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise StatementInconsistentError(message)


def check_statement(statement: Statement) -> None:
    """Raise ``StatementInconsistentError`` naming the first identity the statement breaks.

    Checked: schema version; pool = floor(revenue × rate / 10,000) with its remainder; the
    sub-pools (sum to the pool under an accrual, both 0 and no sources otherwise); per
    (dataset, kind): one weight, one dataset amount, shares summing to 10,000 and co-owner
    amounts equal to the largest-remainder split of the dataset amount; per kind: dataset amounts
    equal to the largest-remainder split of the sub-pool by weight and weights summing to the
    total weight; per line: accrued = Σ sources, adjustment = Σ adjustments, the payout rule, no
    negative accrued or payable; lines sorted by unique address; totals equal the line sums.
    """
    _require(statement.schema_version == SCHEMA_VERSION, "unknown schema_version")
    _require(
        statement.pool_remainder_denominator == BPS_DENOMINATOR,
        f"pool_remainder_denominator must be {BPS_DENOMINATOR}",
    )
    pool_minor, remainder = divmod(
        statement.revenue_minor * statement.royalty_rate_bps, BPS_DENOMINATOR
    )
    _require(
        (statement.pool_minor, statement.pool_remainder_numerator) == (pool_minor, remainder),
        f"pool_minor/remainder must be {pool_minor} and {remainder}/{BPS_DENOMINATOR}",
    )
    _require(
        statement.training.kind == "training" and statement.retrieval.kind == "retrieval",
        "sub-pool kinds are swapped",
    )
    _require(
        statement.training.share_bps == statement.training_share_bps
        and statement.retrieval.share_bps == BPS_DENOMINATOR - statement.training_share_bps,
        "sub-pool share_bps must match training_share_bps",
    )
    sub_pools = {"training": statement.training, "retrieval": statement.retrieval}
    split_minor = statement.training.amount_minor + statement.retrieval.amount_minor
    if statement.no_accrual_reason is None:
        _require(statement.revenue_minor > 0, "an accrual needs revenue")
        _require(split_minor == statement.pool_minor, "sub-pools must add up to pool_minor")
        training_weighted = statement.training.total_weight > 0
        retrieval_weighted = statement.retrieval.total_weight > 0
        _require(training_weighted or retrieval_weighted, "an accrual needs some weight")
        for weighted, sub_pool in (
            (training_weighted, statement.training),
            (retrieval_weighted, statement.retrieval),
        ):
            _require(
                weighted or sub_pool.amount_minor == 0,
                f"{sub_pool.kind}: a sub-pool without weight must be 0 (it cedes to the other)",
            )
        if training_weighted and retrieval_weighted:
            expected = apportion(
                statement.pool_minor,
                [statement.training.share_bps, statement.retrieval.share_bps],
            )
            _require(
                [statement.training.amount_minor, statement.retrieval.amount_minor] == expected,
                f"sub-pools must be the largest-remainder split {expected}",
            )
    else:
        _require(split_minor == 0, "without an accrual both sub-pools must be 0")
        _require(
            all(not line.sources for line in statement.lines),
            "without an accrual no line may have sources",
        )

    by_dataset: defaultdict[tuple[Kind, str], list[tuple[str, LineSource]]] = defaultdict(list)
    previous_address: str | None = None
    for line in statement.lines:
        where = f"line {line.address}"
        _require(
            previous_address is None or previous_address < line.address,
            f"{where}: lines must be sorted by unique address",
        )
        previous_address = line.address
        keys = [(source.dataset_id, source.kind) for source in line.sources]
        _require(keys == sorted(set(keys)), f"{where}: sources must be sorted and unique")
        _require(
            line.accrued_minor == sum(source.amount_minor for source in line.sources),
            f"{where}: accrued_minor must equal the sum of its sources",
        )
        _require(
            line.adjustment_minor == sum(item.amount_minor for item in line.adjustments),
            f"{where}: adjustment_minor must equal the sum of its adjustments",
        )
        balance_minor = line.balance_minor
        pays = (
            statement.revenue_minor > 0
            and balance_minor > 0
            and balance_minor >= statement.min_payout_minor
        )
        expected_pair = (balance_minor, 0) if pays else (0, balance_minor)
        _require(
            (line.payable_minor, line.carried_forward_minor) == expected_pair,
            f"{where}: payable/carried_forward must be {expected_pair}",
        )
        _require(line.accrued_minor >= 0 and line.payable_minor >= 0, f"{where}: negative amount")
        for source in line.sources:
            by_dataset[(source.kind, source.dataset_id)].append((line.address, source))

    by_kind: defaultdict[Kind, list[LineSource]] = defaultdict(list)
    for (kind, dataset_id), entries in sorted(by_dataset.items()):
        where = f"{kind} dataset {dataset_id!r}"
        first = entries[0][1]
        for _, source in entries:
            _require(
                (source.weight, source.total_weight, source.sub_pool_minor)
                == (first.weight, first.total_weight, first.sub_pool_minor)
                and source.dataset_amount_minor == first.dataset_amount_minor,
                f"{where}: co-owners disagree on weight or dataset amount",
            )
        _require(
            sum(source.share_bps for _, source in entries) == BPS_DENOMINATOR,
            f"{where}: co-owner shares must sum to {BPS_DENOMINATOR}",
        )
        # Lines are sorted by address, so entries already are in the co-owner tie-break order.
        expected_amounts = apportion(
            first.dataset_amount_minor, [source.share_bps for _, source in entries]
        )
        _require(
            [source.amount_minor for _, source in entries] == expected_amounts,
            f"{where}: co-owner amounts must be the largest-remainder split {expected_amounts}",
        )
        by_kind[kind].append(first)

    for kind in KINDS:
        sub_pool = sub_pools[kind]
        datasets = by_kind.get(kind, [])  # sorted by dataset_id via the sorted() above
        _require(
            len(datasets) == (sub_pool.dataset_count if statement.no_accrual_reason is None else 0),
            f"{kind}: dataset_count must match the datasets on the lines",
        )
        if not datasets:
            continue
        _require(
            all(
                source.sub_pool_minor == sub_pool.amount_minor
                and source.total_weight == sub_pool.total_weight
                and source.weight > 0
                for source in datasets
            ),
            f"{kind}: sources must carry the sub-pool's amount and total weight",
        )
        _require(
            sum(source.weight for source in datasets) == sub_pool.total_weight,
            f"{kind}: weights must add up to total_weight",
        )
        denominator = lcm(*(source.weight.denominator for source in datasets))
        numerators = [
            source.weight.numerator * (denominator // source.weight.denominator)
            for source in datasets
        ]
        expected_amounts = apportion(sub_pool.amount_minor, numerators)
        _require(
            [source.dataset_amount_minor for source in datasets] == expected_amounts,
            f"{kind}: dataset amounts must be the largest-remainder split of the sub-pool",
        )

    totals = statement.totals
    lines = statement.lines
    _require(
        (
            totals.accrued_total_minor,
            totals.carry_in_total_minor,
            totals.adjustment_total_minor,
            totals.payable_total_minor,
            totals.carried_forward_total_minor,
        )
        == (
            sum(line.accrued_minor for line in lines),
            sum(line.carry_in_minor for line in lines),
            sum(line.adjustment_minor for line in lines),
            sum(line.payable_minor for line in lines),
            sum(line.carried_forward_minor for line in lines),
        ),
        "totals must equal the sums over the lines",
    )
    if statement.no_accrual_reason is None:
        _require(
            totals.accrued_total_minor == statement.pool_minor,
            "accrued_total_minor must equal pool_minor",
        )
