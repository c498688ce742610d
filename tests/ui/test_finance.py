"""Finance in the browser: close and anchor a period on the real worker and chain and
watch the job, export the settlement (XLSX, CSV) and the journal, resolve a dispute."""

from __future__ import annotations

import csv
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import openpyxl
import pytest
from playwright.sync_api import Page, expect
from sqlalchemy import Engine
from sqlmodel import Session

from contracts.client import UsefirstChain
from ledger.datasets.models import Dataset
from ledger.periods.models import Period
from ledger.periods.service import period_for
from ledger.revenue.service import record_revenue
from ledger.settings import Settings
from ledger.settlements.service import reconcile
from ledger.usage.service import ingest_retrievals, ingest_training
from tests.api.conftest import ApiPrincipal
from tests.ledger.factories_rights import make_dataset, make_model_with_agreement, random_files
from tests.ui.helpers import (
    focus_is_visible,
    retrieval_event,
    screenshot,
    sign_in,
    tab_until,
    training_event,
)

ANCHOR_TIMEOUT_MS = 90_000


@dataclass(frozen=True)
class OpenPeriod:
    model_id: uuid.UUID
    model_name: str
    period_id: uuid.UUID
    period_key: str


def _open_period_with_usage(db_engine: Engine) -> OpenPeriod:
    """The current month of a fresh model: training and retrieval use of two owners'
    datasets and 12,345.67 EUR of revenue."""
    at = datetime.now(UTC) - timedelta(hours=1)
    with Session(db_engine, expire_on_commit=False) as session:
        model, _ = make_model_with_agreement(session)
        first, second = (make_dataset(session, confirm=True) for _ in range(2))
        training = [
            training_event(first.id, at, quantity=3_000),
            training_event(second.id, at, quantity=1_000),
        ]
        assert ingest_training(session, model.id, training).accepted == 2
        assert ingest_retrievals(session, model.id, [retrieval_event(second.id, at)]).accepted == 1
        record_revenue(session, model.id, 1_234_567, "EUR", f"inv-{uuid.uuid4().hex[:8]}", at)
        period = period_for(session, model.id, at)
        session.commit()
        return OpenPeriod(model.id, model.name, period.id, period.key)


def _dispute(db_engine: Engine) -> tuple[uuid.UUID, uuid.UUID]:
    """Two owner sets register the same files: the second dataset is disputed."""
    with Session(db_engine, expire_on_commit=False) as session:
        files = random_files()
        make_dataset(session, files=files, confirm=True)
        disputed = make_dataset(session, files=files)
        session.commit()
        assert disputed.status == "disputed"
        from ledger.datasets.service import open_disputes

        return open_disputes(session, disputed.id)[0].id, disputed.id


@pytest.fixture
def finance(principal: Callable[..., ApiPrincipal]) -> ApiPrincipal:
    return principal("finance")


def test_finance_closes_and_anchors_a_period_and_exports_it(
    page: Page,
    finance: ApiPrincipal,
    db_engine: Engine,
    services: Settings,
    chain: UsefirstChain,
    tmp_path: Path,
) -> None:
    period = _open_period_with_usage(db_engine)
    sign_in(page, finance.key)
    expect(page).to_have_url(re.compile(r"/ui/finance$"))
    screenshot(page, "finance-dashboard")
    page.get_by_role("link", name=re.compile(re.escape(period.model_name))).first.click()
    row = page.locator(f"tr[data-period-id='{period.period_id}']")
    expect(row).to_contain_text("open")

    # Keyboard only: Tab to the row's main action and press it.
    tab_until(page, lambda p: "Close & anchor" in p.evaluate("document.activeElement.innerText"))
    assert focus_is_visible(page)
    page.keyboard.press("Enter")
    expect(page).to_have_url(re.compile(r"/ui/finance/jobs/[0-9a-f]+$"))
    progress = page.locator("[data-job-poll]")
    # The page polls the job: the worker closes, then anchors on chain.
    expect(progress.locator("[data-field=period_state]")).to_have_text(
        "anchored", timeout=ANCHOR_TIMEOUT_MS
    )
    expect(progress).to_have_attribute("data-finished", "succeeded", timeout=ANCHOR_TIMEOUT_MS)
    expect(progress.locator("[data-field=settlement_state]")).to_have_text("confirmed")
    screenshot(page, "finance-job-anchored")

    reconcile(chain=chain, settings=chain.settings)
    page.goto(f"/ui/finance?model_id={period.model_id}")
    row = page.locator(f"tr[data-period-id='{period.period_id}']")
    expect(row).to_contain_text("anchored")
    expect(page.get_by_role("table", name=re.compile("Latest reconciliation runs"))).to_be_visible()
    screenshot(page, "finance-period-anchored")

    with Session(db_engine) as session:
        closed = session.get(Period, period.period_id)
        assert closed is not None and closed.pool_minor == 123_456
    with page.expect_download() as xlsx_info:
        row.get_by_role("link", name="XLSX").click()
    assert xlsx_info.value.suggested_filename.endswith(".xlsx")
    saved = tmp_path / xlsx_info.value.suggested_filename
    xlsx_info.value.save_as(saved)
    workbook = openpyxl.load_workbook(saved, read_only=True)
    assert workbook.sheetnames[0] == "Statements"
    summary = [cell for r in workbook["Statements"].iter_rows(values_only=True) for cell in r]
    assert period.model_name in summary

    with page.expect_download() as csv_info:
        row.get_by_role("link", name="CSV", exact=True).click()
    with open(csv_info.value.path(), newline="", encoding="utf-8") as handle:
        lines = list(csv.DictReader(handle))
    assert {line["period_id"] for line in lines} == {str(period.period_id)}
    assert sum(int(line["accrued_minor"]) for line in lines) == 123_456  # conservation
    assert {line["settlement_state"] for line in lines} == {"confirmed"}

    today = datetime.now(UTC).date().isoformat()
    page.get_by_label("From", exact=True).fill(today)
    page.get_by_label("To", exact=True).fill(today)
    with page.expect_download() as journal_info:
        page.get_by_role("button", name="Download journal CSV").click()
    with open(journal_info.value.path(), newline="", encoding="utf-8") as handle:
        journal = list(csv.DictReader(handle))
    assert journal, "the close and the funding posted journal entries today"
    debits = sum(int(r["debit_minor"]) for r in journal)
    assert debits == sum(int(r["credit_minor"]) for r in journal)
    assert any(str(period.model_id) in r["account_code"] for r in journal)


def test_finance_resolves_a_dispute(page: Page, finance: ApiPrincipal, db_engine: Engine) -> None:
    dispute_id, dataset_id = _dispute(db_engine)
    sign_in(page, finance.key)
    card = page.locator(f"article[data-dispute-id='{dispute_id}']")
    card.scroll_into_view_if_needed()
    screenshot(page, "finance-disputes")
    card.get_by_label("Rejected").check()
    card.get_by_label("Why (kept in the audit trail)").fill("the earlier registration holds")
    card.get_by_role("button", name="Resolve dispute").click()
    expect(page).to_have_url(re.compile(r"/ui/finance#disputes$"))
    expect(page.locator(f"article[data-dispute-id='{dispute_id}']")).to_have_count(0)
    with Session(db_engine) as session:
        dataset = session.get(Dataset, dataset_id)
        assert dataset is not None and dataset.status == "rejected"


def test_a_stale_form_cannot_close_twice(
    page: Page, finance: ApiPrincipal, db_engine: Engine
) -> None:
    """Closing an already closed period from an old page says so instead of failing."""
    period = _open_period_with_usage(db_engine)
    with Session(db_engine) as session:
        from ledger.periods.close import close_period

        close_period(session, period.period_id)
        session.commit()
    sign_in(page, finance.key)
    token = page.locator("input[name=csrf_token]").first.get_attribute("value") or ""
    response = page.request.post(
        f"/ui/finance/periods/{period.period_id}/close", form={"csrf_token": token, "anchor": "no"}
    )
    assert response.status == 409
    assert "already closed" in response.text()
