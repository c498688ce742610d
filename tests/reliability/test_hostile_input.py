"""Hostile input against the real app and database (issue 8, item 4; issue 5, "Bad input").

Oversized and deeply nested JSON, huge integers, unicode tricks, SQL metacharacters,
forged EIP-712 signatures, replayed idempotency keys with another body, keys of revoked or
disabled principals and cross-tenant id guessing: each gets a precise 4xx problem and
changes nothing (rows are counted before and after where a write was possible).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, text
from sqlmodel import Session

from api import jobs
from ledger.models.models import Model
from ledger.rights.signatures import SECP256K1_N
from ledger.settings import Settings
from tests.api.conftest import ApiPrincipal
from tests.api.conftest import api_app as api_app
from tests.api.conftest import client as client
from tests.api.conftest import principal as principal
from tests.api.test_datasets_api import _body, _register
from tests.api.test_models_api import AGREEMENT
from tests.api.test_usage_api import World, post, stored, training
from tests.api.test_usage_api import world as world
from tests.ledger.factories_settlement import closed_period

Make = Callable[..., ApiPrincipal]
PROBLEM = "application/problem+json"


def problem(response: Any, status: int, code: str | None = None) -> dict[str, Any]:
    assert response.status_code == status, response.text[:500]
    assert response.headers["content-type"].startswith(PROBLEM), response.headers
    body: dict[str, Any] = response.json()
    for key in ("type", "title", "status", "detail"):
        assert key in body, body
    if code is not None:
        assert body["code"] == code, body
    return body


def count(engine: Engine, sql: str, **params: Any) -> int:
    with Session(engine) as session:
        return int(session.execute(text(sql), params).scalar_one())


def datasets_of(engine: Engine, principal: ApiPrincipal) -> int:
    return count(
        engine,
        "SELECT count(*) FROM dataset d JOIN owner o ON o.id = d.registrant_owner_id "
        "WHERE o.account_id = :a",
        a=principal.account_id,
    )


def models_of(engine: Engine, principal: ApiPrincipal) -> int:
    return count(engine, "SELECT count(*) FROM model WHERE account_id = :a", a=principal.account_id)


# --- size and shape --------------------------------------------------------------------


def test_an_oversized_body_is_a_413_problem_and_nothing_is_written(
    client: TestClient, principal: Make, db_engine: Engine
) -> None:
    team = principal("model_team")
    before = models_of(db_engine, team)
    huge = json.dumps({"name": "x" * (8 * 1024 * 1024)})
    response = client.post(
        "/v1/models",
        content=huge,
        headers={**team.headers, "Content-Type": "application/json"},
    )
    problem(response, 413, "payload_too_large")
    assert models_of(db_engine, team) == before


def test_deeply_nested_json_is_a_4xx_not_a_recursion_error(
    client: TestClient, principal: Make, db_engine: Engine
) -> None:
    team = principal("model_team")
    before = models_of(db_engine, team)
    depth = 10_000
    nested = "[" * depth + "]" * depth
    for body in (nested, '{"name": ' + nested + "}", '{"a":' * depth + "1" + "}" * depth):
        response = client.post(
            "/v1/models",
            content=body,
            headers={**team.headers, "Content-Type": "application/json"},
        )
        assert response.status_code in (400, 422), response.text[:300]
        problem(response, response.status_code)
    assert models_of(db_engine, team) == before


def test_huge_integers_are_a_precise_422(
    client: TestClient, principal: Make, db_engine: Engine, world: World
) -> None:
    huge = 10**40
    # Usage quantities: the event is rejected with its field path (and, like every
    # rejected event, kept in quarantine for review); nothing is counted.
    before = stored(db_engine, world.model_id)
    for field_name in ("quantity", "epochs"):
        response = post(client, world, "training", [training(world, **{field_name: huge})])
        assert response.status_code == 200, response.text[:300]
        [result] = response.json()["results"]
        assert result["status"] == "rejected", result
        assert result["field"] == f"events/0/{field_name}", result
    after = stored(db_engine, world.model_id)
    assert after["usage_training_event"] == before["usage_training_event"]
    assert after["usage_rollup"] == before["usage_rollup"]
    assert after["usage_quarantine"] == before["usage_quarantine"] + 2

    # Revenue amounts.
    revenue_rows = count(
        db_engine, "SELECT count(*) FROM revenue_event WHERE model_id = :m", m=world.model_id
    )
    for amount in (huge, -huge):
        body = problem(
            client.post(
                "/v1/revenue",
                json={
                    "model_id": str(world.model_id),
                    "amount_minor": amount,
                    "currency": "EUR",
                    "external_ref": f"inv-{uuid.uuid4().hex[:8]}",
                    "occurred_at": "2026-03-10T12:00:00Z",
                },
                headers=world.team.headers,
            ),
            422,
        )
        assert "amount_minor" in json.dumps(body)
    assert revenue_rows == count(
        db_engine, "SELECT count(*) FROM revenue_event WHERE model_id = :m", m=world.model_id
    )

    # Agreement basis points and payout minimums.
    team = principal("model_team")
    model_id = client.post(
        "/v1/models", json={"name": f"m-{uuid.uuid4().hex[:6]}"}, headers=team.headers
    ).json()["id"]
    for field_name in ("royalty_rate_bps", "min_payout_minor"):
        agreement = {**AGREEMENT, field_name: huge}
        body = problem(
            client.post(f"/v1/models/{model_id}/agreements", json=agreement, headers=team.headers),
            422,
        )
        assert field_name in json.dumps(body)

    # Dataset file sizes and shares.
    owner = principal("owner")
    before_datasets = datasets_of(db_engine, owner)
    bad = _body(owner.address, [(owner.address, 10_000)])
    bad["files"][0]["size"] = huge
    problem(client.post("/v1/datasets", json=bad, headers=owner.headers), 422)
    bad = _body(owner.address, [(owner.address, huge)])
    problem(client.post("/v1/datasets", json=bad, headers=owner.headers), 422)
    assert datasets_of(db_engine, owner) == before_datasets


# --- text ------------------------------------------------------------------------------

TRICKS = (
    "invoice\u202egpj.exe",  # right-to-left override
    "a\u200db\u200cc\ufeffd",  # zero-width joiner / non-joiner / BOM
    "Ｆｕｌｌｗｉｄｔｈ ｎａｍｅ",
    "e\u0301\u0301\u0301 combining",
)
SQL = (
    "'; DROP TABLE dataset; --",
    "x' OR '1'='1",
    'Robert"); DELETE FROM model; --',
    "\\'; SELECT pg_sleep(5); --",
    "%_%' AND 1=0 UNION SELECT * FROM api_key --",
)


@pytest.mark.parametrize("name", TRICKS + SQL)
def test_tricky_names_are_stored_verbatim(client: TestClient, principal: Make, name: str) -> None:
    team, owner = principal("model_team"), principal("owner")
    created = client.post("/v1/models", json={"name": name}, headers=team.headers)
    assert created.status_code == 201, created.text
    assert created.json()["name"] == name
    fetched = client.get(f"/v1/models/{created.json()['id']}", headers=team.headers)
    assert fetched.json()["name"] == name

    dataset = _register(client, owner, [(owner.address, 10_000)], name=name)
    assert dataset["name"] == name
    listed = client.get("/v1/datasets", headers=owner.headers).json()["items"]
    assert name in {d["name"] for d in listed}


def test_sql_metacharacters_in_every_text_field_are_data(
    client: TestClient, principal: Make, db_engine: Engine, world: World
) -> None:
    payload = SQL[0]
    # Usage identifiers.
    response = post(client, world, "training", [training(world, event_id=payload, run_id=SQL[1])])
    assert response.status_code < 500, response.text
    replay = post(client, world, "training", [training(world, event_id=payload, run_id=SQL[1])])
    assert replay.status_code < 500, replay.text
    # Revenue external reference.
    revenue = client.post(
        "/v1/revenue",
        json={
            "model_id": str(world.model_id),
            "amount_minor": 100,
            "currency": "EUR",
            "external_ref": SQL[2],
            "occurred_at": "2026-03-10T12:00:00Z",
        },
        headers=world.team.headers,
    )
    assert revenue.status_code < 500, revenue.text
    if revenue.status_code == 201:
        assert revenue.json()["external_ref"] == SQL[2]
    # Query strings and path segments.
    for query in SQL:
        listed = client.get("/v1/datasets", params={"status": query}, headers=world.team.headers)
        assert listed.status_code < 500, listed.text
        problem(client.get(f"/v1/models/{query}", headers=world.team.headers), 422)
        cursor = client.get("/v1/models", params={"cursor": query}, headers=world.team.headers)
        assert cursor.status_code in (200, 400, 422), cursor.text
        if cursor.status_code != 200:
            problem(cursor, cursor.status_code)
    # Every table is still there.
    for table in ("dataset", "model", "api_key"):
        count(db_engine, f"SELECT count(*) FROM {table}")


def test_nul_characters_are_refused_with_a_422(
    client: TestClient, principal: Make, db_engine: Engine
) -> None:
    team, owner = principal("model_team"), principal("owner")
    before = (models_of(db_engine, team), datasets_of(db_engine, owner))
    problem(client.post("/v1/models", json={"name": "a\x00b"}, headers=team.headers), 422)
    problem(
        client.post(
            "/v1/datasets",
            json=_body(owner.address, [(owner.address, 10_000)], name="evil\x00name"),
            headers=owner.headers,
        ),
        422,
    )
    assert (models_of(db_engine, team), datasets_of(db_engine, owner)) == before


def test_a_nul_in_a_quarantine_note_is_a_422_not_a_500(
    client: TestClient, principal: Make, db_engine: Engine, world: World
) -> None:
    """Found by the schema fuzzing: PostgreSQL refused the NUL and the API answered 500."""
    post(client, world, "training", [training(world, quantity=-1)])
    quarantine_id = count(
        db_engine, "SELECT max(id) FROM usage_quarantine WHERE model_id = :m", m=world.model_id
    )
    finance = principal("finance")
    body = problem(
        client.post(
            f"/v1/quarantine/{quarantine_id}/dismiss",
            json={"note": "dup\x00licate"},
            headers=finance.headers,
        ),
        422,
        "invalid_note",
    )
    assert "note" in [e["field"] for e in body["errors"]]
    state = count(
        db_engine,
        "SELECT count(*) FROM usage_quarantine WHERE id = :i AND review_state = 'open'",
        i=quarantine_id,
    )
    assert state == 1


# --- forged EIP-712 signatures ---------------------------------------------------------


def _typed(client: TestClient, owner: ApiPrincipal, dataset_id: str) -> dict[str, Any]:
    response = client.get(
        f"/v1/datasets/{dataset_id}/typed-data",
        params={"signer": owner.address},
        headers=owner.headers,
    )
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


def _confirm(client: TestClient, owner: ApiPrincipal, dataset_id: str, sig: bytes, nonce: int):  # type: ignore[no-untyped-def]
    return client.post(
        f"/v1/datasets/{dataset_id}/confirmations",
        json={"signer": owner.address, "signature": "0x" + sig.hex(), "nonce": nonce},
        headers=owner.headers,
    )


def _signatures(engine: Engine, dataset_id: str) -> int:
    return count(
        engine,
        "SELECT count(*) FROM dataset_confirmation WHERE dataset_id = :d",
        d=uuid.UUID(dataset_id),
    )


def test_forged_eip712_signatures_are_refused_precisely(
    client: TestClient, principal: Make, db_engine: Engine, chain_settings: Settings
) -> None:
    owner = principal("owner")
    dataset_id = _register(client, owner, [(owner.address, 10_000)])["id"]
    document = _typed(client, owner, dataset_id)
    typed, nonce = document["typed_data"], document["nonce"]
    wallet = owner.wallets[0]

    forgeries = {
        "wrong domain name": {**typed, "domain": {**typed["domain"], "name": "NotUsefirst"}},
        "wrong chain id": {
            **typed,
            "domain": {**typed["domain"], "chainId": int(typed["domain"]["chainId"]) + 1},
        },
    }
    for label, forged in forgeries.items():
        signature = bytes(wallet.sign_typed_data(full_message=forged).signature)
        body = problem(_confirm(client, owner, dataset_id, signature, nonce), 422)
        assert body["code"] == "signature_invalid", (label, body)
        assert "signature" in [e["field"] for e in body.get("errors", [])], body

    genuine = bytes(wallet.sign_typed_data(full_message=typed).signature)
    r, s, v = genuine[:32], int.from_bytes(genuine[32:64], "big"), genuine[64]
    twin = r + (SECP256K1_N - s).to_bytes(32, "big") + bytes([55 - v])
    body = problem(_confirm(client, owner, dataset_id, twin, nonce), 422)
    assert body["code"] in ("signature_high_s", "signature_invalid"), body
    assert "s" in body["detail"]
    assert _signatures(db_engine, dataset_id) == 0

    # The genuine signature still works: the forgeries consumed nothing.
    accepted = _confirm(client, owner, dataset_id, genuine, nonce)
    assert accepted.status_code == 201, accepted.text


# --- idempotency -----------------------------------------------------------------------


def test_a_replayed_idempotency_key_with_another_body_is_a_409(
    client: TestClient, principal: Make, db_engine: Engine
) -> None:
    team = principal("model_team")
    key = {"Idempotency-Key": f"k-{uuid.uuid4().hex}"}
    first = client.post("/v1/models", json={"name": "first"}, headers={**team.headers, **key})
    assert first.status_code == 201, first.text
    before = models_of(db_engine, team)
    problem(
        client.post("/v1/models", json={"name": "second"}, headers={**team.headers, **key}),
        409,
        "idempotency_key_reused",
    )
    assert models_of(db_engine, team) == before
    same = client.post("/v1/models", json={"name": "first"}, headers={**team.headers, **key})
    assert same.status_code == 201 and same.json()["id"] == first.json()["id"]
    assert models_of(db_engine, team) == before


# --- dead credentials ------------------------------------------------------------------


def test_keys_of_revoked_keys_and_disabled_accounts_are_401(
    client: TestClient, principal: Make, db_engine: Engine
) -> None:
    admin = principal("admin")
    revoked, disabled = principal("model_team"), principal("model_team")
    with Session(db_engine) as session:
        key_id = session.execute(
            text("SELECT id FROM api_key WHERE account_id = :a"), {"a": revoked.account_id}
        ).scalar_one()
    assert (
        client.post(
            f"/v1/accounts/{revoked.account_id}/keys/{key_id}/revoke", headers=admin.headers
        ).status_code
        == 200
    )
    assert (
        client.post(
            f"/v1/accounts/{disabled.account_id}/disable", headers=admin.headers
        ).status_code
        == 200
    )
    for dead in (revoked, disabled):
        before = models_of(db_engine, dead)
        problem(client.get("/v1/models", headers=dead.headers), 401)
        problem(client.post("/v1/models", json={"name": "ghost"}, headers=dead.headers), 401)
        assert models_of(db_engine, dead) == before


# --- cross-tenant id guessing ----------------------------------------------------------


def test_guessing_another_tenants_ids_is_a_404_without_their_data(
    client: TestClient, principal: Make, db_engine: Engine
) -> None:
    owner_a, owner_b = principal("owner"), principal("owner")
    team_a, team_b = principal("model_team"), principal("model_team")
    dataset = _register(client, owner_a, [(owner_a.address, 10_000)])
    period = closed_period(db_engine, {owner_a.address: 1})
    with Session(db_engine, expire_on_commit=False) as session:
        model = session.get(Model, period.model_id)
        assert model is not None
        model.account_id = team_a.account_id
        session.add(model)
        job = jobs.create_job(session, "hostile", {}, team_a.account_id)
        session.commit()
    secrets = {str(dataset["id"]), dataset["name"], owner_a.address, str(period.model_id)}
    secrets |= {str(period.period_id), job.id, model.name}

    guesses = [
        (owner_b, "GET", f"/v1/datasets/{dataset['id']}"),
        (owner_b, "GET", f"/v1/datasets/{dataset['id']}/typed-data?signer={owner_b.address}"),
        (team_b, "GET", f"/v1/models/{period.model_id}"),
        (team_b, "GET", f"/v1/periods/{period.period_id}"),
        (team_b, "GET", f"/v1/jobs/{job.id}"),
    ]
    for who, method, path in guesses:
        response = client.request(method, path, headers=who.headers)
        problem(response, 404)
        for secret in secrets - {owner_b.address} - set(path.replace("?", "/").split("/")):
            assert secret not in response.text, (path, secret, response.text)

    def written() -> tuple[int, ...]:
        return (
            datasets_of(db_engine, owner_a),
            models_of(db_engine, team_a),
            count(db_engine, "SELECT count(*) FROM agreement WHERE model_id = :m", m=model.id),
            _signatures(db_engine, str(dataset["id"])),
        )

    before = written()
    writes = [
        (
            team_b,
            f"/v1/models/{period.model_id}/agreements",
            AGREEMENT,
        ),
        (
            owner_b,
            f"/v1/datasets/{dataset['id']}/confirmations",
            {"signer": owner_b.address, "signature": "0x00", "nonce": 0},
        ),
    ]
    for who, path, body in writes:
        response = client.post(path, json=body, headers=who.headers)
        assert response.status_code in (403, 404), response.text
        problem(response, response.status_code)
        assert dataset["name"] not in response.text and model.name not in response.text
    assert written() == before


def test_a_pathologically_deep_body_cannot_crash_a_server_process(database) -> None:  # type: ignore[no-untyped-def]
    """py_ecc raises the recursion limit at import; without our cap a 200,000-deep
    array segfaults the JSON decoder. Run against a real server process."""
    import urllib.error
    import urllib.request

    from tests.api.support import LiveServer

    body = b"[" * 200_000 + b"]" * 200_000
    with LiveServer() as server:
        for path in (
            "/v1/models",
            "/v1/usage/retrievals?model_id=00000000-0000-0000-0000-000000000000",
        ):
            request = urllib.request.Request(
                server.url + path,
                data=body,
                headers={"Content-Type": "application/json", "Authorization": "Bearer uf_x_y"},
            )
            try:
                urllib.request.urlopen(request, timeout=30)
            except urllib.error.HTTPError as exc:
                assert 400 <= exc.code < 500
            assert server.running, "the server process died on a deeply nested body"
        with urllib.request.urlopen(server.url + "/healthz", timeout=10) as health:
            assert health.status == 200
