"""End to end through the CLI, on a real anvil and Postgres: close → anchor → every payee
verifies and claims with their own key → index → journal and chain agree → reconcile is clean.
Also: owner verification fails for a tampered statement, a publisher killed between
sending the publication and recording its receipt publishes exactly once after a rerun, and a
settlement the guardian revokes in its challenge window is reversed in the journal, anchored
again under a new id and claimed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from eth_account.signers.local import LocalAccount
from sqlalchemy import Engine
from sqlmodel import Session, select
from typer.testing import CliRunner, Result

from api.cli import app
from contracts.client import SettlementStatus, UsefirstChain, settlement_id_for
from ledger.errors import StateError
from ledger.journal import queries as journal_queries
from ledger.periods.close import statement_bytes
from ledger.periods.models import Period
from ledger.settings import Settings, reset_settings_cache
from ledger.settlements import postings
from ledger.settlements.ids import settlement_key_for
from ledger.settlements.models import Settlement, SettlementRevocation
from ledger.settlements.service import anchor_period
from tests.ledger.factories_settlement import ClosedPeriod, closed_period, deploy_chain

REPO_ROOT = Path(__file__).resolve().parents[2]
KEY_VARIABLE = "USEFIRST_E2E_CLAIM_KEY"

Cli = Callable[..., Result]


@pytest.fixture(scope="module")
def e2e_chain(
    chain_settings: Settings, database: Settings, tmp_path_factory: pytest.TempPathFactory
) -> UsefirstChain:
    return deploy_chain(chain_settings, tmp_path_factory.mktemp("e2e"))


REVOCABLE_WINDOW_S = 3_600


@pytest.fixture(scope="module")
def revocable_chain(
    chain_settings: Settings, database: Settings, tmp_path_factory: pytest.TempPathFactory
) -> UsefirstChain:
    """Contracts whose settlements the guardian may revoke for an hour after publication."""
    return deploy_chain(
        chain_settings,
        tmp_path_factory.mktemp("e2e-revocable"),
        challenge_window_s=REVOCABLE_WINDOW_S,
    )


def cli_environment(chain: UsefirstChain) -> dict[str, str]:
    """What a CLI process needs to use this deployment."""
    return {
        "USEFIRST_DATA_DIR": str(chain.settings.data_dir),
        "USEFIRST_CHAIN_CHALLENGE_WINDOW_S": str(chain.deployment.challenge_window_s),
    }


@pytest.fixture
def cli(e2e_chain: UsefirstChain) -> Iterator[Cli]:
    """Run ``usefirst …`` in process against this module's deployment."""
    yield from _cli(e2e_chain)


@pytest.fixture
def revocable_cli(revocable_chain: UsefirstChain) -> Iterator[Cli]:
    """Run ``usefirst …`` in process against the revocable deployment."""
    yield from _cli(revocable_chain)


def _cli(chain: UsefirstChain) -> Iterator[Cli]:
    environment = cli_environment(chain)
    saved = {name: os.environ.get(name) for name in [*environment, KEY_VARIABLE]}
    os.environ.update(environment)
    reset_settings_cache()
    runner = CliRunner()

    def invoke(*args: str, exit_code: int = 0) -> Result:
        result = runner.invoke(app, list(args), catch_exceptions=False)
        assert result.exit_code == exit_code, result.output
        return result

    yield invoke
    for name, value in saved.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
    reset_settings_cache()


def balance(engine: Engine, code: str) -> int:
    with Session(engine) as session:
        return journal_queries.balance(session, code, "EUR")


def export_statement(engine: Engine, closed: ClosedPeriod, path: Path) -> bytes:
    with Session(engine) as session:
        period = session.get(Period, closed.period_id)
        assert period is not None
        document = statement_bytes(session, period)
    path.write_bytes(document)
    return document


def test_close_anchor_every_payee_claims_index_and_reconcile(
    db_engine: Engine,
    e2e_chain: UsefirstChain,
    cli: Cli,
    anvil_accounts: list[LocalAccount],
    tmp_path: Path,
) -> None:
    chain = e2e_chain
    payees = anvil_accounts[3:8]
    weights = dict(zip((str(p.address) for p in payees), (5, 3, 2, 7, 1), strict=True))
    closed = closed_period(db_engine, weights, revenue_minor=987_654)
    assert set(closed.payable) == set(weights)

    anchored = json.loads(cli("anchor", str(closed.period_id), "--json").stdout)
    assert anchored["period_state"] == "anchored"
    scale = 10**4  # 6-decimals token, EUR cents
    assert int(anchored["total_units"]) == sum(closed.payable.values()) * scale

    statement_file = tmp_path / "statement.json"
    cli("period", "statement", str(closed.period_id), "-o", str(statement_file))
    tokens_before = {p.address: chain.token_balance(p.address) for p in payees}
    paid_before = {p.address: balance(db_engine, postings.paid_account(p.address)) for p in payees}

    for payee in payees:
        verified = json.loads(
            cli(
                "verify", "--account", payee.address, "--statement", str(statement_file), "--json"
            ).stdout
        )
        assert verified["ok"] is True
        assert verified["amount_units"] == closed.payable[payee.address] * scale
        assert verified["claimed"] is False
        os.environ[KEY_VARIABLE] = payee.key.hex()
        claimed = cli(
            "claim", "--statement", str(statement_file), "--private-key-env", KEY_VARIABLE, "--json"
        )
        assert payee.key.hex().removeprefix("0x") not in claimed.output
        assert json.loads(claimed.stdout)["tx_hash"]
    again = cli(
        "claim", "--statement", str(statement_file), "--private-key-env", KEY_VARIABLE, "--json"
    )
    assert json.loads(again.stdout)["already_claimed"] is True

    indexed = json.loads(cli("index", "--json").stdout)
    assert indexed["claims_recorded"] == len(payees)
    assert indexed["periods_paid"] == [str(closed.period_id)]

    # Chain and journal agree line by line.
    with Session(db_engine) as session:
        settlement = session.exec(
            select(Settlement).where(Settlement.period_id == closed.period_id)
        ).one()
        period = session.get(Period, closed.period_id)
        assert period is not None and period.state == "paid"
    record = chain.get_settlement(bytes.fromhex(settlement.settlement_key[2:]))
    assert record is not None and record.remaining_units == 0
    assert balance(db_engine, postings.escrow_account(settlement.settlement_key)) == 0
    for payee in payees:
        line_minor = closed.payable[payee.address]
        assert chain.token_balance(payee.address) - tokens_before[payee.address] == (
            line_minor * scale
        )
        paid = balance(db_engine, postings.paid_account(payee.address))
        assert paid_before[payee.address] - paid == line_minor
        assert balance(db_engine, postings.payable_account(payee.address)) == 0

    report = json.loads(cli("reconcile", "--json", "--strict").stdout)
    assert report["settlements_checked"] >= 1
    assert report["findings"] == []


def test_verify_passes_for_a_real_line_and_fails_for_a_tampered_amount(
    db_engine: Engine,
    e2e_chain: UsefirstChain,
    cli: Cli,
    anvil_accounts: list[LocalAccount],
    tmp_path: Path,
) -> None:
    payee, other = anvil_accounts[3].address, anvil_accounts[4].address
    closed = closed_period(db_engine, {payee: 2, other: 3})
    anchor_period(closed.period_id, chain=e2e_chain, settings=e2e_chain.settings)
    genuine = tmp_path / "statement.json"
    document = export_statement(db_engine, closed, genuine)
    explicit = [
        "--settlement",
        f"{closed.model_id}:{closed.period_id}",
        "--contract",
        e2e_chain.settlement.address,
        "--rpc",
        e2e_chain.settings.effective_eth_rpc_url,
    ]

    ok = cli("verify", "--account", payee, "--statement", str(genuine), *explicit)
    assert "OK" in ok.stdout and "FAIL" not in ok.stdout
    key = "0x" + settlement_id_for(closed.model_id, closed.period_id).hex()
    assert key in ok.stdout

    # The owner's own line raised by one cent: still a canonical statement, but not the one
    # anchored on chain.
    data = json.loads(document)
    line = next(x for x in data["lines"] if x["address"] == payee)
    line["payable_minor"] = str(int(line["payable_minor"]) + 1)
    tampered = tmp_path / "tampered.json"
    tampered.write_bytes(
        json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    )
    failed = cli("verify", "--account", payee, "--statement", str(tampered), "--json", exit_code=1)
    result = json.loads(failed.stdout)
    assert result["ok"] is False
    failing = {check["name"] for check in result["checks"] if not check["ok"]}
    assert failing == {"statement hash", "root", "proof", "contract verifyLine"}

    stranger = cli(
        "verify", "--account", anvil_accounts[9].address, "--statement", str(genuine), exit_code=1
    )
    assert "has no payable line" in stranger.stdout


def test_a_publisher_killed_after_sending_publishes_exactly_once(
    db_engine: Engine, e2e_chain: UsefirstChain, cli: Cli
) -> None:
    chain = e2e_chain
    closed = closed_period(
        db_engine, {chain.keys.guardian.address: 1, chain.keys.deployer.address: 4}
    )
    first_new_block = chain.w3.eth.block_number + 1
    settler = chain.keys.settler.address

    crashed = subprocess.run(
        [sys.executable, "-m", "api.cli", "anchor", str(closed.period_id)],
        cwd=REPO_ROOT,
        env={**os.environ, **cli_environment(chain), "USEFIRST_FAULT": "after_publish_sent"},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert crashed.returncode == 137, crashed.stdout + crashed.stderr
    with Session(db_engine) as session:
        settlement = session.exec(
            select(Settlement).where(Settlement.period_id == closed.period_id)
        ).one()
        period = session.get(Period, closed.period_id)
    assert settlement.state == "sent" and settlement.publish_tx_hash is not None
    assert settlement.publish_block is None  # the receipt was never recorded
    assert period is not None and period.state == "closed"

    rerun = json.loads(cli("anchor", str(closed.period_id), "--json").stdout)
    assert rerun["period_state"] == "anchored"
    assert rerun["publish_tx_hash"] == settlement.publish_tx_hash

    key = settlement_id_for(closed.model_id, closed.period_id)
    published = chain.settlement.events.SettlementPublished().get_logs(
        from_block=first_new_block, argument_filters={"settlementId": key}
    )
    assert len(published) == 1
    assert "0x" + bytes(published[0]["transactionHash"]).hex() == settlement.publish_tx_hash
    paid_in = (
        chain.token()
        .events.Transfer()
        .get_logs(from_block=first_new_block, argument_filters={"from": settler})
    )
    assert [(e["args"]["to"], e["args"]["value"]) for e in paid_in] == [
        (chain.settlement.address, int(settlement.total_units))
    ]
    assert balance(db_engine, postings.escrow_account(settlement.settlement_key)) == -(
        int(settlement.total_units) // int(settlement.units_per_minor)
    )


def test_a_revoked_settlement_is_reversed_anchored_again_under_a_new_id_and_claimed(
    db_engine: Engine,
    revocable_chain: UsefirstChain,
    revocable_cli: Cli,
    anvil_accounts: list[LocalAccount],
    tmp_path: Path,
) -> None:
    chain, cli = revocable_chain, revocable_cli
    payees = anvil_accounts[3:6]
    weights = dict(zip((str(p.address) for p in payees), (4, 1, 2), strict=True))
    closed = closed_period(db_engine, weights, revenue_minor=555_555)
    payable_codes = [postings.payable_account(p.address) for p in payees]
    before_anchor = {code: balance(db_engine, code) for code in payable_codes}

    first = json.loads(cli("anchor", str(closed.period_id), "--json").stdout)
    assert first["period_state"] == "anchored"
    first_key = "0x" + settlement_id_for(closed.model_id, closed.period_id).hex()
    assert first["settlement_key"] == first_key
    assert all(balance(db_engine, code) == 0 for code in payable_codes)

    # The guardian revokes inside the challenge window; the indexer follows.
    chain.revoke_settlement(bytes.fromhex(first_key[2:]))
    cli("reconcile", "--strict", exit_code=1)  # revoked_on_chain until indexed
    indexed = json.loads(cli("index", "--json").stdout)
    assert indexed["revocations_applied"] == 1
    assert indexed["periods_revoked"] == [str(closed.period_id)]
    again = json.loads(cli("index", "--json").stdout)  # a second run changes nothing
    assert (again["revocations_applied"], again["periods_revoked"]) == (0, [])

    with Session(db_engine) as session:
        settlement = session.exec(
            select(Settlement).where(Settlement.period_id == closed.period_id)
        ).one()
        period = session.get(Period, closed.period_id)
        recorded = session.exec(
            select(SettlementRevocation).where(SettlementRevocation.settlement_id == settlement.id)
        ).all()
    assert settlement.state == "revoked" and period is not None and period.state == "closed"
    assert len(recorded) == 1 and recorded[0].reversal_transaction_id is not None
    assert {code: balance(db_engine, code) for code in payable_codes} == before_anchor
    assert balance(db_engine, postings.escrow_account(first_key)) == 0
    assert json.loads(cli("reconcile", "--json", "--strict").stdout)["findings"] == []

    # Anchoring as before does not publish again by itself; finance anchors again on purpose:
    # a new settlement id, the same statement.
    with pytest.raises(StateError) as not_asked:
        cli("anchor", str(closed.period_id), "--json")
    assert not_asked.value.code == "settlement_revoked"
    second = json.loads(cli("anchor", str(closed.period_id), "--reanchor", "--json").stdout)
    second_key = "0x" + settlement_key_for(closed.model_id, closed.period_id, 1).hex()
    assert second["period_state"] == "anchored" and second["settlement_key"] == second_key
    assert second["merkle_root"] == first["merkle_root"]
    record = chain.get_settlement(bytes.fromhex(second_key[2:]))
    assert record is not None and record.status == SettlementStatus.PUBLISHED

    # Owners verify and claim from the statement file alone: the newest attempt is found.
    statement_file = tmp_path / "statement.json"
    cli("period", "statement", str(closed.period_id), "-o", str(statement_file))
    verified = json.loads(
        cli(
            "verify", "--account", payees[0].address, "--statement", str(statement_file), "--json"
        ).stdout
    )
    assert verified["ok"] is True and verified["settlement"] == second_key
    # Claims open once the challenge window has passed.
    chain.w3.provider.make_request(
        "evm_increaseTime",  # type: ignore[arg-type]
        [REVOCABLE_WINDOW_S + 1],
    )
    chain.w3.provider.make_request("evm_mine", [])  # type: ignore[arg-type]
    tokens_before = {p.address: chain.token_balance(p.address) for p in payees}
    for payee in payees:
        os.environ[KEY_VARIABLE] = payee.key.hex()
        claimed = cli(
            "claim", "--statement", str(statement_file), "--private-key-env", KEY_VARIABLE, "--json"
        )
        assert json.loads(claimed.stdout)["tx_hash"]

    indexed = json.loads(cli("index", "--json").stdout)
    assert indexed["claims_recorded"] == len(payees)
    assert indexed["periods_paid"] == [str(closed.period_id)]
    scale = 10**4  # 6-decimals token, EUR cents
    for payee in payees:
        line_minor = closed.payable[payee.address]
        assert chain.token_balance(payee.address) - tokens_before[payee.address] == (
            line_minor * scale
        )
    assert balance(db_engine, postings.escrow_account(second_key)) == 0
    assert json.loads(cli("reconcile", "--json", "--strict").stdout)["findings"] == []
