"""Canonical serialisation of a statement, its hash, and the exact inverse.

Canonical JSON: UTF-8, object keys sorted, no insignificant whitespace (separators ``,`` and
``:``), every integer as a decimal string (``"-12"``), every fraction as ``"num/den"`` in lowest
terms with a positive denominator (``"6/11"``, ``"1200/1"``), absent text as ``null``, tuples as
arrays in the statement's own (canonical) order. Because no JSON number ever appears, the bytes
coincide with RFC 8785 (JCS) output for the same document, so other languages can re-serialise
and re-hash without a Python-specific number formatter.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable
from fractions import Fraction
from typing import Final, TypeVar

from attribution.errors import StatementFormatError
from attribution.model import (
    KINDS,
    SCHEMA_VERSION,
    AppliedAdjustment,
    Kind,
    Line,
    LineSource,
    Statement,
    SubPool,
    Totals,
)

_INTEGER: Final = re.compile(r"-?(0|[1-9][0-9]*)")
_FRACTION: Final = re.compile(r"(-?(?:0|[1-9][0-9]*))/([1-9][0-9]*)")

Json = dict[str, object]
_T = TypeVar("_T")


# --- to JSON ------------------------------------------------------------------------------------


def _fraction_text(value: Fraction) -> str:
    return f"{value.numerator}/{value.denominator}"


def _source_json(source: LineSource) -> Json:
    return {
        "dataset_id": source.dataset_id,
        "kind": source.kind,
        "weight": _fraction_text(source.weight),
        "total_weight": _fraction_text(source.total_weight),
        "sub_pool_minor": str(source.sub_pool_minor),
        "dataset_amount_minor": str(source.dataset_amount_minor),
        "share_bps": str(source.share_bps),
        "amount_minor": str(source.amount_minor),
        "rollup_ids": list(source.rollup_ids),
    }


def _adjustment_json(adjustment: AppliedAdjustment) -> Json:
    return {
        "amount_minor": str(adjustment.amount_minor),
        "reason": adjustment.reason,
        "reference": adjustment.reference,
    }


def _line_json(line: Line) -> Json:
    return {
        "address": line.address,
        "accrued_minor": str(line.accrued_minor),
        "carry_in_minor": str(line.carry_in_minor),
        "adjustment_minor": str(line.adjustment_minor),
        "adjustments": [_adjustment_json(item) for item in line.adjustments],
        "payable_minor": str(line.payable_minor),
        "carried_forward_minor": str(line.carried_forward_minor),
        "sources": [_source_json(source) for source in line.sources],
    }


def _sub_pool_json(sub_pool: SubPool) -> Json:
    return {
        "kind": sub_pool.kind,
        "share_bps": str(sub_pool.share_bps),
        "amount_minor": str(sub_pool.amount_minor),
        "total_weight": _fraction_text(sub_pool.total_weight),
        "dataset_count": str(sub_pool.dataset_count),
    }


def _totals_json(totals: Totals) -> Json:
    return {
        "accrued_total_minor": str(totals.accrued_total_minor),
        "carry_in_total_minor": str(totals.carry_in_total_minor),
        "adjustment_total_minor": str(totals.adjustment_total_minor),
        "payable_total_minor": str(totals.payable_total_minor),
        "carried_forward_total_minor": str(totals.carried_forward_total_minor),
    }


def statement_to_json_object(statement: Statement) -> Json:
    """The statement as a JSON-ready dict of str / None / list / dict (no numbers)."""
    return {
        "schema_version": statement.schema_version,
        "model_id": statement.model_id,
        "period_id": statement.period_id,
        "currency": statement.currency,
        "agreement_id": statement.agreement_id,
        "agreement_version": str(statement.agreement_version),
        "retrieval_policy": statement.retrieval_policy,
        "revenue_minor": str(statement.revenue_minor),
        "royalty_rate_bps": str(statement.royalty_rate_bps),
        "training_share_bps": str(statement.training_share_bps),
        "min_payout_minor": str(statement.min_payout_minor),
        "pool_minor": str(statement.pool_minor),
        "pool_remainder_numerator": str(statement.pool_remainder_numerator),
        "pool_remainder_denominator": str(statement.pool_remainder_denominator),
        "pool_rounding_rule": statement.pool_rounding_rule,
        "split_rule": statement.split_rule,
        "allocation_rule": statement.allocation_rule,
        "payout_rule": statement.payout_rule,
        "training": _sub_pool_json(statement.training),
        "retrieval": _sub_pool_json(statement.retrieval),
        "lines": [_line_json(line) for line in statement.lines],
        "totals": _totals_json(statement.totals),
        "no_accrual_reason": statement.no_accrual_reason,
    }


def canonical_json(statement: Statement) -> bytes:
    """The canonical UTF-8 JSON bytes of ``statement`` (see the module docstring).

    Equal statements give equal bytes; ``statement_from_json`` inverts it exactly.
    """
    return json.dumps(
        statement_to_json_object(statement),
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
        allow_nan=False,
    ).encode("utf-8")


def statement_hash(statement: Statement) -> str:
    """Lower-case hex SHA-256 of ``canonical_json(statement)``."""
    return hashlib.sha256(canonical_json(statement)).hexdigest()


# --- from JSON ----------------------------------------------------------------------------------


def _object(value: object, where: str, keys: frozenset[str]) -> Json:
    if not isinstance(value, dict):
        raise StatementFormatError(f"{where}: expected an object, got {type(value).__name__}")
    present = frozenset(value)
    if present != keys:
        missing = sorted(keys - present)
        extra = sorted(present - keys)
        raise StatementFormatError(f"{where}: missing keys {missing}, unexpected keys {extra}")
    return value


def _str(value: object, where: str) -> str:
    if not isinstance(value, str):
        raise StatementFormatError(f"{where}: expected a string, got {type(value).__name__}")
    return value


def _optional_str(value: object, where: str) -> str | None:
    return None if value is None else _str(value, where)


def _int(value: object, where: str) -> int:
    text = _str(value, where)
    # A strict pattern, because int() would also accept " 7", "+7", "0_7" and non-ASCII digits.
    if not _INTEGER.fullmatch(text) or text == "-0":
        raise StatementFormatError(f"{where}: expected a decimal integer string, got {text!r}")
    return int(text)


def _fraction(value: object, where: str) -> Fraction:
    text = _str(value, where)
    match = _FRACTION.fullmatch(text)
    if match is None:
        raise StatementFormatError(f"{where}: expected a 'num/den' fraction, got {text!r}")
    numerator, denominator = int(match.group(1)), int(match.group(2))
    result = Fraction(numerator, denominator)
    if (result.numerator, result.denominator) != (numerator, denominator):
        raise StatementFormatError(f"{where}: fraction {text!r} is not in lowest terms")
    return result


def _kind(value: object, where: str) -> Kind:
    text = _str(value, where)
    for kind in KINDS:
        if text == kind:
            return kind
    raise StatementFormatError(f"{where}: expected one of {list(KINDS)}, got {text!r}")


def _list(value: object, where: str, item: Callable[[object, str], _T]) -> tuple[_T, ...]:
    if not isinstance(value, list):
        raise StatementFormatError(f"{where}: expected an array, got {type(value).__name__}")
    return tuple(item(element, f"{where}[{index}]") for index, element in enumerate(value))


_SOURCE_KEYS: Final = frozenset(
    {
        "dataset_id",
        "kind",
        "weight",
        "total_weight",
        "sub_pool_minor",
        "dataset_amount_minor",
        "share_bps",
        "amount_minor",
        "rollup_ids",
    }
)


def _source(value: object, where: str) -> LineSource:
    data = _object(value, where, _SOURCE_KEYS)
    return LineSource(
        dataset_id=_str(data["dataset_id"], f"{where}.dataset_id"),
        kind=_kind(data["kind"], f"{where}.kind"),
        weight=_fraction(data["weight"], f"{where}.weight"),
        total_weight=_fraction(data["total_weight"], f"{where}.total_weight"),
        sub_pool_minor=_int(data["sub_pool_minor"], f"{where}.sub_pool_minor"),
        dataset_amount_minor=_int(data["dataset_amount_minor"], f"{where}.dataset_amount_minor"),
        share_bps=_int(data["share_bps"], f"{where}.share_bps"),
        amount_minor=_int(data["amount_minor"], f"{where}.amount_minor"),
        rollup_ids=_list(data["rollup_ids"], f"{where}.rollup_ids", _str),
    )


_ADJUSTMENT_KEYS: Final = frozenset({"amount_minor", "reason", "reference"})


def _adjustment(value: object, where: str) -> AppliedAdjustment:
    data = _object(value, where, _ADJUSTMENT_KEYS)
    return AppliedAdjustment(
        amount_minor=_int(data["amount_minor"], f"{where}.amount_minor"),
        reason=_str(data["reason"], f"{where}.reason"),
        reference=_str(data["reference"], f"{where}.reference"),
    )


_LINE_KEYS: Final = frozenset(
    {
        "address",
        "accrued_minor",
        "carry_in_minor",
        "adjustment_minor",
        "adjustments",
        "payable_minor",
        "carried_forward_minor",
        "sources",
    }
)


def _line(value: object, where: str) -> Line:
    data = _object(value, where, _LINE_KEYS)
    return Line(
        address=_str(data["address"], f"{where}.address"),
        accrued_minor=_int(data["accrued_minor"], f"{where}.accrued_minor"),
        carry_in_minor=_int(data["carry_in_minor"], f"{where}.carry_in_minor"),
        adjustment_minor=_int(data["adjustment_minor"], f"{where}.adjustment_minor"),
        adjustments=_list(data["adjustments"], f"{where}.adjustments", _adjustment),
        payable_minor=_int(data["payable_minor"], f"{where}.payable_minor"),
        carried_forward_minor=_int(data["carried_forward_minor"], f"{where}.carried_forward_minor"),
        sources=_list(data["sources"], f"{where}.sources", _source),
    )


_SUB_POOL_KEYS: Final = frozenset(
    {"kind", "share_bps", "amount_minor", "total_weight", "dataset_count"}
)


def _sub_pool(value: object, where: str) -> SubPool:
    data = _object(value, where, _SUB_POOL_KEYS)
    return SubPool(
        kind=_kind(data["kind"], f"{where}.kind"),
        share_bps=_int(data["share_bps"], f"{where}.share_bps"),
        amount_minor=_int(data["amount_minor"], f"{where}.amount_minor"),
        total_weight=_fraction(data["total_weight"], f"{where}.total_weight"),
        dataset_count=_int(data["dataset_count"], f"{where}.dataset_count"),
    )


_TOTALS_KEYS: Final = frozenset(
    {
        "accrued_total_minor",
        "carry_in_total_minor",
        "adjustment_total_minor",
        "payable_total_minor",
        "carried_forward_total_minor",
    }
)


def _totals(value: object, where: str) -> Totals:
    data = _object(value, where, _TOTALS_KEYS)
    return Totals(
        accrued_total_minor=_int(data["accrued_total_minor"], f"{where}.accrued_total_minor"),
        carry_in_total_minor=_int(data["carry_in_total_minor"], f"{where}.carry_in_total_minor"),
        adjustment_total_minor=_int(
            data["adjustment_total_minor"], f"{where}.adjustment_total_minor"
        ),
        payable_total_minor=_int(data["payable_total_minor"], f"{where}.payable_total_minor"),
        carried_forward_total_minor=_int(
            data["carried_forward_total_minor"], f"{where}.carried_forward_total_minor"
        ),
    )


_STATEMENT_KEYS: Final = frozenset(
    {
        "schema_version",
        "model_id",
        "period_id",
        "currency",
        "agreement_id",
        "agreement_version",
        "retrieval_policy",
        "revenue_minor",
        "royalty_rate_bps",
        "training_share_bps",
        "min_payout_minor",
        "pool_minor",
        "pool_remainder_numerator",
        "pool_remainder_denominator",
        "pool_rounding_rule",
        "split_rule",
        "allocation_rule",
        "payout_rule",
        "training",
        "retrieval",
        "lines",
        "totals",
        "no_accrual_reason",
    }
)


def statement_from_json(data: bytes) -> Statement:
    """Parse canonical statement bytes back into the ``Statement`` they came from.

    Exact inverse of ``canonical_json``: ``statement_from_json(canonical_json(s)) == s`` and, for
    any bytes it accepts, ``canonical_json(statement_from_json(b)) == b`` — so the hash of what
    was parsed is the hash of what was received. Raises ``StatementFormatError`` for bytes that
    are not UTF-8 JSON of this schema or not in canonical form. It does not check the arithmetic:
    use ``check_statement`` for that, or recompute from the inputs and compare hashes.
    """
    try:
        document = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise StatementFormatError(f"not UTF-8 JSON: {error}") from None
    top = _object(document, "statement", _STATEMENT_KEYS)
    schema_version = _str(top["schema_version"], "statement.schema_version")
    if schema_version != SCHEMA_VERSION:
        raise StatementFormatError(
            f"statement.schema_version: expected {SCHEMA_VERSION!r}, got {schema_version!r}"
        )

    def text(key: str) -> str:
        return _str(top[key], f"statement.{key}")

    def integer(key: str) -> int:
        return _int(top[key], f"statement.{key}")

    statement = Statement(
        schema_version=schema_version,
        model_id=text("model_id"),
        period_id=text("period_id"),
        currency=text("currency"),
        agreement_id=text("agreement_id"),
        agreement_version=integer("agreement_version"),
        retrieval_policy=text("retrieval_policy"),
        revenue_minor=integer("revenue_minor"),
        royalty_rate_bps=integer("royalty_rate_bps"),
        training_share_bps=integer("training_share_bps"),
        min_payout_minor=integer("min_payout_minor"),
        pool_minor=integer("pool_minor"),
        pool_remainder_numerator=integer("pool_remainder_numerator"),
        pool_remainder_denominator=integer("pool_remainder_denominator"),
        pool_rounding_rule=text("pool_rounding_rule"),
        split_rule=text("split_rule"),
        allocation_rule=text("allocation_rule"),
        payout_rule=text("payout_rule"),
        training=_sub_pool(top["training"], "statement.training"),
        retrieval=_sub_pool(top["retrieval"], "statement.retrieval"),
        lines=_list(top["lines"], "statement.lines", _line),
        totals=_totals(top["totals"], "statement.totals"),
        no_accrual_reason=_optional_str(top["no_accrual_reason"], "statement.no_accrual_reason"),
    )
    if canonical_json(statement) != data:
        raise StatementFormatError(
            "bytes are a valid statement but not in canonical form (key order, whitespace or "
            "escaping differ); re-serialise with canonical_json before hashing or anchoring"
        )
    return statement
