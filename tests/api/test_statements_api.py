"""Owners read their statement lines and claim data; finance reads everyone's."""

from __future__ import annotations

import json
import secrets
import uuid
from collections.abc import Callable
from datetime import UTC, datetime

from fastapi.testclient import TestClient
from sqlalchemy import Engine
from sqlmodel import Session

from contracts.merkle import verify
from ledger.settlements.models import Settlement, SettlementClaim
from ledger.settlements.tree import build_tree
from tests.api.conftest import ApiPrincipal
from tests.api.test_accounts_api import _problem
from tests.ledger.factories_settlement import ClosedPeriod, closed_period

Make = Callable[..., ApiPrincipal]
UNITS_PER_MINOR = 10**16  # an 18-decimal token paying EUR cents


def _settle(engine: Engine, period: ClosedPeriod, state: str = "confirmed") -> Settlement:
    """The settlement the anchoring service would store for ``period`` (no chain needed)."""
    built = build_tree(list(period.lines), UNITS_PER_MINOR)
    assert built.tree is not None
    with Session(engine, expire_on_commit=False) as session:
        settlement = Settlement(
            period_id=period.period_id,
            chain_id=31337,
            contract_address="0x" + secrets.token_hex(20),
            token_address="0x" + secrets.token_hex(20),
            settlement_key="0x" + secrets.token_hex(32),
            merkle_root=built.tree.root_hex,
            statement_hash="0x" + secrets.token_hex(32),
            total_units=built.total_units,
            units_per_minor=UNITS_PER_MINOR,
            line_count=len(built.lines),
            tree_dump=built.tree.dump(),
            state=state,
        )
        session.add(settlement)
        session.commit()
        return settlement


def test_owners_read_their_own_lines_and_finance_reads_all(
    client: TestClient, principal: Make, db_engine: Engine
) -> None:
    alice, bob = principal("owner"), principal("owner")
    period = closed_period(db_engine, {alice.address: 3, bob.address: 1})
    payable = period.payable
    assert payable[alice.address] + payable[bob.address] == 123_456  # 10 % of 1,234,567

    mine = client.get("/v1/statements", headers=alice.headers)
    assert mine.status_code == 200, mine.text
    lines = [line for line in mine.json()["items"] if line["period_id"] == str(period.period_id)]
    assert len(lines) == 1
    line = lines[0]
    assert line["address"] == alice.address
    assert (line["currency"], line["period"], line["period_state"]) == ("EUR", "2026-03", "closed")
    assert line["payable_minor"] == payable[alice.address]
    assert line["accrued_minor"] + line["carry_in_minor"] + line["adjustment_minor"] == (
        line["payable_minor"] + line["carried_forward_minor"]
    )
    assert line["breakdown"] and line["breakdown"][0]["kind"] == "training"
    assert bob.address not in mine.text

    finance = principal("finance")
    bobs = client.get(
        "/v1/statements",
        params={"address": bob.address.lower(), "model_id": str(period.model_id)},
        headers=finance.headers,
    ).json()
    assert [(x["address"], x["payable_minor"]) for x in bobs["items"]] == [
        (bob.address, payable[bob.address])
    ]
    everyone = client.get(
        "/v1/statements", params={"model_id": str(period.model_id)}, headers=finance.headers
    ).json()
    assert {x["address"] for x in everyone["items"]} == {alice.address, bob.address}

    _problem(
        client.get("/v1/statements", params={"address": bob.address}, headers=alice.headers),
        404,
        "statement_line_not_found",
        "address",
    )
    for role in ("model_team", "admin"):
        _problem(client.get("/v1/statements", headers=principal(role).headers), 403, "forbidden")


def test_one_line_is_explained_step_by_step(
    client: TestClient, principal: Make, db_engine: Engine
) -> None:
    alice, bob = principal("owner"), principal("owner")
    period = closed_period(db_engine, {alice.address: 2, bob.address: 1})
    detail = client.get(f"/v1/statements/{period.period_id}/{alice.address}", headers=alice.headers)
    assert detail.status_code == 200, detail.text
    body = detail.json()
    assert body["payable_minor"] == period.payable[alice.address]
    assert body["explain"].startswith(f"Payee {alice.address}")
    assert "revenue 1234567" in body["explain"]
    _problem(
        client.get(f"/v1/statements/{period.period_id}/{bob.address}", headers=alice.headers),
        404,
        "statement_line_not_found",
    )
    _problem(
        client.get(f"/v1/statements/{uuid.uuid4()}/{alice.address}", headers=alice.headers),
        404,
        "statement_line_not_found",
    )
    _problem(
        client.get(f"/v1/statements/{period.period_id}/0x1234", headers=alice.headers),
        422,
        "address_invalid",
        "address",
    )


def test_claim_data_carries_a_proof_that_verifies_against_the_root(
    client: TestClient, principal: Make, db_engine: Engine
) -> None:
    alice, bob, carol = principal("owner"), principal("owner"), principal("owner")
    # A minimum payout of 100 EUR carries carol's small balance forward: no leaf for her.
    period = closed_period(
        db_engine, {alice.address: 600, bob.address: 400, carol.address: 1}, min_payout_minor=10_000
    )
    assert carol.address not in period.payable
    url = f"/v1/claims/{period.period_id}/{alice.address}"
    _problem(client.get(url, headers=alice.headers), 404, "settlement_not_prepared", "period_id")

    settlement = _settle(db_engine, period)
    claim = client.get(url, headers=alice.headers)
    assert claim.status_code == 200, claim.text
    data = claim.json()
    amount_units = int(data["leaf"]["amount_units"])
    assert amount_units == period.payable[alice.address] * UNITS_PER_MINOR
    assert data["payable_minor"] == period.payable[alice.address]
    assert data["leaf"]["account"] == alice.address
    assert verify(data["merkle_root"], alice.address, amount_units, data["proof"])
    assert (data["settlement_key"], data["contract_address"], data["chain_id"]) == (
        settlement.settlement_key,
        settlement.contract_address,
        31337,
    )
    assert (data["claimed"], data["claimable"]) == (False, True)

    with Session(db_engine) as session:
        session.add(
            SettlementClaim(
                settlement_id=settlement.id,
                account=alice.address.lower(),
                amount_units=amount_units,
                tx_hash="0x" + secrets.token_hex(32),
                log_index=0,
                block_number=1,
            )
        )
        session.commit()
    claimed = client.get(url, headers=alice.headers).json()
    assert (claimed["claimed"], claimed["claimable"]) == (True, False)
    assert claimed["claim_tx_hash"] is not None

    _problem(
        client.get(f"/v1/claims/{period.period_id}/{carol.address}", headers=carol.headers),
        404,
        "no_claim",
        "address",
    )
    _problem(
        client.get(f"/v1/claims/{period.period_id}/{bob.address}", headers=alice.headers),
        404,
        "statement_line_not_found",
    )
    finance = principal("finance")
    assert (
        client.get(f"/v1/claims/{period.period_id}/{bob.address}", headers=finance.headers).json()[
            "leaf"
        ]["account"]
        == bob.address
    )


def test_statement_list_pages_across_periods(
    client: TestClient, principal: Make, db_engine: Engine
) -> None:
    alice = principal("owner")
    months = [datetime(2026, m, 12, tzinfo=UTC) for m in (1, 2, 3)]
    periods = [closed_period(db_engine, {alice.address: 1}, at=at) for at in months]
    seen: list[tuple[str, str]] = []
    cursor = None
    while True:
        params = {"limit": 1, **({"cursor": cursor} if cursor else {})}
        page = client.get("/v1/statements", params=params, headers=alice.headers).json()
        seen += [(x["period"], x["period_id"]) for x in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert [p for p, _ in seen] == ["2026-03", "2026-02", "2026-01"]
    assert {pid for _, pid in seen} == {str(p.period_id) for p in periods}


def test_owner_cli_shows_statements_and_claim_data(
    client: TestClient, principal: Make, db_engine: Engine
) -> None:
    from typer.testing import CliRunner

    from api.cli import app

    alice = principal("owner")
    period = closed_period(db_engine, {alice.address: 5})
    _settle(db_engine, period)
    runner = CliRunner()
    lines = runner.invoke(app, ["owner", "statements", "--address", alice.address, "--json"])
    assert lines.exit_code == 0, lines.output
    api_lines = client.get("/v1/statements", headers=alice.headers).json()["items"]
    assert json.loads(lines.stdout) == api_lines
    claim = runner.invoke(app, ["owner", "claim", str(period.period_id), alice.address, "--json"])
    assert claim.exit_code == 0, claim.output
    assert (
        json.loads(claim.stdout)
        == client.get(
            f"/v1/claims/{period.period_id}/{alice.address}", headers=alice.headers
        ).json()
    )
