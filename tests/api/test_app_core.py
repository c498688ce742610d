"""The HTTP shell: health checks, problem+json for every error, request ids, size limits."""

from __future__ import annotations

from fastapi.testclient import TestClient

from ledger.settings import Settings


def test_healthz_answers(client: TestClient) -> None:
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_readyz_checks_database_broker_and_chain(client: TestClient, services: Settings) -> None:
    response = client.get("/readyz")
    body = response.json()
    assert response.status_code == 200, body
    assert {c["name"] for c in body["checks"]} == {"database", "broker", "chain"}
    assert all(c["ok"] for c in body["checks"])


def test_unknown_route_is_problem_json_with_request_id(client: TestClient) -> None:
    response = client.get("/v1/nothing-here", headers={"X-Request-ID": "req-123"})
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert body["type"] == "urn:usefirst:problem:not_found"
    assert body["status"] == 404
    assert body["instance"] == "/v1/nothing-here"
    assert body["request_id"] == "req-123"
    assert response.headers["x-request-id"] == "req-123"


def test_openapi_schema_is_served_under_v1(client: TestClient) -> None:
    response = client.get("/v1/openapi.json")
    assert response.status_code == 200
    assert response.json()["info"]["title"] == "usefirst"


def test_requests_without_a_key_are_401_problems(client: TestClient) -> None:
    response = client.get("/v1/me")
    assert response.status_code == 401
    assert response.headers["content-type"] == "application/problem+json"
    assert response.headers["www-authenticate"] == "Bearer"
    assert "Authorization: Bearer" in response.json()["detail"]


def test_revoked_key_is_refused(client: TestClient, principal, db_engine) -> None:  # type: ignore[no-untyped-def]
    from sqlmodel import Session

    from ledger.access.models import ApiKey
    from ledger.access.service import revoke_api_key

    who = principal("model_team")
    assert client.get("/v1/me", headers=who.headers).status_code == 200
    with Session(db_engine) as session:
        key = session.query(ApiKey).filter(ApiKey.account_id == who.account_id).one()
        revoke_api_key(session, key.id)
        session.commit()
    response = client.get("/v1/me", headers=who.headers)
    assert response.status_code == 401
    assert "revoked" in response.json()["detail"]


def test_me_names_the_principal(client: TestClient, principal) -> None:  # type: ignore[no-untyped-def]
    who = principal("owner")
    body = client.get("/v1/me", headers=who.headers).json()
    assert body["account_id"] == str(who.account_id)
    assert body["role"] == "owner"
    assert body["owner_addresses"] == [who.address]
