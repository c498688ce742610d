"""``/v1/revenue``: recording (idempotent by key and by external_ref), validation,
who may do what, and cursor pagination. Real app, real PostgreSQL."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, text
from sqlmodel import Session

from tests.api.conftest import ApiPrincipal
from tests.ledger import factories

PROBLEM = "application/problem+json"


@pytest.fixture
def team_model(
    principal: Callable[..., ApiPrincipal], db_engine: Engine
) -> tuple[ApiPrincipal, uuid.UUID]:
    """A model team and its model (agreement in EUR)."""
    team = principal("model_team")
    with Session(db_engine, expire_on_commit=False) as session:
        model = factories.make_model(session)
        model.account_id = team.account_id
        session.add(model)
        session.commit()
    return team, model.id


def revenue(model_id: uuid.UUID, **fields: Any) -> dict[str, Any]:
    return {
        "model_id": str(model_id),
        "amount_minor": 125_000,
        "currency": "EUR",
        "external_ref": f"inv-{uuid.uuid4().hex[:10]}",
        "occurred_at": "2026-03-31T18:00:00Z",
    } | fields


def revenue_rows(db_engine: Engine, model_id: uuid.UUID) -> int:
    with Session(db_engine) as session:
        return int(
            session.execute(
                text("SELECT count(*) FROM revenue_event WHERE model_id = :m"), {"m": model_id}
            ).scalar_one()
        )


def problem(response: Any, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(PROBLEM)
    body: dict[str, Any] = response.json()
    assert body["code"] == code
    return body


def test_revenue_is_recorded_and_replays_return_it(
    client: TestClient, team_model: tuple[ApiPrincipal, uuid.UUID], db_engine: Engine
) -> None:
    team, model_id = team_model
    body = revenue(model_id)
    created = client.post("/v1/revenue", json=body, headers=team.headers)
    assert created.status_code == 201, created.text
    event = created.json()
    assert (event["amount_minor"], event["currency"]) == (125_000, "EUR")
    assert event["journal_transaction_id"] is not None
    # The same external_ref again (a retry without a key): the stored event, 200.
    again = client.post("/v1/revenue", json=body, headers=team.headers)
    assert (again.status_code, again.json()["id"]) == (200, event["id"])
    # The same external_ref with another amount: a conflict naming the field.
    conflict = problem(
        client.post("/v1/revenue", json=body | {"amount_minor": 1}, headers=team.headers),
        409,
        "external_ref_conflict",
    )
    assert conflict["differing_fields"] == ["amount_minor"]
    assert revenue_rows(db_engine, model_id) == 1


def test_an_idempotency_key_replays_the_original_response(
    client: TestClient, team_model: tuple[ApiPrincipal, uuid.UUID], db_engine: Engine
) -> None:
    team, model_id = team_model
    headers = team.headers | {"Idempotency-Key": f"rev-{uuid.uuid4()}"}
    body = revenue(model_id)
    first = client.post("/v1/revenue", json=body, headers=headers)
    replay = client.post("/v1/revenue", json=body, headers=headers)
    assert (first.status_code, replay.status_code) == (201, 201)
    assert replay.json() == first.json()
    assert replay.headers["Idempotent-Replayed"] == "true"
    other = client.post("/v1/revenue", json=revenue(model_id), headers=headers)
    problem(other, 409, "idempotency_key_reused")
    assert revenue_rows(db_engine, model_id) == 1


@pytest.mark.parametrize(
    ("change", "status", "code", "field"),
    [
        ({"amount_minor": -5}, 422, "validation_failed", "amount_minor"),
        ({"amount_minor": 10**30}, 422, "validation_failed", "amount_minor"),
        ({"amount_minor": "100"}, 422, "validation_failed", "body/amount_minor"),
        ({"amount_minor": 100.5}, 422, "validation_failed", "body/amount_minor"),
        ({"colour": "red"}, 422, "validation_failed", "body/colour"),
        ({"currency": "USD"}, 422, "currency_mismatch", "currency"),
        ({"currency": "euro"}, 422, "validation_failed", "currency"),
        ({"occurred_at": "2026-03-31T18:00:00"}, 422, "validation_failed", "occurred_at"),
        ({"occurred_at": "2999-01-01T00:00:00Z"}, 422, "occurred_in_future", "occurred_at"),
        ({"occurred_at": "2024-06-01T00:00:00Z"}, 422, "no_agreement", "occurred_at"),
        ({"external_ref": ""}, 422, "validation_failed", "external_ref"),
    ],
)
def test_bad_revenue_is_refused_naming_the_field_and_nothing_is_written(
    client: TestClient,
    team_model: tuple[ApiPrincipal, uuid.UUID],
    db_engine: Engine,
    change: dict[str, Any],
    status: int,
    code: str,
    field: str,
) -> None:
    team, model_id = team_model
    response = client.post("/v1/revenue", json=revenue(model_id, **change), headers=team.headers)
    body = problem(response, status, code)
    assert field in [e["field"] for e in body["errors"]]
    assert revenue_rows(db_engine, model_id) == 0


def test_malformed_json_repeated_keys_and_closed_periods(
    client: TestClient, team_model: tuple[ApiPrincipal, uuid.UUID], db_engine: Engine
) -> None:
    team, model_id = team_model
    headers = team.headers | {"Content-Type": "application/json"}
    problem(
        client.post("/v1/revenue", content=b'{"model_id": ', headers=headers), 400, "malformed_json"
    )
    repeated = json.dumps(revenue(model_id))[:-1] + ', "amount_minor": 1}'
    body = problem(
        client.post("/v1/revenue", content=repeated, headers=headers), 422, "duplicate_key"
    )
    assert body["errors"][0]["field"] == "amount_minor"
    with Session(db_engine) as session:
        factories.make_period(session, model_id, datetime(2026, 2, 1, tzinfo=UTC), "closed")
        session.commit()
    closed = revenue(model_id, occurred_at="2026-02-10T00:00:00Z")
    problem(client.post("/v1/revenue", json=closed, headers=team.headers), 409, "period_not_open")
    assert revenue_rows(db_engine, model_id) == 0


@pytest.mark.parametrize(("role", "status"), [("owner", 403), ("finance", 403), ("admin", 403)])
def test_only_model_teams_record_revenue(
    client: TestClient,
    team_model: tuple[ApiPrincipal, uuid.UUID],
    principal: Callable[..., ApiPrincipal],
    db_engine: Engine,
    role: str,
    status: int,
) -> None:
    _, model_id = team_model
    response = client.post("/v1/revenue", json=revenue(model_id), headers=principal(role).headers)
    problem(response, status, "forbidden")
    assert revenue_rows(db_engine, model_id) == 0


def test_another_team_cannot_see_or_record_revenue_of_a_model(
    client: TestClient,
    team_model: tuple[ApiPrincipal, uuid.UUID],
    principal: Callable[..., ApiPrincipal],
    db_engine: Engine,
) -> None:
    _, model_id = team_model
    other = principal("model_team")
    problem(
        client.post("/v1/revenue", json=revenue(model_id), headers=other.headers), 404, "not_found"
    )
    listed = client.get("/v1/revenue", params={"model_id": str(model_id)}, headers=other.headers)
    problem(listed, 404, "not_found")
    assert revenue_rows(db_engine, model_id) == 0


def test_revenue_lists_page_by_cursor(
    client: TestClient,
    team_model: tuple[ApiPrincipal, uuid.UUID],
    principal: Callable[..., ApiPrincipal],
) -> None:
    team, model_id = team_model
    refs = []
    for day in (3, 1, 2):
        body = revenue(model_id, occurred_at=f"2026-03-0{day}T00:00:00Z")
        refs.append((day, body["external_ref"]))
        assert client.post("/v1/revenue", json=body, headers=team.headers).status_code == 201
    params: dict[str, Any] = {"model_id": str(model_id), "limit": 2}
    first = client.get("/v1/revenue", params=params, headers=team.headers).json()
    assert first["next_cursor"]
    second = client.get(
        "/v1/revenue", params=params | {"cursor": first["next_cursor"]}, headers=team.headers
    ).json()
    assert second["next_cursor"] is None
    listed = [e["external_ref"] for e in first["items"] + second["items"]]
    assert listed == [ref for _, ref in sorted(refs)]
    finance = principal("finance")
    assert (
        len(client.get("/v1/revenue", params=params, headers=finance.headers).json()["items"]) == 2
    )
    bad = client.get("/v1/revenue", params=params | {"cursor": "bm9wZQ"}, headers=team.headers)
    problem(bad, 422, "invalid_cursor")
    problem(
        client.get("/v1/revenue", params=params, headers=principal("owner").headers),
        403,
        "forbidden",
    )
