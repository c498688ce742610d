"""Models of model teams and their versioned royalty agreements; currencies."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlmodel import Session

from ledger.currencies import active_currencies, currency_exponent, normalize_currency
from ledger.errors import Forbidden, NotFound, ValidationFailed
from ledger.models.service import agreement_in_force, create_agreement, create_model, get_model
from tests.ledger.factories_rights import make_account, make_model_with_agreement, unique

T0 = datetime(2025, 1, 1, tzinfo=UTC)


def _terms(**overrides: object) -> dict[str, object]:
    terms: dict[str, object] = {
        "royalty_rate_bps": 1_500,
        "training_share_bps": 7_000,
        "min_payout_minor": 500,
        "currency": "EUR",
        "effective_from": T0,
    }
    terms.update(overrides)
    return terms


def test_a_model_belongs_to_a_model_team(db_session: Session) -> None:
    team = make_account(db_session, "model_team")
    model = create_model(db_session, account_id=team.id, name=" Chat 1 ", kind="rag_app")
    assert (model.account_id, model.name, model.kind) == (team.id, "Chat 1", "rag_app")
    assert get_model(db_session, model.id) is model

    owner_account = make_account(db_session, "owner")
    with pytest.raises(Forbidden) as caught:
        create_model(db_session, account_id=owner_account.id, name="m")
    assert caught.value.code == "not_model_team"
    with pytest.raises(NotFound) as caught_nf:
        create_model(db_session, account_id=uuid.uuid4(), name="m")
    assert caught_nf.value.code == "account_not_found"
    with pytest.raises(ValidationFailed) as caught_v:
        create_model(db_session, account_id=team.id, name="", kind="agent")
    assert {e.code for e in caught_v.value.errors} == {"name_invalid", "kind_invalid"}
    with pytest.raises(NotFound) as caught_nf:
        get_model(db_session, uuid.uuid4())
    assert caught_nf.value.code == "model_not_found"


def test_agreement_fields_are_validated_together(db_session: Session) -> None:
    model, _ = make_model_with_agreement(db_session)
    with pytest.raises(ValidationFailed) as caught:
        create_agreement(
            db_session,
            model.id,
            **_terms(
                royalty_rate_bps=10_001,
                training_share_bps=-1,
                min_payout_minor=-5,
                currency="EURO",
                effective_from=datetime(2025, 1, 1),
                training_unit="words",
                retrieval_policy="rank/v9",
            ),
        )
    by_field = {e.field: e.code for e in caught.value.errors}
    assert by_field == {
        "royalty_rate_bps": "royalty_rate_bps_invalid",
        "training_share_bps": "training_share_bps_invalid",
        "min_payout_minor": "min_payout_minor_invalid",
        "currency": "currency_invalid",
        "effective_from": "datetime_naive",
        "training_unit": "training_unit_invalid",
        "retrieval_policy": "retrieval_policy_invalid",
    }
    assert "(and 6 more)" in caught.value.message


@pytest.mark.parametrize("bps", [0, 10_000])
def test_rate_and_split_accept_their_bounds(db_session: Session, bps: int) -> None:
    model, _ = make_model_with_agreement(db_session)
    agreement = create_agreement(
        db_session,
        model.id,
        **_terms(royalty_rate_bps=bps, training_share_bps=bps),
    )
    assert (agreement.royalty_rate_bps, agreement.training_share_bps) == (bps, bps)


@pytest.mark.parametrize(
    ("code", "exponent"), [("eur", 2), ("JPY", 0), ("BHD", 3), ("usd", 2), ("CLF", 4)]
)
def test_currency_exponent_comes_from_the_cldr_table(
    db_session: Session, code: str, exponent: int
) -> None:
    model, _ = make_model_with_agreement(db_session)
    agreement = create_agreement(db_session, model.id, **_terms(currency=code))
    assert (agreement.currency, agreement.currency_exponent) == (code.upper(), exponent)


@pytest.mark.parametrize("code", ["XXX", "XTS", "DEM", "ABC"])
def test_historic_test_and_made_up_currencies_are_refused(code: str) -> None:
    with pytest.raises(ValidationFailed) as caught:
        normalize_currency(code)
    assert caught.value.code == "currency_unknown"
    assert "in use today" in caught.value.message


@settings(max_examples=50, deadline=None)
@given(code=st.sampled_from(sorted(active_currencies())))
def test_every_active_currency_has_a_small_exponent(code: str) -> None:
    assert currency_exponent(code) in range(5)


def test_versions_increase_and_never_go_back_in_time(db_session: Session) -> None:
    model, v1 = make_model_with_agreement(db_session, effective_from=T0)
    v2 = create_agreement(
        db_session,
        model.id,
        **_terms(effective_from=T0 + timedelta(days=31), royalty_rate_bps=2_000),
    )
    assert (v1.version, v2.version) == (1, 2)
    with pytest.raises(ValidationFailed) as caught:
        create_agreement(db_session, model.id, **_terms(effective_from=T0 + timedelta(days=30)))
    assert caught.value.code == "effective_from_backwards"
    assert "version 2" in caught.value.message
    # The same start replaces version 2 from that moment on (a correction before it applies).
    v3 = create_agreement(
        db_session,
        model.id,
        **_terms(effective_from=v2.effective_from, royalty_rate_bps=2_500),
    )
    assert agreement_in_force(db_session, model.id, v2.effective_from).id == v3.id


def test_agreement_in_force_is_the_latest_started_version(db_session: Session) -> None:
    model, v1 = make_model_with_agreement(db_session, effective_from=T0)
    v2 = create_agreement(db_session, model.id, **_terms(effective_from=T0 + timedelta(days=10)))
    assert agreement_in_force(db_session, model.id, T0).id == v1.id
    assert agreement_in_force(db_session, model.id, T0 + timedelta(days=9, hours=23)).id == v1.id
    assert agreement_in_force(db_session, model.id, T0 + timedelta(days=10)).id == v2.id
    assert agreement_in_force(db_session, model.id, T0 + timedelta(days=900)).id == v2.id
    with pytest.raises(NotFound) as caught:
        agreement_in_force(db_session, model.id, T0 - timedelta(seconds=1))
    assert caught.value.code == "no_agreement_in_force"
    assert "first agreement starts at 2025-01-01" in caught.value.message


def test_agreement_in_force_for_a_model_without_agreements(db_session: Session) -> None:
    team = make_account(db_session, "model_team")
    model = create_model(db_session, account_id=team.id, name=unique("m"))
    with pytest.raises(NotFound) as caught:
        agreement_in_force(db_session, model.id, T0)
    assert caught.value.code == "no_agreement_in_force"
    with pytest.raises(NotFound) as caught:
        agreement_in_force(db_session, uuid.uuid4(), T0)
    assert caught.value.code == "model_not_found"
