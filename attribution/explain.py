"""explain: a human-readable derivation of one payee's line, from the statement alone."""

from __future__ import annotations

import json
from fractions import Fraction

from attribution.errors import PayeeNotFoundError
from attribution.model import BPS_DENOMINATOR, Line, LineSource, Statement


def _quota_text(quota: Fraction) -> str:
    whole, part = divmod(quota, 1)
    if part == 0:
        return f"{whole} exactly"
    return f"{whole} + {part}"


def _rounding_text(quota: Fraction, amount_minor: int) -> str:
    floor_minor = quota.numerator // quota.denominator
    if quota == amount_minor:
        return ""
    if amount_minor == floor_minor:
        return " (rounded down; largest remainder)"
    return " (rounded down, plus one leftover unit for a largest remainder)"


def _fraction_text(value: Fraction) -> str:
    return str(value.numerator) if value.denominator == 1 else f"{value}"


def _find_line(statement: Statement, address: str) -> Line:
    for line in statement.lines:
        if line.address == address:
            return line
    near = [line.address for line in statement.lines if line.address.lower() == address.lower()]
    hint = f"; did you mean {near[0]}? addresses match exactly" if near else ""
    raise PayeeNotFoundError(
        f"address {address} has no line in the statement of model {statement.model_id!r}, "
        f"period {statement.period_id!r}{hint}"
    )


def _source_lines(source: LineSource) -> list[str]:
    dataset_quota = source.sub_pool_minor * source.weight / source.total_weight
    owner_quota = Fraction(source.dataset_amount_minor * source.share_bps, BPS_DENOMINATOR)
    return [
        f"   {source.dataset_id}, {source.kind}: weight {_fraction_text(source.weight)} / "
        f"total weight {_fraction_text(source.total_weight)} × sub-pool {source.sub_pool_minor} "
        f"= {_quota_text(dataset_quota)} → dataset amount {source.dataset_amount_minor}"
        f"{_rounding_text(dataset_quota, source.dataset_amount_minor)}",
        f"      your share {source.share_bps} bps / {BPS_DENOMINATOR} × "
        f"{source.dataset_amount_minor} = {_quota_text(owner_quota)} → {source.amount_minor}"
        f"{_rounding_text(owner_quota, source.amount_minor)}",
    ]


def explain(statement: Statement, address: str) -> str:
    """Return a multi-line derivation of ``address``'s line in ``statement``.

    Walks revenue → pool (rate, rounding) → sub-pools (split) → per dataset: weight / total
    weight → dataset amount → share_bps → amount; then carry-in, adjustments and the minimum
    payout rule → payable / carried forward. Amounts are minor units of the statement currency.
    Raises ``PayeeNotFoundError`` (code ``payee_not_found``) when ``address`` has no line; the
    match is exact, as line addresses are.
    """
    line = _find_line(statement, address)
    pool_quota = Fraction(
        statement.revenue_minor * statement.royalty_rate_bps, statement.pool_remainder_denominator
    )
    out = [
        f"Payee {line.address}",
        f"Model {statement.model_id}, period {statement.period_id}; amounts in minor units of "
        f"{statement.currency}; agreement {statement.agreement_id} v{statement.agreement_version}"
        f"; retrieval policy {statement.retrieval_policy}",
        "",
        "1. Pool",
        f"   revenue {statement.revenue_minor} × royalty rate {statement.royalty_rate_bps} bps / "
        f"{BPS_DENOMINATOR} = {_quota_text(pool_quota)} → pool {statement.pool_minor}",
        f"   rounding: {statement.pool_rounding_rule}; here "
        f"{statement.pool_remainder_numerator}/{statement.pool_remainder_denominator}",
        "",
        "2. Sub-pools",
    ]
    if statement.no_accrual_reason is not None:
        out.append(f"   no accrual this period: {statement.no_accrual_reason}")
    else:
        out += [
            f"   agreement: training {statement.training.share_bps} bps, retrieval "
            f"{statement.retrieval.share_bps} bps",
            f"   {statement.split_rule}",
            f"   training sub-pool {statement.training.amount_minor} over "
            f"{statement.training.dataset_count} dataset(s), total weight "
            f"{_fraction_text(statement.training.total_weight)} (weighted units)",
            f"   retrieval sub-pool {statement.retrieval.amount_minor} over "
            f"{statement.retrieval.dataset_count} dataset(s), total weight "
            f"{_fraction_text(statement.retrieval.total_weight)} "
            f"(credits under {statement.retrieval_policy})",
        ]
    out += ["", "3. Your datasets"]
    if line.sources:
        for source in line.sources:
            out += _source_lines(source)
    else:
        out.append("   none this period")
    out.append(f"   accrued this period: {line.accrued_minor}")

    out += [
        "",
        "4. Balance",
        f"   carry-in from earlier periods: {line.carry_in_minor}",
        f"   adjustments: {line.adjustment_minor}",
    ]
    for item in line.adjustments:
        # Quoted as JSON strings: reasons are free text and may hold quotes or line breaks.
        reason = json.dumps(item.reason, ensure_ascii=False)
        reference = json.dumps(item.reference, ensure_ascii=False)
        out.append(f"      {item.amount_minor}: {reason} (reference {reference})")
    out.append(
        f"   balance = {line.accrued_minor} + ({line.carry_in_minor}) + ({line.adjustment_minor})"
        f" = {line.balance_minor}"
    )

    out += ["", "5. Payout"]
    balance_minor = line.balance_minor
    if statement.revenue_minor == 0:
        why = "the period has no revenue, so nothing is payable (no revenue, no obligations)"
    elif balance_minor <= 0:
        why = "the balance is not positive"
    elif balance_minor < statement.min_payout_minor:
        why = f"the balance is below the minimum payout {statement.min_payout_minor}"
    else:
        why = f"the balance reaches the minimum payout {statement.min_payout_minor}"
    out += [
        f"   {why}",
        f"   payable {line.payable_minor}, carried forward {line.carried_forward_minor}",
    ]
    return "\n".join(out) + "\n"
