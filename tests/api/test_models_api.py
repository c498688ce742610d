"""Model teams register models and agreement versions; finance reads them all."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

from fastapi.testclient import TestClient

from tests.api.conftest import ApiPrincipal
from tests.api.test_accounts_api import _problem

Make = Callable[..., ApiPrincipal]

AGREEMENT = {
    "royalty_rate_bps": 1_000,
    "training_share_bps": 6_000,
    "min_payout_minor": 500,
    "currency": "eur",
    "effective_from": "2026-01-01T00:00:00Z",
}


def _model(client: TestClient, team: ApiPrincipal, **extra: Any) -> dict[str, Any]:
    created = client.post(
        "/v1/models", json={"name": "atlas-" + uuid.uuid4().hex[:6], **extra}, headers=team.headers
    )
    assert created.status_code == 201, created.text
    return created.json()  # type: ignore[no-any-return]


def test_a_team_registers_models_and_versioned_agreements(
    client: TestClient, principal: Make
) -> None:
    team = principal("model_team")
    model = _model(client, team, kind="rag_app", description="support bot")
    assert (model["kind"], model["account_id"]) == ("rag_app", str(team.account_id))
    model_id = model["id"]

    _problem(
        client.get(f"/v1/models/{model_id}/agreements/in-force", headers=team.headers),
        404,
        "no_agreement_in_force",
        "model_id",
    )
    first = client.post(f"/v1/models/{model_id}/agreements", json=AGREEMENT, headers=team.headers)
    assert first.status_code == 201, first.text
    assert (first.json()["version"], first.json()["currency"]) == (1, "EUR")
    assert first.json()["currency_exponent"] == 2
    second = client.post(
        f"/v1/models/{model_id}/agreements",
        json={**AGREEMENT, "royalty_rate_bps": 1_500, "effective_from": "2026-04-01T00:00:00Z"},
        headers=team.headers,
    )
    assert second.json()["version"] == 2

    at_march = client.get(
        f"/v1/models/{model_id}/agreements/in-force",
        params={"at": "2026-03-31T23:59:59Z"},
        headers=team.headers,
    ).json()
    assert (at_march["version"], at_march["royalty_rate_bps"]) == (1, 1_000)
    now = client.get(f"/v1/models/{model_id}/agreements/in-force", headers=team.headers).json()
    assert now["version"] == 2

    page = client.get(
        f"/v1/models/{model_id}/agreements", params={"limit": 1}, headers=team.headers
    ).json()
    rest = client.get(
        f"/v1/models/{model_id}/agreements",
        params={"limit": 1, "cursor": page["next_cursor"]},
        headers=team.headers,
    ).json()
    assert [a["version"] for a in page["items"] + rest["items"]] == [1, 2]
    assert rest["next_cursor"] is None

    backwards = _problem(
        client.post(
            f"/v1/models/{model_id}/agreements",
            json={**AGREEMENT, "effective_from": "2026-02-01T00:00:00Z"},
            headers=team.headers,
        ),
        422,
        "effective_from_backwards",
        "effective_from",
    )
    assert "version 2" in backwards["detail"]


def test_agreement_fields_are_all_reported(client: TestClient, principal: Make) -> None:
    team = principal("model_team")
    model_id = _model(client, team)["id"]
    bad = _problem(
        client.post(
            f"/v1/models/{model_id}/agreements",
            json={
                **AGREEMENT,
                "royalty_rate_bps": 10_001,
                "currency": "XTS",
                "training_unit": "words",
            },
            headers=team.headers,
        ),
        422,
        "validation_failed",
    )
    assert {(e["field"], e["code"]) for e in bad["errors"]} == {
        ("royalty_rate_bps", "royalty_rate_bps_invalid"),
        ("currency", "currency_unknown"),
        ("training_unit", "training_unit_invalid"),
    }
    _problem(
        client.post(
            f"/v1/models/{model_id}/agreements",
            json={**AGREEMENT, "min_payout_minor": "500"},
            headers=team.headers,
        ),
        422,
        "validation_failed",
        "body/min_payout_minor",
    )
    _problem(
        client.post("/v1/models", json={"name": ""}, headers=team.headers),
        422,
        "validation_failed",
        "body/name",
    )


def test_teams_see_only_their_models_and_finance_sees_all(
    client: TestClient, principal: Make
) -> None:
    team, rival, finance = principal("model_team"), principal("model_team"), principal("finance")
    model_id = _model(client, team)["id"]
    client.post(f"/v1/models/{model_id}/agreements", json=AGREEMENT, headers=team.headers)

    for path in ("", "/agreements", "/agreements/in-force"):
        _problem(
            client.get(f"/v1/models/{model_id}{path}", headers=rival.headers), 404, "not_found"
        )
        assert client.get(f"/v1/models/{model_id}{path}", headers=finance.headers).status_code == (
            200
        )
    _problem(
        client.post(f"/v1/models/{model_id}/agreements", json=AGREEMENT, headers=rival.headers),
        404,
        "not_found",
        "model_id",
    )
    _problem(
        client.post(f"/v1/models/{model_id}/agreements", json=AGREEMENT, headers=finance.headers),
        403,
        "forbidden",
    )
    assert model_id not in {
        m["id"] for m in client.get("/v1/models", headers=rival.headers).json()["items"]
    }
    seen, cursor = set(), None
    while model_id not in seen:
        params = {"limit": 500, **({"cursor": cursor} if cursor else {})}
        page = client.get("/v1/models", params=params, headers=finance.headers).json()
        seen |= {m["id"] for m in page["items"]}
        cursor = page["next_cursor"]
        assert cursor or model_id in seen, "finance does not see the model"
    for role in ("owner", "admin"):
        _problem(client.get("/v1/models", headers=principal(role).headers), 403, "forbidden")
        _problem(
            client.post("/v1/models", json={"name": "m"}, headers=principal(role).headers),
            403,
            "forbidden",
        )


def test_model_creation_is_idempotent_with_a_key(client: TestClient, principal: Make) -> None:
    team = principal("model_team")
    headers = {**team.headers, "Idempotency-Key": uuid.uuid4().hex}
    body = {"name": "atlas-" + uuid.uuid4().hex[:6]}
    first = client.post("/v1/models", json=body, headers=headers)
    again = client.post("/v1/models", json=body, headers=headers)
    assert first.status_code == again.status_code == 201
    assert first.json() == again.json()
    _problem(
        client.post("/v1/models", json={"name": "other"}, headers=headers),
        409,
        "idempotency_key_reused",
        "Idempotency-Key",
    )
    listed = client.get("/v1/models", headers=team.headers).json()["items"]
    assert [m["id"] for m in listed] == [first.json()["id"]]
