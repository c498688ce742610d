"""The Python SDK against the real server: typed routes and problem+json errors, and the
usage reporters' promises (batching on size and time, retries with the same event ids
while the server is stopped and restarted, nothing double counted, nothing lost
silently). Real app, real PostgreSQL, real HTTP (uvicorn in a subprocess)."""

from __future__ import annotations

import asyncio
import hashlib
import inspect
import json
import logging
import re
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from eth_account import Account as EthAccount
from eth_account.messages import encode_defunct
from fastapi.testclient import TestClient
from sqlalchemy import Engine, text
from sqlmodel import Session

from api.sdk import (
    AsyncUsageReporter,
    AsyncUsefirstClient,
    AuthenticationError,
    Call,
    Chunk,
    ConflictError,
    NotFoundError,
    PermissionDenied,
    QueueFull,
    ReporterClosed,
    Routes,
    UsageReporter,
    UsefirstClient,
    ValidationError,
    replay_dead_letters,
)
from tests.api.conftest import ApiPrincipal
from tests.api.support import REPO_ROOT, LiveServer, Team, free_port, team_with_model

QUANTITY = 1_000
EPOCHS = 2


@pytest.fixture
def world(principal: Callable[..., ApiPrincipal], db_engine: Engine) -> Team:
    """A model team with one model (agreement in tokens) and two datasets confirmed for
    training and retrieval."""
    return team_with_model(principal, db_engine)


@pytest.fixture(scope="module")
def server(database: Any) -> Iterator[LiveServer]:
    with LiveServer() as live:
        yield live


@pytest.fixture
def live(server: LiveServer) -> LiveServer:
    """The module's server, running (a test that stopped it may have left it down)."""
    return server.start()


def counts(db_engine: Engine, model_id: uuid.UUID) -> dict[str, int]:
    """Stored events, Σ training rollup quantity and quarantined events of a model."""
    with Session(db_engine) as session:

        def one(sql: str) -> int:
            return int(session.execute(text(sql), {"m": model_id}).scalar_one() or 0)

        return {
            "training": one("SELECT count(*) FROM usage_training_event WHERE model_id = :m"),
            "retrievals": one("SELECT count(*) FROM usage_retrieval_event WHERE model_id = :m"),
            "trained_units": one(
                "SELECT sum(quantity) FROM usage_rollup WHERE model_id = :m AND kind = 'train'"
            ),
            "rag_hits": one(
                "SELECT sum(quantity) FROM usage_rollup WHERE model_id = :m AND kind = 'rag'"
            ),
            "quarantined": one("SELECT count(*) FROM usage_quarantine WHERE model_id = :m"),
        }


def report_many(reporter: UsageReporter, world: Team, count: int, run_id: str = "run-1") -> None:
    for _ in range(count):
        reporter.report_training(run_id, world.datasets[0], QUANTITY, epochs=EPOCHS)


def wait_until(condition: Callable[[], bool], timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.02)


# --- typed client -------------------------------------------------------------------


def test_typed_routes_and_problem_errors(
    client: TestClient, world: Team, principal: Callable[..., ApiPrincipal], db_engine: Engine
) -> None:
    sdk = UsefirstClient("http://testserver/v1/", world.team.key, http_client=client)
    me = sdk.me()
    assert me.role == "model_team" and me.account_id == world.team.account_id

    events = [
        {
            "event_id": f"t-{i}",
            "run_id": "run-1",
            "dataset_id": world.datasets[0],  # a UUID: the SDK serialises it
            "unit": "tokens",
            "quantity": QUANTITY,
            "epochs": EPOCHS,
            "occurred_at": datetime.now(UTC),
        }
        for i in range(3)
    ]
    first = sdk.report_training(world.model_id, events)
    assert (first.accepted, first.duplicates, first.rejected) == (3, 0, 0)
    again = sdk.report_training(world.model_id, events)
    assert (again.accepted, again.duplicates) == (0, 3)
    retrieval = {
        "event_id": "r-1",
        "query_id": "q-1",
        "occurred_at": datetime.now(UTC),
        "chunks": [{"dataset_id": str(world.datasets[1]), "chunk_id": "c-9", "rank": 1}],
    }
    assert sdk.report_retrievals(world.model_id, [retrieval]).accepted == 1
    assert counts(db_engine, world.model_id)["trained_units"] == 3 * QUANTITY * EPOCHS

    month = datetime.now(UTC).strftime("%Y-%m")
    summary = sdk.usage_summary(world.model_id, month)
    assert summary.accepted_events == {"training": 3, "retrieval": 1}
    periods = sdk.list_periods(model_id=world.model_id)
    assert [p.key for p in periods.items] == [month]
    assert sdk.get_period(periods.items[0].id).state == "open"
    assert [p.id for p in sdk.iter_all(sdk.list_periods, model_id=world.model_id)] == [
        periods.items[0].id
    ]

    revenue = sdk.record_revenue(
        world.model_id,
        amount_minor=12_345,
        currency="EUR",
        external_ref="inv-1",
        occurred_at=datetime.now(UTC),
    )
    assert revenue.amount_minor == 12_345
    assert [r.id for r in sdk.list_revenue(world.model_id).items] == [revenue.id]

    with pytest.raises(NotFoundError) as missing:
        sdk.report_training(uuid.uuid4(), events)
    assert missing.value.status == 404 and missing.value.code == "not_found"
    assert "does not exist" in missing.value.detail and missing.value.request_id

    with pytest.raises(ValidationError) as invalid:
        sdk.usage_summary(world.model_id, "March")
    assert invalid.value.code == "invalid_period"
    assert invalid.value.errors[0]["field"] == "period"

    with pytest.raises(AuthenticationError):
        UsefirstClient("http://testserver", "uf_not_a_key", http_client=client).me()

    with pytest.raises(PermissionDenied):
        sdk.close_period(periods.items[0].id)
    finance = UsefirstClient("http://testserver", principal("finance").key, http_client=client)
    with pytest.raises(ConflictError) as not_closed:
        finance.anchor_period(periods.items[0].id)
    assert not_closed.value.code == "period_not_closed"


def test_the_sdk_covers_every_api_route(api_app: Any) -> None:
    """Every route of the app (but the dashboard and the docs) is a method of both
    clients: a new route fails here until it gets a builder in api/sdk/routes.py."""
    sdk_routes = {(c.method, c.path) for c in map(_sample_call, _builders())}
    missing, checked = [], 0
    for path, operations in api_app.openapi()["paths"].items():
        if path.startswith(("/ui", "/readyz")):
            continue
        pattern = re.compile(re.sub(r"\{[^}]+\}", "[^/]+", path) + "$")
        for method in (m.upper() for m in operations):
            checked += 1
            if not any(m == method and pattern.match(p) for m, p in sdk_routes):
                missing.append((method, path))
    assert checked >= 45, "the app's routes were not found"
    assert not missing, f"routes without an SDK method (add them to Routes): {missing}"
    for name, _builder in _builders_by_name():
        assert callable(getattr(UsefirstClient, name))
        assert inspect.iscoroutinefunction(getattr(AsyncUsefirstClient, name)), name


def _builders_by_name() -> list[tuple[str, Callable[..., Call[Any]]]]:
    return [(n, getattr(Routes, n)) for n in vars(Routes) if not n.startswith("_")]


def _builders() -> list[Callable[..., Call[Any]]]:
    return [builder for _, builder in _builders_by_name()]


def _sample_call(builder: Callable[..., Call[Any]]) -> Call[Any]:
    """The builder called with placeholder arguments (ids become ``X``)."""
    samples: dict[str, Any] = {}
    for name, parameter in inspect.signature(builder).parameters.items():
        if parameter.default is not inspect.Parameter.empty:
            continue
        hint = str(parameter.annotation)
        if name == "event":
            samples[name] = {}
        elif "Sequence" in hint:
            samples[name] = []
        elif "Mapping" in hint:
            samples[name] = {}
        elif "datetime" in hint:
            samples[name] = datetime.now(UTC)
        elif hint == "int":
            samples[name] = 1
        else:
            samples[name] = "X"
    return builder(**samples)


def test_owner_team_and_admin_flows_through_the_sdk(
    client: TestClient, principal: Callable[..., ApiPrincipal], db_engine: Engine
) -> None:
    def sdk_for(key: str) -> UsefirstClient:
        return UsefirstClient("http://testserver", key, http_client=client)

    admin = sdk_for(principal("admin").key)
    account = admin.create_account(role="model_team", display_name="Atlas team")
    issued = admin.issue_api_key(account.id, label="sdk test")
    assert issued.key and [k.id for k in admin.list_api_keys(account.id).items] == [issued.id]
    team = sdk_for(issued.key)

    model = team.create_model(name="atlas-rag", kind="rag_app")
    assert [m.id for m in team.iter_all(team.list_models)] == [model.id]
    agreement = team.create_agreement(
        model.id,
        royalty_rate_bps=1_000,
        training_share_bps=3_000,
        min_payout_minor=0,
        currency="EUR",
        effective_from=datetime(2025, 1, 1, tzinfo=UTC),
    )
    assert team.agreement_in_force(model.id).id == agreement.id

    owner = principal("owner", wallets=0)
    wallet = EthAccount.create()
    owner_sdk = sdk_for(owner.key)
    challenge = owner_sdk.address_challenge(wallet.address)
    proof = wallet.sign_message(encode_defunct(text=challenge.message)).signature.hex()
    linked = owner_sdk.link_address(address=wallet.address, signature=_hex(proof))
    assert linked.address == wallet.address
    dataset = owner_sdk.register_dataset(
        registrant=wallet.address,
        name="sdk corpus",
        licence="CC-BY-4.0",
        allowed_uses=["train", "rag"],
        valid_from=datetime(2025, 1, 1, tzinfo=UTC),
        files=[{"path": "a.txt", "size": 3, "sha256": hashlib.sha256(b"abc").hexdigest()}],
        co_owners=[{"address": wallet.address, "share_bps": 10_000}],
    )
    assert dataset.status == "pending_signatures" and dataset.missing_signers == [wallet.address]
    typed = owner_sdk.typed_data(dataset.id, signer=wallet.address)
    signed = wallet.sign_typed_data(full_message=typed.typed_data)
    confirmed = owner_sdk.confirm_dataset(
        dataset.id, signer=wallet.address, signature=_hex(signed.signature.hex()), nonce=typed.nonce
    )
    assert confirmed.dataset_status == "confirmed"

    chunk = {"dataset_id": dataset.id, "chunk_id": "a.txt#0", "rank": 1}
    event = {"event_id": "r-1", "query_id": "q", "occurred_at": datetime.now(UTC)}
    assert team.report_retrievals(model.id, [event | {"chunks": [chunk]}]).accepted == 1
    [usage] = owner_sdk.dataset_usage(dataset.id).items
    assert usage.model_id == model.id and usage.retrieval_hits == 1
    assert [d.id for d in owner_sdk.list_datasets().items] == [dataset.id]

    unknown = {"event_id": "r-2", "query_id": "q", "occurred_at": datetime.now(UTC)}
    stray = {"dataset_id": uuid.uuid4(), "chunk_id": "x", "rank": 1}
    assert team.report_retrievals(model.id, [unknown | {"chunks": [stray]}]).rejected == 1
    [waiting] = team.list_quarantine(model_id=model.id).items
    assert waiting.reason_code == "unknown_dataset"
    finance = sdk_for(principal("finance").key)
    dismissed = finance.dismiss_quarantined(waiting.id, note="test traffic")
    assert dismissed.review_state == "dismissed"
    assert admin.disable_account(account.id).disabled_at is not None
    with pytest.raises(AuthenticationError):
        team.me()


def _hex(signature: str) -> str:
    return "0x" + signature.removeprefix("0x")


def test_async_client_and_reporter(live: LiveServer, world: Team, db_engine: Engine) -> None:
    async def scenario() -> Any:
        async with AsyncUsefirstClient(live.url, world.team.key) as sdk:
            assert (await sdk.me()).account_id == world.team.account_id
            with pytest.raises(NotFoundError):
                await sdk.usage_summary(uuid.uuid4(), "2026-01")
            async with AsyncUsageReporter(
                sdk, world.model_id, batch_events_max=10, flush_interval_s=0.2
            ) as reporter:
                for i in range(25):
                    chunks = [
                        Chunk(world.datasets[0], f"c-{i}", score=0.5),
                        (world.datasets[1], "x"),
                    ]
                    await reporter.report_retrieval(f"q-{i}", chunks)
                reporter.report_retrieval_nowait("q-now", [(world.datasets[0], "c-now")])
                await reporter.report_training("run-a", world.datasets[0], QUANTITY)
                assert await reporter.flush(timeout_s=20)
                flushed = reporter.stats
            with pytest.raises(ReporterClosed):
                await reporter.report_training("run-a", world.datasets[0], QUANTITY)
            return flushed

    stats = asyncio.run(scenario())
    assert (stats.accepted, stats.pending, stats.failed, stats.rejected) == (27, 0, 0, 0)
    assert stats.batches >= 3
    stored = counts(db_engine, world.model_id)
    assert stored["retrievals"] == 26 and stored["rag_hits"] == 25 * 2 + 1
    assert stored["training"] == 1


# --- the background reporter --------------------------------------------------------


def test_reporter_batches_on_size_and_on_time(
    live: LiveServer, world: Team, db_engine: Engine
) -> None:
    with (
        UsefirstClient(live.url, world.team.key) as sdk,
        UsageReporter(sdk, world.model_id, batch_events_max=50, flush_interval_s=2.0) as reporter,
    ):
        report_many(reporter, world, 120)
        # Two full batches go at once; the last 20 wait for the interval (or a flush).
        wait_until(lambda: reporter.stats.sent == 100)
        assert reporter.stats.pending == 20
        wait_until(lambda: reporter.stats.sent == 120)
        assert reporter.stats.batches == 3

    with (
        UsefirstClient(live.url, world.team.key) as sdk,
        UsageReporter(sdk, world.model_id, flush_interval_s=0.2) as reporter,
    ):
        event_id = reporter.report_retrieval("q-1", [(world.datasets[1], "c-1", 0.9)])
        assert len(event_id) == 32  # uuid4 hex, made at enqueue time
        wait_until(lambda: reporter.stats.accepted == 1)  # no flush: the interval sent it
    stored = counts(db_engine, world.model_id)
    assert stored["training"] == 120 and stored["trained_units"] == 120 * QUANTITY * EPOCHS
    assert stored["retrievals"] == 1


def test_reporter_survives_a_server_restart_without_double_counting(
    live: LiveServer, world: Team, db_engine: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    sdk = UsefirstClient(live.url, world.team.key, timeout_s=5)
    reporter = UsageReporter(
        sdk,
        world.model_id,
        batch_events_max=100,
        flush_interval_s=0.1,
        backoff_initial_s=0.05,
        backoff_max_s=0.5,
    )
    try:
        report_many(reporter, world, 150, run_id="before")
        assert reporter.flush(timeout_s=20)
        assert reporter.stats.accepted == 150

        live.stop()
        with caplog.at_level(logging.WARNING, logger="usefirst.sdk"):
            report_many(reporter, world, 250, run_id="during")
            wait_until(lambda: reporter.stats.retries >= 3)
            assert reporter.stats.pending == 250 and reporter.stats.failed == 0
            assert not reporter.flush(timeout_s=0.2)  # still down: nothing answered yet
        assert "retrying" in caplog.text and "same event ids" in caplog.text

        live.start()
        report_many(reporter, world, 50, run_id="after")
        assert reporter.flush(timeout_s=30)
        stats = reporter.close()
    finally:
        reporter.close(timeout_s=1)
        sdk.close()
    assert (stats.enqueued, stats.accepted, stats.duplicates) == (450, 450, 0)
    assert (stats.pending, stats.failed, stats.rejected) == (0, 0, 0)
    stored = counts(db_engine, world.model_id)
    assert stored["training"] == 450
    assert stored["trained_units"] == 450 * QUANTITY * EPOCHS


class LosingAnswers(httpx.BaseTransport):
    """Delivers each request to the real server, then loses the first ``lose`` answers
    (a timeout after the server committed): the client must resend the same batch."""

    def __init__(self, lose: int) -> None:
        self.inner = httpx.HTTPTransport()
        self.lose = lose
        self.lock = threading.Lock()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = self.inner.handle_request(request)
        response.read()
        with self.lock:
            if self.lose > 0:
                self.lose -= 1
                raise httpx.ReadTimeout("the answer was lost", request=request)
        return response

    def close(self) -> None:
        self.inner.close()


def test_a_resent_batch_that_had_landed_counts_once(
    live: LiveServer, world: Team, db_engine: Engine
) -> None:
    http = httpx.Client(transport=LosingAnswers(lose=2))
    sdk = UsefirstClient(live.url, world.team.key, http_client=http)
    with UsageReporter(sdk, world.model_id, backoff_initial_s=0.01, flush_interval_s=0.1) as rep:
        report_many(rep, world, 40)
        assert rep.flush(timeout_s=20)
        stats = rep.stats
    http.close()
    # The first send landed but its answer was lost twice: the third answer says duplicate.
    assert (stats.retries, stats.accepted, stats.duplicates, stats.failed) == (2, 0, 40, 0)
    stored = counts(db_engine, world.model_id)
    assert stored["training"] == 40 and stored["trained_units"] == 40 * QUANTITY * EPOCHS


def test_rejected_events_are_surfaced(
    live: LiveServer, world: Team, db_engine: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    rejected: list[tuple[str, dict[str, Any], Any]] = []
    with (
        UsefirstClient(live.url, world.team.key) as sdk,
        UsageReporter(
            sdk, world.model_id, on_rejected=lambda *args: rejected.append(args)
        ) as reporter,
        caplog.at_level(logging.WARNING, logger="usefirst.sdk"),
    ):
        good = reporter.report_training("run-1", world.datasets[0], QUANTITY)
        unknown = uuid.uuid4()
        bad = reporter.report_training("run-1", unknown, QUANTITY)
        assert reporter.flush(timeout_s=20)
        stats = reporter.stats
    assert (stats.accepted, stats.rejected, stats.sent, stats.pending) == (1, 1, 2, 0)
    [(kind, event, result)] = rejected
    assert kind == "training" and event["event_id"] == bad != good
    assert event["dataset_id"] == str(unknown) and result.code == "unknown_dataset"
    assert "rejected 1 of 2 training events" in caplog.text and "unknown_dataset" in caplog.text
    assert counts(db_engine, world.model_id)["quarantined"] == 1


def test_permanent_errors_fail_the_batch_at_once(live: LiveServer, world: Team) -> None:
    failures: list[tuple[str, list[dict[str, Any]], BaseException]] = []
    with (
        UsefirstClient(live.url, "uf_revoked_or_wrong") as sdk,
        UsageReporter(sdk, world.model_id, on_failed=lambda *a: failures.append(a)) as reporter,
    ):
        reporter.report_training("run-1", world.datasets[0], QUANTITY)
        assert reporter.flush(timeout_s=20)
        stats = reporter.stats
    assert (stats.failed, stats.retries, stats.pending) == (1, 0, 0)
    [(kind, events, error)] = failures
    assert kind == "training" and len(events) == 1 and isinstance(error, AuthenticationError)


def test_full_queue_and_unreachable_server_lose_nothing(
    live: LiveServer, world: Team, db_engine: Engine, tmp_path: Path
) -> None:
    dead_letters = tmp_path / "usage.ndjson"
    down = UsefirstClient(f"http://127.0.0.1:{free_port()}", world.team.key)
    options: dict[str, Any] = {
        "batch_events_max": 10,
        "queue_events_max": 10,
        "flush_interval_s": 0.05,
        "backoff_initial_s": 0.05,
        "backoff_max_s": 0.2,
    }
    raising = UsageReporter(down, world.model_id, on_full="raise", **options)
    report_many(raising, world, 10)
    with pytest.raises(QueueFull):
        raising.report_training("run-1", world.datasets[0], QUANTITY)
    assert raising.close(timeout_s=0.2).failed == 10

    blocking = UsageReporter(
        down, world.model_id, block_timeout_s=0.2, dead_letter_path=dead_letters, **options
    )
    report_many(blocking, world, 10)
    started = time.monotonic()
    with pytest.raises(QueueFull):
        blocking.report_training("run-1", world.datasets[0], QUANTITY)
    assert time.monotonic() - started >= 0.2
    stats = blocking.close(timeout_s=0.5)  # still unreachable: give up, but say so
    down.close()
    assert (stats.enqueued, stats.failed, stats.pending) == (10, 10, 0)
    letters = [json.loads(line) for line in dead_letters.read_text().splitlines()]
    assert len(letters) == 10 and {letter["kind"] for letter in letters} == {"training"}
    with pytest.raises(ReporterClosed):
        blocking.report_training("run-1", world.datasets[0], QUANTITY)

    with UsefirstClient(live.url, world.team.key) as sdk:
        assert replay_dead_letters(sdk, dead_letters) == {
            "accepted": 10,
            "duplicates": 0,
            "rejected": 0,
        }
        assert replay_dead_letters(sdk, dead_letters)["duplicates"] == 10
    assert counts(db_engine, world.model_id)["training"] == 10


def test_events_older_than_the_retry_age_are_failed(world: Team) -> None:
    failures: list[BaseException] = []
    down = UsefirstClient(f"http://127.0.0.1:{free_port()}", world.team.key)
    with UsageReporter(
        down,
        world.model_id,
        flush_interval_s=0.05,
        retry_max_age_s=0.3,
        backoff_initial_s=0.05,
        on_failed=lambda _kind, _events, error: failures.append(error),
    ) as reporter:
        reporter.report_training("run-1", world.datasets[0], QUANTITY)
        assert reporter.flush(timeout_s=10)
        assert reporter.stats.failed == 1 and reporter.stats.retries >= 1
    down.close()
    assert getattr(failures[0], "code", None) == "retry_max_age_exceeded"


def test_an_open_reporter_flushes_at_interpreter_exit(
    live: LiveServer, world: Team, db_engine: Engine
) -> None:
    script = textwrap.dedent(
        f"""
        from api.sdk import UsageReporter, UsefirstClient
        client = UsefirstClient({live.url!r}, {world.team.key!r})
        reporter = UsageReporter(client, {str(world.model_id)!r}, flush_interval_s=60)
        for _ in range(7):
            reporter.report_training("run-exit", {str(world.datasets[0])!r}, {QUANTITY})
        # no close(): the exit hook delivers the queue
        """
    )
    subprocess.run([sys.executable, "-c", script], cwd=REPO_ROOT, check=True, timeout=60)
    assert counts(db_engine, world.model_id)["training"] == 7
