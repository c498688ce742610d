"""A model team's view: its models and agreements, ingestion health and the quarantine
with each rejection's message; never another team's."""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from playwright.sync_api import Page, expect
from sqlalchemy import Engine
from sqlmodel import Session

from ledger.owners.models import Account
from ledger.usage.service import ingest_retrievals, ingest_training
from tests.api.conftest import ApiPrincipal
from tests.ledger.factories_rights import make_dataset, make_model_with_agreement
from tests.ui.helpers import retrieval_event, screenshot, sign_in, training_event


def _team_with_usage(
    db_engine: Engine, team: ApiPrincipal, *, accepted: int, rejected_event_id: str
) -> str:
    """A model of ``team`` with ``accepted`` training events, one retrieval and one event
    of an unknown dataset (quarantined); returns the model's name."""
    at = datetime.now(UTC) - timedelta(hours=1)
    with Session(db_engine, expire_on_commit=False) as session:
        account = session.get(Account, team.account_id)
        model, _ = make_model_with_agreement(session, account=account)
        dataset = make_dataset(session, confirm=True)
        events = [training_event(dataset.id, at) for _ in range(accepted)]
        events.append(training_event(uuid.uuid4(), at, event_id=rejected_event_id))
        result = ingest_training(session, model.id, events)
        assert (result.accepted, result.rejected) == (accepted, 1)
        assert ingest_retrievals(session, model.id, [retrieval_event(dataset.id, at)]).accepted == 1
        session.commit()
        return model.name


def test_team_sees_its_models_health_and_quarantine_only(
    page: Page, principal: Callable[..., ApiPrincipal], db_engine: Engine
) -> None:
    team, other = principal("model_team"), principal("model_team")
    mine = _team_with_usage(db_engine, team, accepted=2, rejected_event_id="mine-bad-1")
    theirs = _team_with_usage(db_engine, other, accepted=1, rejected_event_id="theirs-bad-1")

    sign_in(page, team.key)
    expect(page).to_have_url(re.compile(r"/ui/team$"))
    agreements = page.get_by_role("table", name=f"Royalty agreement versions of {mine}")
    expect(agreements.get_by_role("row").filter(has_text="in force")).to_contain_text("10.00 %")
    month = datetime.now(UTC) - timedelta(hours=1)
    health = page.get_by_role("table", name=re.compile(f"^{re.escape(mine)}: last"))
    row = health.get_by_role("row").filter(has_text=f"{month:%Y-%m}")
    # Training accepted, retrievals accepted, rejected, awaiting review, top reasons.
    counts: list[str | re.Pattern[str]] = ["2", "1", "1", "1", re.compile("unknown_dataset")]
    expect(row.get_by_role("cell")).to_have_text(counts)
    quarantine = page.get_by_role("table", name="Open quarantine items of your models")
    bad = quarantine.get_by_role("row").filter(has_text="mine-bad-1")
    expect(bad).to_contain_text("unknown_dataset")
    expect(bad).to_contain_text("dataset_id")
    expect(bad).to_contain_text(mine)
    screenshot(page, "team-dashboard")

    content = page.content()
    assert theirs not in content
    assert "theirs-bad-1" not in content
