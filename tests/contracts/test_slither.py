"""The Slither gate (scripts/slither.py): triage matching, the exit rule, and that the committed
triage database is fully decided and rendered in docs/SECURITY.md.

Slither itself runs in `make slither` (before the tests); these checks need neither Slither nor
a compiler.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "slither.py"


@pytest.fixture(scope="module")
def gate() -> ModuleType:
    spec = importlib.util.spec_from_file_location("usefirst_slither_gate", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while defining
    spec.loader.exec_module(module)
    return module


def result(check: str, impact: str, description: str, id_: str = "x") -> dict[str, Any]:
    return {
        "check": check,
        "impact": impact,
        "confidence": "Medium",
        "description": description,
        "first_markdown_element": "contracts/src/A.sol#L1",
        "id": id_,
    }


def entry(check: str, description: str, decision: str, reason: str) -> dict[str, Any]:
    return {
        "id": "old",
        "check": check,
        "impact": "Medium",
        "description": description,
        "usefirst_triage": {"decision": decision, "reason": reason},
    }


LOCAL = "A.f(uint256).x (contracts/src/A.sol#{line}) is a local variable never initialized\n"


def test_a_triaged_finding_still_matches_after_its_lines_moved(gate: ModuleType) -> None:
    db = [entry("uninitialized-local", LOCAL.format(line=12), "false-positive", "zero on purpose")]
    moved = gate.Finding.from_result(
        result("uninitialized-local", "Medium", LOCAL.format(line=40), id_="new-id")
    )
    report = gate.triage([moved], db)
    assert [f for f, _ in report.triaged] == [moved]
    assert report.new == [] and report.failing == [] and report.gone == []
    # --update-db refreshes the id and line numbers and keeps the decision.
    (updated,) = gate.db_entries(report, db)
    assert updated["id"] == "new-id" and "#40" in updated["description"]
    assert updated["usefirst_triage"]["decision"] == "false-positive"


def test_only_new_medium_or_high_findings_fail(gate: ModuleType) -> None:
    findings = [
        gate.Finding.from_result(result("reentrancy-eth", "High", "B.g() reenters\n")),
        gate.Finding.from_result(result("incorrect-equality", "Medium", "B.h() equals\n")),
        gate.Finding.from_result(result("timestamp", "Low", "B.k() uses timestamp\n")),
        gate.Finding.from_result(result("assembly", "Informational", "B.m() uses assembly\n")),
    ]
    report = gate.triage(findings, [])
    assert len(report.new) == 4
    assert [f.check for f in report.failing] == ["reentrancy-eth", "incorrect-equality"]


@pytest.mark.parametrize(
    ("decision", "reason"),
    [("untriaged", ""), ("accepted", ""), ("accepted", "   "), ("fine", "looks fine")],
)
def test_an_entry_without_a_valid_decision_and_reason_does_not_triage(
    gate: ModuleType, decision: str, reason: str
) -> None:
    db = [entry("uninitialized-local", LOCAL.format(line=1), decision, reason)]
    finding = gate.Finding.from_result(
        result("uninitialized-local", "Medium", LOCAL.format(line=1))
    )
    report = gate.triage([finding], db)
    assert report.failing == [finding]


def test_findings_that_went_away_are_reported_not_fatal(gate: ModuleType) -> None:
    db = [entry("uninitialized-local", LOCAL.format(line=1), "false-positive", "zero on purpose")]
    report = gate.triage([], db)
    assert report.gone == db and report.failing == []


def test_the_committed_triage_database_is_fully_decided(gate: ModuleType) -> None:
    db = gate.load_db()
    assert db, "slither.db.json is empty: run scripts/slither.py --update-db"
    for item in db:
        decision = gate.entry_decision(item)
        assert decision.triaged, f"untriaged: {item['check']} {item['description']}"
        assert item["id"] and item["description"]  # what Slither itself reads


def test_docs_security_shows_the_triage_database(gate: ModuleType) -> None:
    assert gate.doc_table() == gate.markdown_table(gate.load_db()), (
        "docs/SECURITY.md is out of date with slither.db.json: run scripts/slither.py --write-doc"
    )
