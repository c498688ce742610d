"""The demo in reduced size against the test services (PostgreSQL, anvil, the Celery
worker), and the invariants of the statement it settles: the lines add up to the pool,
the chain's root is the ledger's, every owner claimed, reconciliation is clean and the
train-only dataset's retrieval sits in quarantine."""

from __future__ import annotations

import io
import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from rich.console import Console

from api.demo import DemoResult, run_demo
from ledger.settings import Settings, reset_settings_cache

QUESTIONS = 40


@pytest.fixture
def demo_environment() -> Iterator[None]:
    saved = os.environ.get("USEFIRST_CHAIN_CHALLENGE_WINDOW_S")
    yield
    if saved is None:
        os.environ.pop("USEFIRST_CHAIN_CHALLENGE_WINDOW_S", None)
    else:
        os.environ["USEFIRST_CHAIN_CHALLENGE_WINDOW_S"] = saved
    reset_settings_cache()


def test_the_demo_settles_a_statement_that_keeps_the_invariants(
    services: Settings, demo_environment: None, tmp_path: Path
) -> None:
    output = io.StringIO()
    console = Console(file=output, width=120)
    result: DemoResult = run_demo(console, question_count=QUESTIONS, output=tmp_path / "out")
    printed = output.getvalue()

    statement = json.loads((tmp_path / "out" / "statement.json").read_text())
    pool = int(statement["pool_minor"])
    assert pool == result.pool_minor == 1_250_000 * 1_000 // 10_000
    assert sum(result.lines.values()) == pool  # conservation
    assert len(result.lines) == 3  # three owners (one dataset co-owned 60/40)
    assert result.chain_root == result.statement_root  # chain = ledger
    assert result.claimed and all(result.claimed.values())
    assert set(result.claimed) == set(result.lines)
    assert result.reconcile_findings == []
    assert result.quarantine_reasons == ["use_not_allowed"]
    assert 0 < result.retrievals <= QUESTIONS
    for path in result.exports:
        assert path.is_file() and path.stat().st_size > 0, path
    assert {p.suffix for p in result.exports} == {".json", ".csv", ".xlsx", ".pdf"}
    assert "usefirst verify --account" in printed
    assert "Settlement of period" in printed
