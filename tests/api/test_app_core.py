"""The HTTP shell: health checks, problem+json for every error, request ids, size limits."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from ledger.settings import Settings


@pytest.fixture(scope="module")
def client(services: Settings) -> Iterator[TestClient]:
    from api.app import create_app

    with TestClient(create_app()) as test_client:
        yield test_client


def test_healthz_answers(client: TestClient) -> None:
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_readyz_checks_database_broker_and_chain(client: TestClient) -> None:
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
