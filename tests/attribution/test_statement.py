"""Canonical JSON, hashing, parsing back, checking and explaining a statement."""

from __future__ import annotations

import dataclasses
import hashlib
import json

import pytest

from attribution import (
    Adjustment,
    Agreement,
    CarryIn,
    CoOwner,
    DatasetOwners,
    PayeeNotFoundError,
    PeriodInput,
    RetrievalRollup,
    Statement,
    StatementFormatError,
    StatementInconsistentError,
    TrainingRollup,
    canonical_json,
    check_statement,
    compute_statement,
    explain,
    statement_from_json,
    statement_hash,
)

ALICE = "0x" + "a1" * 20
BOB = "0x" + "b2" * 20
CAROL = "0x" + "c3" * 20


def example() -> Statement:
    return compute_statement(
        PeriodInput(
            model_id="model-ü",
            period_id="2024-05",
            revenue_minor=100_001,
            agreement=Agreement(
                agreement_id="agr-1",
                version=2,
                royalty_rate_bps=1000,
                training_share_bps=7000,
                min_payout_minor=1000,
                currency="EUR",
                retrieval_policy="rank-discount/v1",
            ),
            training=(TrainingRollup("ds-a", 600, ("t-1", "t-0")),),
            retrieval=(
                RetrievalRollup("ds-a", 3, 1, 1, ("r-1",)),
                RetrievalRollup("ds-b", 3, 2, 1, ("r-2",)),
            ),
            datasets=(
                DatasetOwners("ds-a", (CoOwner(ALICE, 6000), CoOwner(BOB, 4000))),
                DatasetOwners("ds-b", (CoOwner(BOB, 10_000),)),
            ),
            carry_in=(CarryIn(CAROL, 250),),
            adjustments=(Adjustment(ALICE, -50, 'refund "April"\n', "adj-1"),),
        )
    )


def test_canonical_json_is_compact_sorted_and_has_no_numbers() -> None:
    data = canonical_json(example())
    document = json.loads(data)
    compact = json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    assert data == compact.encode("utf-8")
    assert "model-ü".encode() in data

    def no_numbers(value: object) -> None:
        assert type(value) not in (int, float, bool)
        if isinstance(value, dict):
            for item in value.values():
                no_numbers(item)
        if isinstance(value, list):
            for item in value:
                no_numbers(item)

    no_numbers(document)
    assert document["pool_minor"] == "10000"
    assert document["lines"][0]["sources"][0]["weight"] == "6/11"
    assert document["lines"][0]["sources"][1]["weight"] == "600/1"
    assert document["retrieval"]["total_weight"] == "9/11"


def test_hash_is_sha256_of_the_canonical_bytes() -> None:
    statement = example()
    assert statement_hash(statement) == hashlib.sha256(canonical_json(statement)).hexdigest()
    assert len(statement_hash(statement)) == 64


def test_round_trip_is_exact() -> None:
    statement = example()
    data = canonical_json(statement)
    parsed = statement_from_json(data)
    assert parsed == statement
    assert canonical_json(parsed) == data


def test_non_canonical_bytes_are_rejected() -> None:
    document = json.loads(canonical_json(example()))
    pretty = json.dumps(document, sort_keys=True, indent=2).encode()
    with pytest.raises(StatementFormatError, match="canonical"):
        statement_from_json(pretty)


@pytest.mark.parametrize(
    ("path", "value", "match"),
    [
        (("pool_minor",), 10000, "expected a string"),
        (("pool_minor",), "+10000", "decimal integer"),
        (("pool_minor",), "10_000", "decimal integer"),
        (("retrieval", "total_weight"), "18/22", "lowest terms"),
        (("retrieval", "total_weight"), "9/0", "fraction"),
        (("training", "kind"), "rag", "expected one of"),
        (("schema_version",), "usefirst.statement/v0", "schema_version"),
    ],
)
def test_malformed_fields_are_rejected(path: tuple[str, ...], value: object, match: str) -> None:
    document = json.loads(canonical_json(example()))
    target = document
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    data = json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    with pytest.raises(StatementFormatError, match=match):
        statement_from_json(data.encode())


def test_missing_and_extra_keys_are_rejected() -> None:
    document = json.loads(canonical_json(example()))
    document["extra"] = "1"
    del document["totals"]
    with pytest.raises(StatementFormatError, match=r"missing keys \['totals'\]"):
        statement_from_json(json.dumps(document).encode())


def test_bytes_that_are_not_json_are_rejected() -> None:
    with pytest.raises(StatementFormatError):
        statement_from_json(b"\xff")
    with pytest.raises(StatementFormatError):
        statement_from_json(b"[]")


def test_check_statement_accepts_a_computed_statement() -> None:
    check_statement(example())


def test_check_statement_catches_a_moved_unit() -> None:
    statement = example()
    first, second, *rest = statement.lines
    tampered = dataclasses.replace(
        statement,
        lines=(
            dataclasses.replace(first, accrued_minor=first.accrued_minor + 1),
            dataclasses.replace(second, accrued_minor=second.accrued_minor - 1),
            *rest,
        ),
    )
    with pytest.raises(StatementInconsistentError, match="accrued_minor"):
        check_statement(tampered)


def test_check_statement_catches_a_wrong_payout() -> None:
    statement = example()
    line = statement.lines[-1]
    tampered = dataclasses.replace(
        statement,
        lines=(
            *statement.lines[:-1],
            dataclasses.replace(line, payable_minor=0, carried_forward_minor=line.payable_minor),
        ),
    )
    with pytest.raises(StatementInconsistentError, match="payable"):
        check_statement(tampered)


def test_explain_walks_from_revenue_to_payout() -> None:
    text = explain(example(), ALICE)
    assert "revenue 100001 × royalty rate 1000 bps / 10000 = 10000 + 1/10 → pool 10000" in text
    assert "training sub-pool 7000" in text
    assert "ds-a, training: weight 600 / total weight 600 × sub-pool 7000" in text
    assert "your share 6000 bps / 10000 × 7000 = 4200 exactly → 4200" in text
    assert '-50: "refund \\"April\\"\\n" (reference "adj-1")' in text
    assert "payable" in text


def test_explain_for_a_carry_in_only_payee() -> None:
    text = explain(example(), CAROL)
    assert "none this period" in text
    assert "carry-in from earlier periods: 250" in text
    assert "below the minimum payout 1000" in text


def test_explain_rejects_an_address_without_a_line() -> None:
    with pytest.raises(PayeeNotFoundError) as raised:
        explain(example(), ALICE.upper().replace("0X", "0x"))
    assert raised.value.code == "payee_not_found"
    assert f"did you mean {ALICE}" in str(raised.value)


def test_golden_hash_of_the_documented_example() -> None:
    """The example in docs/ATTRIBUTION.md. If this hash changes, the serialised statement changed:
    bump SCHEMA_VERSION and update the doc, because published hashes would no longer verify."""
    alice, bob, carol = "0x" + "a1" * 20, "0x" + "b2" * 20, "0x" + "c3" * 20
    statement = compute_statement(
        PeriodInput(
            model_id="model-1",
            period_id="2024-05",
            revenue_minor=100_001,
            agreement=Agreement("agr-1", 2, 1000, 7000, 1000, "EUR", "rank-discount/v1"),
            training=(TrainingRollup("ds-a", 600, ("tr-17",)),),
            retrieval=(
                RetrievalRollup("ds-a", 3, 1, 1, ("rr-1",)),
                RetrievalRollup("ds-b", 3, 2, 1, ("rr-2",)),
            ),
            datasets=(
                DatasetOwners("ds-a", (CoOwner(alice, 6000), CoOwner(bob, 4000))),
                DatasetOwners("ds-b", (CoOwner(bob, 10_000),)),
            ),
            carry_in=(CarryIn(carol, 250),),
            adjustments=(Adjustment(alice, -50, "refund of 2024-04 revenue", "adj-1"),),
        )
    )
    assert [line.payable_minor for line in statement.lines] == [5350, 4600, 0]
    assert statement_hash(statement) == (
        "85db832e172696f733135d2d7e940a888302e912d8558bd156232622eeca3f8f"
    )
