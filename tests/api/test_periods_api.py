"""Finance closes a period over HTTP; a real Celery worker runs the close."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime

from fastapi.testclient import TestClient
from sqlalchemy import Engine
from sqlmodel import Session

from ledger.revenue.service import record_revenue
from ledger.settings import Settings
from ledger.usage.service import ingest_retrievals
from tests.ledger.factories import make_dataset, make_model

OCT = datetime(2026, 10, 5, 9, 0, tzinfo=UTC)


def _model_with_usage(
    db_engine: Engine, account_id: uuid.UUID | None = None
) -> tuple[uuid.UUID, uuid.UUID]:
    from ledger.periods.service import period_for

    with Session(db_engine, expire_on_commit=False) as session:
        model = make_model(session)
        if account_id is not None:
            model.account_id = account_id
            session.add(model)
        dataset = make_dataset(session)
        session.commit()
        event = {
            "event_id": uuid.uuid4().hex,
            "query_id": "q",
            "occurred_at": OCT.isoformat(),
            "chunks": [{"dataset_id": str(dataset.id), "chunk_id": "c", "rank": 1}],
        }
        assert ingest_retrievals(session, model.id, [event]).accepted == 1
        record_revenue(session, model.id, 12_345, "EUR", "inv", OCT)
        period_id = period_for(session, model.id, OCT).id
        session.commit()
        return model.id, period_id


def _wait_for_job(client: TestClient, headers: dict[str, str], job_id: str) -> dict[str, object]:
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        job = client.get(f"/v1/jobs/{job_id}", headers=headers).json()
        if job["state"] in ("succeeded", "failed"):
            return job
        time.sleep(0.3)
    raise AssertionError(f"job {job_id} did not finish: {job}")


def test_finance_closes_a_period_through_the_worker(
    client: TestClient,
    principal,
    db_engine: Engine,
    celery_worker: Settings,  # type: ignore[no-untyped-def]
) -> None:
    finance = principal("finance")
    _, period_id = _model_with_usage(db_engine)
    response = client.post(
        f"/v1/periods/{period_id}/close", json={"anchor": False}, headers=finance.headers
    )
    assert response.status_code == 202, response.text
    job = _wait_for_job(client, finance.headers, response.json()["job_id"])
    assert job["state"] == "succeeded", job
    period = client.get(f"/v1/periods/{period_id}", headers=finance.headers).json()
    assert period["state"] == "closed"
    assert period["pool_minor"] == 1_234  # 10 % of 12,345, floor
    statement = client.get(f"/v1/periods/{period_id}/statement", headers=finance.headers)
    assert statement.status_code == 200
    import hashlib

    assert hashlib.sha256(statement.content).hexdigest() == period["statement_hash"]


def test_only_finance_closes_and_teams_see_only_their_periods(
    client: TestClient,
    principal,
    db_engine: Engine,  # type: ignore[no-untyped-def]
) -> None:
    team = principal("model_team")
    other_team = principal("model_team")
    owner = principal("owner")
    _, period_id = _model_with_usage(db_engine, account_id=team.account_id)
    assert client.get(f"/v1/periods/{period_id}", headers=team.headers).status_code == 200
    assert client.get(f"/v1/periods/{period_id}", headers=other_team.headers).status_code == 404
    assert client.get(f"/v1/periods/{period_id}", headers=owner.headers).status_code == 403
    for who in (team, owner):
        denied = client.post(f"/v1/periods/{period_id}/close", json={}, headers=who.headers)
        assert denied.status_code == 403
        assert denied.headers["content-type"] == "application/problem+json"
    listed = client.get("/v1/periods", headers=other_team.headers).json()
    assert all(p["id"] != str(period_id) for p in listed["items"])


def test_close_replay_with_the_same_idempotency_key_returns_the_same_job(
    client: TestClient,
    principal,
    db_engine: Engine,
    celery_worker: Settings,  # type: ignore[no-untyped-def]
) -> None:
    finance = principal("finance")
    _, period_id = _model_with_usage(db_engine)
    headers = {**finance.headers, "Idempotency-Key": uuid.uuid4().hex}
    first = client.post(f"/v1/periods/{period_id}/close", json={"anchor": False}, headers=headers)
    second = client.post(f"/v1/periods/{period_id}/close", json={"anchor": False}, headers=headers)
    assert first.status_code == second.status_code == 202
    assert first.json() == second.json()
    assert second.headers.get("idempotent-replayed") == "true"
    conflict = client.post(f"/v1/periods/{period_id}/close", json={"anchor": True}, headers=headers)
    assert conflict.status_code == 409
    _wait_for_job(client, finance.headers, first.json()["job_id"])


def test_adjustment_into_an_open_period(
    client: TestClient,
    principal,
    db_engine: Engine,  # type: ignore[no-untyped-def]
) -> None:
    finance = principal("finance")
    _, period_id = _model_with_usage(db_engine)
    body = {
        "address": "0x" + "ab" * 20,
        "amount_minor": -25,
        "reason": "over-declared usage in September",
        "reference": "adj-" + uuid.uuid4().hex[:6],
    }
    created = client.post(
        f"/v1/periods/{period_id}/adjustments", json=body, headers=finance.headers
    )
    assert created.status_code == 201, created.text
    assert created.json()["amount_minor"] == -25
    again = client.post(f"/v1/periods/{period_id}/adjustments", json=body, headers=finance.headers)
    assert again.status_code == 422
    assert again.json()["errors"][0]["field"] == "reference"
    zero = client.post(
        f"/v1/periods/{period_id}/adjustments",
        json={**body, "amount_minor": 0, "reference": "z"},
        headers=finance.headers,
    )
    assert zero.status_code == 422


def test_anchoring_again_after_a_revoke_is_asked_for_explicitly(
    client: TestClient,
    principal,
    db_engine: Engine,
    services: Settings,  # type: ignore[no-untyped-def]
) -> None:
    from contracts.client import UsefirstChain

    UsefirstChain.connect(services, deploy=True)  # the worker's deployment (idempotent)
    finance = principal("finance")
    _, period_id = _model_with_usage(db_engine)
    closed = client.post(
        f"/v1/periods/{period_id}/close", json={"anchor": False}, headers=finance.headers
    )
    assert _wait_for_job(client, finance.headers, closed.json()["job_id"])["state"] == "succeeded"
    unknown = client.post(
        f"/v1/periods/{period_id}/anchor", json={"reanchor": "maybe"}, headers=finance.headers
    )
    assert unknown.status_code == 422
    assert unknown.json()["errors"][0]["field"].endswith("reanchor")
    accepted = client.post(
        f"/v1/periods/{period_id}/anchor", json={"reanchor": True}, headers=finance.headers
    )
    assert accepted.status_code == 202, accepted.text
    job = _wait_for_job(client, finance.headers, accepted.json()["job_id"])
    # The decision travels with the job (a resumed job keeps it); nothing was revoked, so
    # this is a first anchoring.
    assert job["params"] == {"period_id": str(period_id), "reanchor": True}
    assert job["state"] == "succeeded", job
    period = client.get(f"/v1/periods/{period_id}", headers=finance.headers).json()
    assert period["state"] == "anchored"
