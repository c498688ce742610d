"""Models (or RAG applications) of model teams, and their versioned royalty agreements.

An agreement version fixes the royalty rate (bps of revenue), the split of the royalty pool
between training and retrieval use (bps to training; retrieval gets the rest), the minimum
payout per payee (smaller amounts carry forward), the currency with its ISO 4217 minor-unit
exponent, the unit training usage is counted in and the retrieval weighting policy.
Versions are append-only: a change is version n+1 with an ``effective_from`` no earlier than
version n's. A period uses the version in force at its start (:func:`agreement_in_force`).
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from sqlalchemy import func, select
from sqlmodel import Session

from ledger.currencies import currency_exponent, normalize_currency
from ledger.errors import ErrorCollector, Forbidden, NotFound, ValidationFailed
from ledger.models.models import Agreement, Model
from ledger.owners.service import check_no_nul, get_account
from ledger.types import AMOUNT_MINOR_MAX, BPS_DENOMINATOR

MODEL_KINDS = ("model", "rag_app")
TRAINING_UNITS = ("tokens", "samples", "bytes")
RETRIEVAL_POLICIES = ("uniform/v1", "rank-discount/v1")
NAME_MAX = 200


def create_model(
    session: Session,
    *,
    account_id: uuid.UUID,
    name: str,
    description: str = "",
    kind: str = "model",
) -> Model:
    """Register a model (``kind`` 'model') or RAG application ('rag_app') for a model team.

    Raises NotFound for an unknown account, Forbidden (``not_model_team``) when the account
    is not an active model team, ValidationFailed for a bad name or kind.
    """
    errors = ErrorCollector()
    clean_name = name.strip() if isinstance(name, str) else ""
    if not clean_name or len(clean_name) > NAME_MAX:
        errors.add("name", "name_invalid", f"name must have 1 to {NAME_MAX} characters")
    if kind not in MODEL_KINDS:
        errors.add("kind", "kind_invalid", f"kind {kind!r} must be one of {', '.join(MODEL_KINDS)}")
    if not isinstance(description, str):
        errors.add("description", "description_invalid", "description must be a string")
    check_no_nul(errors, "name", clean_name)
    check_no_nul(errors, "description", description)
    errors.raise_if_any()
    account = get_account(session, account_id)
    if account.role != "model_team" or account.disabled_at is not None:
        raise Forbidden(
            f"account {account_id} is {account.role}; models belong to active model-team accounts",
            field="account_id",
            code="not_model_team",
        )
    model = Model(account_id=account_id, name=clean_name, description=description, kind=kind)
    session.add(model)
    session.flush()
    return model


def get_model(session: Session, model_id: uuid.UUID, *, for_update: bool = False) -> Model:
    """The model, or NotFound (``model_not_found``)."""
    model = session.get(Model, model_id, with_for_update=for_update, populate_existing=for_update)
    if model is None:
        raise NotFound(f"model {model_id} does not exist", field="model_id", code="model_not_found")
    return model


def _bps(errors: ErrorCollector, field: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= BPS_DENOMINATOR:
        errors.add(
            field,
            f"{field}_invalid",
            f"{field} must be a whole number of basis points from 0 to 10,000, got {value!r}",
        )


def create_agreement(
    session: Session,
    model_id: uuid.UUID,
    *,
    royalty_rate_bps: int,
    training_share_bps: int,
    min_payout_minor: int,
    currency: str,
    effective_from: datetime,
    training_unit: str = "tokens",
    retrieval_policy: str = "uniform/v1",
) -> Agreement:
    """Add the model's next agreement version (1 for the first), in force from ``effective_from``.

    ``min_payout_minor`` is in minor units of ``currency`` (an ISO 4217 code in use; its
    exponent is stored). ``effective_from`` must not be before the previous version's
    (``effective_from_backwards``); an equal one replaces it from that moment on.
    Raises ValidationFailed listing every invalid field.
    """
    errors = ErrorCollector()
    _bps(errors, "royalty_rate_bps", royalty_rate_bps)
    _bps(errors, "training_share_bps", training_share_bps)
    if (
        isinstance(min_payout_minor, bool)
        or not isinstance(min_payout_minor, int)
        or not 0 <= min_payout_minor <= AMOUNT_MINOR_MAX
    ):
        errors.add(
            "min_payout_minor",
            "min_payout_minor_invalid",
            f"min_payout_minor must be a whole number of minor units from 0 to {AMOUNT_MINOR_MAX}, "
            f"got {min_payout_minor!r}",
        )
    code: str | None = None
    try:
        code = normalize_currency(currency)
    except ValidationFailed as exc:
        errors.errors.extend(exc.errors)
    if training_unit not in TRAINING_UNITS:
        errors.add(
            "training_unit",
            "training_unit_invalid",
            f"training_unit {training_unit!r} must be one of {', '.join(TRAINING_UNITS)}",
        )
    if retrieval_policy not in RETRIEVAL_POLICIES:
        errors.add(
            "retrieval_policy",
            "retrieval_policy_invalid",
            f"retrieval_policy {retrieval_policy!r} must be one of {', '.join(RETRIEVAL_POLICIES)}",
        )
    start: datetime | None = None
    if not isinstance(effective_from, datetime) or effective_from.utcoffset() is None:
        errors.add(
            "effective_from",
            "datetime_naive",
            "effective_from must be a date-time with a time zone (UTC …Z or an offset)",
        )
    else:
        start = effective_from.astimezone(UTC)
    errors.raise_if_any("the agreement has invalid fields")
    assert code is not None and start is not None
    # Lock the model so two new versions cannot take the same number.
    get_model(session, model_id, for_update=True)
    latest = session.execute(
        select(Agreement)
        .where(Agreement.model_id == model_id)  # type: ignore[arg-type]
        .order_by(Agreement.version.desc())  # type: ignore[attr-defined]
        .limit(1)
    ).scalar_one_or_none()
    if latest is not None and start < latest.effective_from:
        raise ValidationFailed(
            f"effective_from {start.isoformat()} is before version {latest.version}'s "
            f"({latest.effective_from.isoformat()}); agreement versions cannot go back in time",
            field="effective_from",
            code="effective_from_backwards",
        )
    agreement = Agreement(
        model_id=model_id,
        version=(latest.version + 1) if latest else 1,
        royalty_rate_bps=royalty_rate_bps,
        training_share_bps=training_share_bps,
        min_payout_minor=min_payout_minor,
        currency=code,
        currency_exponent=currency_exponent(code),
        training_unit=training_unit,
        retrieval_policy=retrieval_policy,
        effective_from=start,
    )
    session.add(agreement)
    session.flush()
    return agreement


def agreement_in_force(session: Session, model_id: uuid.UUID, at: datetime) -> Agreement:
    """The version in force at ``at``: the highest version whose ``effective_from`` <= ``at``.

    Raises NotFound (``no_agreement_in_force``) when the model has none yet at ``at``, and
    ``model_not_found`` for an unknown model.
    """
    found = session.execute(
        select(Agreement)
        .where(
            Agreement.model_id == model_id,  # type: ignore[arg-type]
            Agreement.effective_from <= at,  # type: ignore[arg-type]
        )
        .order_by(Agreement.version.desc())  # type: ignore[attr-defined]
        .limit(1)
    ).scalar_one_or_none()
    if found is not None:
        return found
    get_model(session, model_id)
    first = session.execute(
        select(func.min(Agreement.effective_from)).where(
            Agreement.model_id == model_id  # type: ignore[arg-type]
        )
    ).scalar_one_or_none()
    hint = (
        f"its first agreement starts at {first.isoformat()}"
        if first
        else "it has no agreement yet; create one"
    )
    raise NotFound(
        f"model {model_id} has no agreement in force at {at.isoformat()}: {hint}",
        field="model_id",
        code="no_agreement_in_force",
    )
