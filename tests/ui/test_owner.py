"""An owner's day in the browser: datasets and their status, usage charts, earnings with
their derivation, the claim (proof and contract call) and the PDF statement; and never
another owner's data."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

import pytest
from playwright.sync_api import Page, expect
from sqlalchemy import Engine
from sqlmodel import Session

from contracts.client import UsefirstChain
from ledger.datasets.models import Dataset
from ledger.rights.service import submit_revocation
from ledger.rights.signatures import NoChain
from ledger.settlements.service import anchor_period
from tests.api.conftest import ApiPrincipal
from tests.ledger.factories_rights import (
    KeyedOwner,
    confirm_all,
    make_dataset,
    make_owner,
    random_files,
    revocation_signature,
)
from tests.ledger.factories_settlement import ClosedPeriod, closed_period
from tests.ui.helpers import focus_is_visible, screenshot, sign_in, tab_until


@dataclass(frozen=True)
class Owners:
    alice: ApiPrincipal
    bob: ApiPrincipal
    alice_datasets: dict[str, str]  # status → dataset name
    bob_dataset: str
    period: ClosedPeriod


def _keyed(session: Session, who: ApiPrincipal) -> KeyedOwner:
    from ledger.owners.service import get_owner_by_address

    owner = get_owner_by_address(session, who.address)
    assert owner is not None
    return KeyedOwner(owner, who.wallets[0])


@pytest.fixture
def owners(
    principal: Callable[..., ApiPrincipal], db_engine: Engine, chain: UsefirstChain
) -> Owners:
    alice, bob = principal("owner"), principal("owner")
    with Session(db_engine, expire_on_commit=False) as session:
        a, b = _keyed(session, alice), _keyed(session, bob)
        confirmed = make_dataset(session, owners=[a], confirm=True)
        pending = make_dataset(session, owners=[a, make_owner(session)])
        confirm_all(session, pending, [a])  # the other co-owner has not signed yet
        revoked = make_dataset(session, owners=[a], confirm=True)
        signature, nonce = revocation_signature(session, revoked.id, a.key)
        submit_revocation(session, revoked.id, a.address, signature, nonce, chain=NoChain())
        shared_files = random_files()
        bobs = make_dataset(session, owners=[b], files=shared_files, confirm=True)
        disputed = make_dataset(session, owners=[a], files=shared_files)
        session.commit()
        names = {
            status: session.get(Dataset, d.id).name  # type: ignore[union-attr]
            for status, d in (
                ("confirmed", confirmed),
                ("pending signatures", pending),
                ("revoked", revoked),
                ("disputed", disputed),
            )
        }
        assert session.get(Dataset, disputed.id).status == "disputed"  # type: ignore[union-attr]
        bob_name = bobs.name
    # Both are paid in one closed period (70 % / 30 % of the training sub-pool), anchored.
    period = closed_period(db_engine, {alice.address: 700, bob.address: 300})
    anchor_period(period.period_id, chain=chain, settings=chain.settings)
    return Owners(alice, bob, names, bob_name, period)


def test_owner_sees_own_datasets_usage_and_earnings_only(page: Page, owners: Owners) -> None:
    sign_in(page, owners.alice.key)
    expect(page).to_have_url(re.compile(r"/ui/owner$"))
    datasets = page.get_by_role("table", name=re.compile("Datasets naming one of your"))
    for status, name in owners.alice_datasets.items():
        row = datasets.get_by_role("row").filter(has_text=name)
        expect(row).to_contain_text(status)
        expect(row).to_contain_text("train + rag")
    expect(datasets.get_by_role("row").filter(has_text="pending signatures")).to_contain_text(
        "waiting for 1 of 2"
    )
    # The paid dataset's usage: 700 training tokens in 2026-03, drawn and tabulated.
    chart = page.get_by_role("img", name=re.compile("Training tokens per period")).first
    expect(chart).to_be_visible()
    expect(page.locator("svg rect.bar title").first).to_contain_text("2026-03: 700 tokens")
    earnings = page.get_by_role("table", name=re.compile("Your statement lines"))
    line = earnings.get_by_role("row").filter(has_text="2026-03")
    payable = owners.period.payable[owners.alice.address]
    expect(line).to_contain_text(f"{payable // 100:,}.{payable % 100:02d} EUR")
    expect(line).to_contain_text("claimable")
    screenshot(page, "owner-dashboard")

    content = page.content()
    assert owners.bob_dataset not in content
    assert owners.bob.address not in content
    assert owners.bob.address.lower() not in content.lower()


def test_owner_reads_the_derivation_claims_and_downloads_the_pdf(
    page: Page, owners: Owners
) -> None:
    sign_in(page, owners.alice.key)
    page.get_by_role("link", name=re.compile("Derivation, proof and PDF")).first.click()
    expect(page.get_by_role("heading", level=1)).to_contain_text("2026-03")
    explain = page.get_by_label("Derivation of your line")
    expect(explain).to_contain_text(f"Payee {owners.alice.address}")
    expect(explain).to_contain_text("5. Payout")
    # The claim: the exact call, with the settlement id, account, amount and proof.
    call = page.locator("#claim-call")
    expect(call).to_contain_text("claim(0x")
    expect(call).to_contain_text(owners.alice.address)
    expect(page.locator("#arg-account")).to_have_text(owners.alice.address)
    expect(page.locator("#claim-command")).to_contain_text("usefirst claim --statement")
    expect(page.locator("#arg-proof")).to_contain_text("0x")
    screenshot(page, "owner-statement-line")
    assert owners.bob.address not in page.content()

    # The main action is reachable with the keyboard, and focus shows.
    seen = tab_until(page, lambda p: p.evaluate("document.activeElement.id") == "download-pdf")
    assert seen[0].startswith("A Skip to main content")
    assert focus_is_visible(page)
    with page.expect_download() as download_info:
        page.keyboard.press("Enter")
    download = download_info.value
    assert download.suggested_filename.endswith(".pdf")
    with open(download.path(), "rb") as pdf:
        assert pdf.read(5) == b"%PDF-"


def test_another_owners_line_is_not_found(page: Page, owners: Owners) -> None:
    sign_in(page, owners.alice.key)
    path = f"/ui/owner/lines/{owners.period.period_id}/{owners.bob.address}"
    for url in (path, path + "/statement.pdf"):
        response = page.goto(url)
        assert response is not None and response.status == 404
    assert str(owners.period.payable[owners.bob.address]) not in page.content()
