"""Input validation: every broken rule raises its own error with a stable code and a fix."""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pytest

from attribution import (
    Adjustment,
    Agreement,
    AttributionInputError,
    CarryIn,
    CoOwner,
    DatasetOwners,
    PeriodInput,
    RetrievalRollup,
    TrainingRollup,
)

ALICE = "0x" + "a1" * 20
BOB = "0x" + "b2" * 20


def agreement(**changes: Any) -> Agreement:
    fields: dict[str, Any] = {
        "agreement_id": "agr-1",
        "version": 1,
        "royalty_rate_bps": 1000,
        "training_share_bps": 7000,
        "min_payout_minor": 0,
        "currency": "EUR",
        "retrieval_policy": "uniform/v1",
    }
    fields.update(changes)
    return Agreement(**fields)


def period(**changes: Any) -> PeriodInput:
    fields: dict[str, Any] = {
        "model_id": "model-1",
        "period_id": "2024-05",
        "revenue_minor": 1000,
        "agreement": agreement(),
        "training": (TrainingRollup("ds-a", 10, ("t1",)),),
        "retrieval": (RetrievalRollup("ds-a", 2, 1, 3, ("r1",)),),
        "datasets": (DatasetOwners("ds-a", (CoOwner(ALICE, 10_000),)),),
        "carry_in": (),
        "adjustments": (),
    }
    fields.update(changes)
    return PeriodInput(**fields)


CASES: list[tuple[str, str, str, Callable[[], object]]] = [
    ("negative revenue", "negative_amount", "PeriodInput.revenue_minor",
     lambda: period(revenue_minor=-1)),
    ("float revenue", "invalid_type", "PeriodInput.revenue_minor",
     lambda: period(revenue_minor=10.0)),
    ("Decimal units", "invalid_type", "TrainingRollup.weighted_units",
     lambda: TrainingRollup("ds-a", Decimal(3), ())),  # type: ignore[arg-type]
    ("bool hits", "invalid_type", "RetrievalRollup.hits",
     lambda: RetrievalRollup("ds-a", 1, 1, True, ())),
    ("negative units", "negative_amount", "TrainingRollup.weighted_units",
     lambda: TrainingRollup("ds-a", -5, ())),
    ("negative hits", "negative_amount", "RetrievalRollup.hits",
     lambda: RetrievalRollup("ds-a", 3, 1, -1, ())),
    ("negative min payout", "negative_amount", "Agreement.min_payout_minor",
     lambda: agreement(min_payout_minor=-1)),
    ("rate above 10000", "bps_out_of_range", "Agreement.royalty_rate_bps",
     lambda: agreement(royalty_rate_bps=10_001)),
    ("negative training share", "bps_out_of_range", "Agreement.training_share_bps",
     lambda: agreement(training_share_bps=-1)),
    ("zero co-owner share", "bps_out_of_range", "CoOwner.share_bps",
     lambda: CoOwner(ALICE, 0)),
    ("version 0", "version_out_of_range", "Agreement.version", lambda: agreement(version=0)),
    ("lower-case currency", "invalid_currency", "Agreement.currency",
     lambda: agreement(currency="eur")),
    ("unknown policy", "unknown_policy", "Agreement.retrieval_policy",
     lambda: agreement(retrieval_policy="rank-discount/v9")),
    ("empty agreement id", "invalid_text", "Agreement.agreement_id",
     lambda: agreement(agreement_id="")),
    ("lone surrogate", "invalid_text", "TrainingRollup.rollup_ids",
     lambda: TrainingRollup("ds-a", 1, ("\ud800",))),
    ("list instead of tuple", "invalid_type", "TrainingRollup.rollup_ids",
     lambda: TrainingRollup("ds-a", 1, ["t1"])),  # type: ignore[arg-type]
    ("short address", "invalid_address", "CoOwner.address", lambda: CoOwner("0xabc", 10_000)),
    ("shares sum to 9999", "shares_not_10000", "DatasetOwners.co_owners",
     lambda: DatasetOwners("ds-a", (CoOwner(ALICE, 5000), CoOwner(BOB, 4999)))),
    ("no co-owners", "shares_not_10000", "DatasetOwners.co_owners",
     lambda: DatasetOwners("ds-a", ())),
    ("duplicate co-owner", "duplicate_co_owner", "DatasetOwners.co_owners",
     lambda: DatasetOwners("ds-a", (CoOwner(ALICE, 5000), CoOwner(ALICE, 5000)))),
    ("rank 0", "rank_out_of_range", "RetrievalRollup.rank",
     lambda: RetrievalRollup("ds-a", 3, 0, 1, ())),
    ("rank above n", "rank_out_of_range", "RetrievalRollup.rank",
     lambda: RetrievalRollup("ds-a", 3, 4, 1, ())),
    ("list length 0", "list_length_out_of_range", "RetrievalRollup.list_length",
     lambda: RetrievalRollup("ds-a", 0, 1, 1, ())),
    ("list length above max", "list_length_out_of_range", "RetrievalRollup.list_length",
     lambda: RetrievalRollup("ds-a", 101, 1, 1, ())),
    ("zero adjustment", "zero_adjustment", "Adjustment.amount_minor",
     lambda: Adjustment(ALICE, 0, "fix", "ref-1")),
    ("training dataset unknown", "unknown_dataset", "PeriodInput.training",
     lambda: period(training=(TrainingRollup("ds-zz", 1, ()),))),
    ("retrieval dataset unknown", "unknown_dataset", "PeriodInput.retrieval",
     lambda: period(retrieval=(RetrievalRollup("ds-zz", 1, 1, 1, ()),))),
    ("dataset listed twice", "duplicate_dataset", "PeriodInput.datasets",
     lambda: period(datasets=(DatasetOwners("ds-a", (CoOwner(ALICE, 10_000),)),) * 2)),
    ("training rollup twice", "duplicate_rollup", "PeriodInput.training",
     lambda: period(training=(TrainingRollup("ds-a", 1, ()), TrainingRollup("ds-a", 2, ())))),
    ("retrieval rollup twice", "duplicate_rollup", "PeriodInput.retrieval",
     lambda: period(retrieval=(RetrievalRollup("ds-a", 2, 1, 1, ()),) * 2)),
    ("carry-in twice", "duplicate_carry_in", "PeriodInput.carry_in",
     lambda: period(carry_in=(CarryIn(ALICE, 1), CarryIn(ALICE, 2)))),
    ("adjustment reference twice", "duplicate_adjustment", "PeriodInput.adjustments",
     lambda: period(adjustments=(Adjustment(ALICE, 1, "a", "r"), Adjustment(ALICE, 2, "b", "r")))),
    ("address in two spellings", "address_case_conflict", "PeriodInput",
     lambda: period(carry_in=(CarryIn(ALICE.upper().replace("0X", "0x"), 5),))),
    ("agreement of the wrong type", "invalid_type", "PeriodInput.agreement",
     lambda: period(agreement="agr-1")),
]  # fmt: skip


@pytest.mark.parametrize(
    ("code", "field", "build"),
    [case[1:] for case in CASES],
    ids=[case[0] for case in CASES],
)
def test_invalid_input_raises_its_own_code(
    code: str, field: str, build: Callable[[], object]
) -> None:
    with pytest.raises(AttributionInputError) as raised:
        build()
    assert raised.value.code == code
    assert raised.value.field == field
    assert str(raised.value).startswith(f"{field}: ")
    assert isinstance(raised.value, ValueError)


def test_valid_input_constructs() -> None:
    built = period(
        carry_in=(CarryIn(BOB, -20),),
        adjustments=(Adjustment(ALICE, -5, "late refund", "adj-1"),),
    )
    assert built.agreement.retrieval_share_bps == 3000


def test_same_reference_for_different_payees_is_allowed() -> None:
    period(adjustments=(Adjustment(ALICE, 1, "fix", "ref"), Adjustment(BOB, -1, "fix", "ref")))


def test_unused_dataset_in_datasets_is_allowed() -> None:
    period(
        datasets=(
            DatasetOwners("ds-a", (CoOwner(ALICE, 10_000),)),
            DatasetOwners("ds-unused", (CoOwner(BOB, 10_000),)),
        )
    )
