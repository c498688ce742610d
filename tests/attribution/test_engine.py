"""compute_statement on hand-computed examples with known answers."""

from __future__ import annotations

from fractions import Fraction
from typing import Any

import pytest

from attribution import (
    NO_ACCRUAL_NO_REVENUE,
    NO_ACCRUAL_NO_USAGE,
    NO_ACCRUAL_POOL_ZERO,
    Adjustment,
    Agreement,
    CarryIn,
    CoOwner,
    DatasetOwners,
    Line,
    PeriodInput,
    RetrievalRollup,
    Statement,
    TrainingRollup,
    check_statement,
    compute_statement,
)

ALICE = "0x" + "a1" * 20
BOB = "0x" + "b2" * 20
CAROL = "0x" + "c3" * 20
DAVE = "0x" + "d4" * 20


def agreement(**changes: Any) -> Agreement:
    fields: dict[str, Any] = {
        "agreement_id": "agr-1",
        "version": 3,
        "royalty_rate_bps": 1000,
        "training_share_bps": 10_000,
        "min_payout_minor": 0,
        "currency": "EUR",
        "retrieval_policy": "uniform/v1",
    }
    fields.update(changes)
    return Agreement(**fields)


def solo(dataset_id: str, address: str) -> DatasetOwners:
    return DatasetOwners(dataset_id, (CoOwner(address, 10_000),))


def period(**changes: Any) -> PeriodInput:
    fields: dict[str, Any] = {
        "model_id": "model-1",
        "period_id": "2024-05",
        "revenue_minor": 1000,
        "agreement": agreement(),
        "training": (),
        "retrieval": (),
        "datasets": (),
        "carry_in": (),
        "adjustments": (),
    }
    fields.update(changes)
    return PeriodInput(**fields)


def compute(built: PeriodInput) -> Statement:
    statement = compute_statement(built)
    check_statement(statement)
    return statement


def line_of(statement: Statement, address: str) -> Line:
    (line,) = [line for line in statement.lines if line.address == address]
    return line


def accrued(statement: Statement) -> dict[str, int]:
    return {line.address: line.accrued_minor for line in statement.lines}


def test_pool_is_floored_and_the_remainder_recorded() -> None:
    statement = compute(
        period(
            revenue_minor=12_345,
            agreement=agreement(royalty_rate_bps=333),
            training=(TrainingRollup("ds-a", 1, ("t1",)),),
            datasets=(solo("ds-a", ALICE),),
        )
    )
    # 12,345 × 333 / 10,000 = 411.0885
    assert statement.pool_minor == 411
    assert (statement.pool_remainder_numerator, statement.pool_remainder_denominator) == (
        885,
        10_000,
    )
    assert statement.totals.accrued_total_minor == 411


def test_hundred_units_three_equal_ways_favour_the_first_dataset_id() -> None:
    statement = compute(
        period(
            training=(
                TrainingRollup("ds-c", 5, ("t3",)),
                TrainingRollup("ds-a", 5, ("t1",)),
                TrainingRollup("ds-b", 5, ("t2",)),
            ),
            datasets=(solo("ds-b", BOB), solo("ds-c", CAROL), solo("ds-a", ALICE)),
        )
    )
    assert statement.pool_minor == 100
    assert accrued(statement) == {ALICE: 34, BOB: 33, CAROL: 33}
    source = line_of(statement, ALICE).sources[0]
    assert (source.weight, source.total_weight, source.dataset_amount_minor) == (
        Fraction(5),
        Fraction(15),
        34,
    )


def test_sixty_forty_co_owned_dataset() -> None:
    co_owned = DatasetOwners("ds-a", (CoOwner(BOB, 4000), CoOwner(ALICE, 6000)))
    statement = compute(
        period(
            revenue_minor=1010,
            training=(TrainingRollup("ds-a", 7, ("t1",)),),
            datasets=(co_owned,),
        )
    )
    # Pool 101: quotas 60.6 and 40.4, the larger remainder takes the leftover unit.
    assert accrued(statement) == {ALICE: 61, BOB: 40}
    assert [source.share_bps for source in line_of(statement, ALICE).sources] == [6000]


def test_equal_co_owner_remainders_favour_the_lower_address() -> None:
    co_owned = DatasetOwners("ds-a", (CoOwner(BOB, 5000), CoOwner(ALICE, 5000)))
    statement = compute(
        period(
            revenue_minor=10,
            training=(TrainingRollup("ds-a", 1, ()),),
            datasets=(co_owned,),
        )
    )
    assert statement.pool_minor == 1
    assert accrued(statement) == {ALICE: 1, BOB: 0}


def test_rank_discount_credits_for_a_three_chunk_query() -> None:
    statement = compute(
        period(
            revenue_minor=11_000,
            agreement=agreement(training_share_bps=0, retrieval_policy="rank-discount/v1"),
            retrieval=(
                RetrievalRollup("ds-a", 3, 1, 1, ("q-a",)),
                RetrievalRollup("ds-b", 3, 2, 1, ("q-b",)),
                RetrievalRollup("ds-c", 3, 3, 1, ("q-c",)),
            ),
            datasets=(solo("ds-a", ALICE), solo("ds-b", BOB), solo("ds-c", CAROL)),
        )
    )
    # Pool 1,100 split 6/11, 3/11, 2/11.
    assert accrued(statement) == {ALICE: 600, BOB: 300, CAROL: 200}
    assert [line.sources[0].weight for line in statement.lines] == [
        Fraction(6, 11),
        Fraction(3, 11),
        Fraction(2, 11),
    ]
    assert statement.retrieval.total_weight == 1


def test_uniform_retrieval_weight_sums_hits_over_list_lengths() -> None:
    statement = compute(
        period(
            revenue_minor=7000,
            agreement=agreement(training_share_bps=0),
            retrieval=(
                RetrievalRollup("ds-a", 2, 1, 3, ("r1",)),  # 3 × 1/2
                RetrievalRollup("ds-a", 4, 4, 2, ("r2",)),  # 2 × 1/4
                RetrievalRollup("ds-b", 4, 1, 5, ("r3",)),  # 5 × 1/4
            ),
            datasets=(solo("ds-a", ALICE), solo("ds-b", BOB)),
        )
    )
    alice, bob = statement.lines
    assert alice.sources[0].weight == Fraction(2)
    assert bob.sources[0].weight == Fraction(5, 4)
    assert alice.sources[0].rollup_ids == ("r1", "r2")
    # Pool 700 split 2 : 5/4 = 8 : 5 → 430.77 and 269.23.
    assert accrued(statement) == {ALICE: 431, BOB: 269}


def test_training_and_retrieval_split_by_training_share() -> None:
    statement = compute(
        period(
            revenue_minor=1010,
            agreement=agreement(training_share_bps=7000),
            training=(TrainingRollup("ds-a", 100, ("t1",)),),
            retrieval=(RetrievalRollup("ds-b", 1, 1, 4, ("r1",)),),
            datasets=(solo("ds-a", ALICE), solo("ds-b", BOB)),
        )
    )
    # Pool 101: 70.7 and 30.3, training takes the leftover unit.
    assert (statement.training.amount_minor, statement.retrieval.amount_minor) == (71, 30)
    assert accrued(statement) == {ALICE: 71, BOB: 30}


def test_equal_split_remainders_favour_training() -> None:
    statement = compute(
        period(
            revenue_minor=10,
            agreement=agreement(training_share_bps=5000),
            training=(TrainingRollup("ds-a", 1, ()),),
            retrieval=(RetrievalRollup("ds-b", 1, 1, 1, ()),),
            datasets=(solo("ds-a", ALICE), solo("ds-b", BOB)),
        )
    )
    assert (statement.training.amount_minor, statement.retrieval.amount_minor) == (1, 0)


def test_one_line_per_payee_merges_datasets_and_kinds() -> None:
    statement = compute(
        period(
            revenue_minor=10_000,
            agreement=agreement(training_share_bps=5000),
            training=(TrainingRollup("ds-a", 1, ("t1",)), TrainingRollup("ds-b", 1, ("t2",))),
            retrieval=(RetrievalRollup("ds-a", 1, 1, 1, ("r1",)),),
            datasets=(solo("ds-a", ALICE), solo("ds-b", ALICE)),
        )
    )
    (line,) = statement.lines
    assert line.accrued_minor == 1000
    assert [(source.dataset_id, source.kind, source.amount_minor) for source in line.sources] == [
        ("ds-a", "retrieval", 500),
        ("ds-a", "training", 250),
        ("ds-b", "training", 250),
    ]


def test_no_training_usage_gives_retrieval_the_whole_pool() -> None:
    statement = compute(
        period(
            agreement=agreement(training_share_bps=7000),
            training=(TrainingRollup("ds-a", 0, ("t1",)),),
            retrieval=(RetrievalRollup("ds-b", 3, 2, 9, ("r1",)),),
            datasets=(solo("ds-a", ALICE), solo("ds-b", BOB)),
        )
    )
    assert (statement.training.amount_minor, statement.retrieval.amount_minor) == (0, 100)
    assert "no training usage" in statement.split_rule
    # A dataset with zero weight earns nothing and gets no source.
    assert accrued(statement) == {BOB: 100}


def test_no_retrieval_usage_gives_training_the_whole_pool() -> None:
    statement = compute(
        period(
            agreement=agreement(training_share_bps=0),
            training=(TrainingRollup("ds-a", 3, ("t1",)),),
            retrieval=(RetrievalRollup("ds-b", 3, 2, 0, ("r1",)),),
            datasets=(solo("ds-a", ALICE), solo("ds-b", BOB)),
        )
    )
    assert (statement.training.amount_minor, statement.retrieval.amount_minor) == (100, 0)
    assert accrued(statement) == {ALICE: 100}


def test_min_payout_carries_forward_across_two_periods() -> None:
    datasets = (solo("ds-a", ALICE),)
    first = compute(
        period(
            period_id="2024-05",
            revenue_minor=400,
            agreement=agreement(min_payout_minor=100),
            training=(TrainingRollup("ds-a", 10, ("t1",)),),
            datasets=datasets,
        )
    )
    (line,) = first.lines
    assert (line.accrued_minor, line.payable_minor, line.carried_forward_minor) == (40, 0, 40)
    assert first.totals.payable_total_minor == 0

    second = compute(
        period(
            period_id="2024-06",
            revenue_minor=700,
            agreement=agreement(min_payout_minor=100),
            # Training is cumulative: it keeps earning in every later period with revenue.
            training=(TrainingRollup("ds-a", 10, ("t1",)),),
            datasets=datasets,
            carry_in=(CarryIn(ALICE, line.carried_forward_minor),),
        )
    )
    (line,) = second.lines
    assert (line.accrued_minor, line.carry_in_minor) == (70, 40)
    assert (line.payable_minor, line.carried_forward_minor) == (110, 0)


def test_negative_adjustment_is_carried_when_it_exceeds_the_accrual() -> None:
    statement = compute(
        period(
            revenue_minor=5000,
            training=(TrainingRollup("ds-a", 1, ()),),
            datasets=(solo("ds-a", ALICE),),
            adjustments=(
                Adjustment(ALICE, -600, "refund in 2024-04 reversed", "adj-7"),
                Adjustment(BOB, 25, "missed line in 2024-04", "adj-8"),
            ),
        )
    )
    alice = line_of(statement, ALICE)
    assert (alice.accrued_minor, alice.adjustment_minor) == (500, -600)
    assert (alice.payable_minor, alice.carried_forward_minor) == (0, -100)
    assert [item.reference for item in alice.adjustments] == ["adj-7"]
    # An adjustment alone earns a line.
    bob = line_of(statement, BOB)
    assert (bob.accrued_minor, bob.payable_minor, bob.sources) == (0, 25, ())
    assert statement.totals.payable_total_minor == 25
    assert statement.totals.carried_forward_total_minor == -100


def test_carry_in_alone_earns_a_line_and_zero_carry_in_does_not() -> None:
    statement = compute(
        period(
            training=(TrainingRollup("ds-a", 1, ()),),
            datasets=(solo("ds-a", ALICE),),
            carry_in=(CarryIn(CAROL, 30), CarryIn(DAVE, 0)),
        )
    )
    assert [line.address for line in statement.lines] == [ALICE, CAROL]
    assert line_of(statement, CAROL).payable_minor == 30


def test_zero_revenue_means_zero_obligations() -> None:
    statement = compute(
        period(
            revenue_minor=0,
            training=(TrainingRollup("ds-a", 10, ()),),
            datasets=(solo("ds-a", ALICE),),
            carry_in=(CarryIn(BOB, 5000),),
            adjustments=(Adjustment(CAROL, 70, "late correction", "adj-1"),),
        )
    )
    assert statement.no_accrual_reason == NO_ACCRUAL_NO_REVENUE
    assert statement.pool_minor == 0
    assert statement.totals.payable_total_minor == 0
    assert {line.address: line.carried_forward_minor for line in statement.lines} == {
        BOB: 5000,
        CAROL: 70,
    }


def test_no_usage_keeps_the_pool_unattributed() -> None:
    statement = compute(
        period(
            training=(TrainingRollup("ds-a", 0, ()),),
            datasets=(solo("ds-a", ALICE),),
            carry_in=(CarryIn(BOB, 500),),
        )
    )
    assert statement.no_accrual_reason == NO_ACCRUAL_NO_USAGE
    assert statement.pool_minor == 100
    assert statement.totals.accrued_total_minor == 0
    assert (statement.training.amount_minor, statement.retrieval.amount_minor) == (0, 0)
    # Revenue exists, so carried balances can still be paid.
    assert line_of(statement, BOB).payable_minor == 500


@pytest.mark.parametrize(("revenue", "rate"), [(5, 1000), (1000, 0)])
def test_pool_that_rounds_to_zero_accrues_nothing(revenue: int, rate: int) -> None:
    statement = compute(
        period(
            revenue_minor=revenue,
            agreement=agreement(royalty_rate_bps=rate),
            training=(TrainingRollup("ds-a", 1, ()),),
            datasets=(solo("ds-a", ALICE),),
        )
    )
    assert statement.no_accrual_reason == NO_ACCRUAL_POOL_ZERO
    assert statement.lines == ()


def test_statement_carries_the_agreement_and_rules() -> None:
    statement = compute(
        period(training=(TrainingRollup("ds-a", 1, ()),), datasets=(solo("ds-a", ALICE),))
    )
    assert (statement.agreement_id, statement.agreement_version) == ("agr-1", 3)
    assert (statement.currency, statement.retrieval_policy) == ("EUR", "uniform/v1")
    assert statement.schema_version == "usefirst.statement/v1"
    assert "floor" in statement.pool_rounding_rule
    assert "largest remainder" in statement.allocation_rule
