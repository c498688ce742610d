"""Admin manages accounts and API keys; owners link the addresses they control."""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Callable

from eth_account import Account as EthAccount
from eth_account.messages import encode_defunct
from fastapi.testclient import TestClient
from sqlalchemy import Engine, text
from sqlmodel import Session

from ledger.settings import Settings
from tests.api.conftest import ApiPrincipal

Make = Callable[..., ApiPrincipal]


def _problem(response, status: int, code: str, field: str | None = None) -> dict:  # type: ignore[no-untyped-def]
    """Assert a problem+json answer with ``status`` and ``code`` (and failing ``field``)."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert body["code"] == code, body
    assert body["type"] == f"urn:usefirst:problem:{code}"
    if field is not None:
        assert field in [e["field"] for e in body.get("errors", [])], body
    return body


# --- accounts and keys --------------------------------------------------------------------


def test_admin_creates_an_account_and_a_key_that_is_shown_once(
    client: TestClient, principal: Make, db_engine: Engine
) -> None:
    admin = principal("admin")
    created = client.post(
        "/v1/accounts",
        json={"role": "owner", "display_name": "Lumen Archive", "contact": "ops@lumen.example"},
        headers=admin.headers,
    )
    assert created.status_code == 201, created.text
    account = created.json()
    assert (account["role"], account["display_name"], account["disabled_at"]) == (
        "owner",
        "Lumen Archive",
        None,
    )

    idem = {**admin.headers, "Idempotency-Key": uuid.uuid4().hex}
    issued = client.post(
        f"/v1/accounts/{account['id']}/keys", json={"label": "laptop"}, headers=idem
    )
    assert issued.status_code == 201, issued.text
    assert issued.headers["cache-control"] == "no-store"
    key = issued.json()
    assert key["key"].startswith(f"uf_{key['prefix']}_")
    assert key["label"] == "laptop"

    me = client.get("/v1/me", headers={"Authorization": f"Bearer {key['key']}"})
    assert me.status_code == 200
    assert me.json()["account_id"] == account["id"]
    assert me.json()["key_prefix"] == key["prefix"]

    # The replay returns the record, never the secret: it was not stored anywhere.
    replay = client.post(
        f"/v1/accounts/{account['id']}/keys", json={"label": "laptop"}, headers=idem
    )
    assert replay.status_code == 201
    assert replay.headers["idempotent-replayed"] == "true"
    assert replay.json() == {**key, "key": None}
    with Session(db_engine) as session:
        stored = session.execute(
            text(
                "SELECT key_sha256 FROM api_key WHERE id = :id "
                "UNION ALL SELECT response_body::text FROM idempotency_record WHERE key = :k"
            ),
            {"id": key["id"], "k": idem["Idempotency-Key"]},
        ).scalars()
        values = list(stored)
    assert values[0] == hashlib.sha256(key["key"].encode()).hexdigest()
    assert all(key["key"] not in value for value in values)

    listed = client.get(f"/v1/accounts/{account['id']}/keys", headers=admin.headers).json()
    assert [k["id"] for k in listed["items"]] == [key["id"]]
    assert "key" not in listed["items"][0]
    assert key["key"] not in str(listed)


def test_a_revoked_key_and_a_disabled_account_stop_authenticating(
    client: TestClient, principal: Make
) -> None:
    admin = principal("admin")
    team = principal("model_team")
    keys = client.get(f"/v1/accounts/{team.account_id}/keys", headers=admin.headers).json()
    key_id = keys["items"][0]["id"]

    revoked = client.post(
        f"/v1/accounts/{team.account_id}/keys/{key_id}/revoke", headers=admin.headers
    )
    assert revoked.status_code == 200
    assert revoked.json()["revoked_at"] is not None
    again = client.post(
        f"/v1/accounts/{team.account_id}/keys/{key_id}/revoke", headers=admin.headers
    )
    assert again.json()["revoked_at"] == revoked.json()["revoked_at"]
    body = _problem(client.get("/v1/me", headers=team.headers), 401, "unauthorized")
    assert "revoked" in body["detail"]

    owner = principal("owner")
    disabled = client.post(f"/v1/accounts/{owner.account_id}/disable", headers=admin.headers)
    assert disabled.status_code == 200
    assert disabled.json()["disabled_at"] is not None
    body = _problem(client.get("/v1/me", headers=owner.headers), 401, "unauthorized")
    assert "disabled" in body["detail"]
    _problem(
        client.post(f"/v1/accounts/{owner.account_id}/keys", headers=admin.headers),
        409,
        "account_disabled",
        "account_id",
    )


def test_admin_errors_are_precise(client: TestClient, principal: Make) -> None:
    admin = principal("admin")
    other = principal("finance")
    _problem(
        client.post(f"/v1/accounts/{admin.account_id}/disable", headers=admin.headers),
        409,
        "cannot_disable_self",
        "account_id",
    )
    _problem(
        client.get(f"/v1/accounts/{uuid.uuid4()}", headers=admin.headers),
        404,
        "account_not_found",
        "account_id",
    )
    other_key = client.get(f"/v1/accounts/{other.account_id}/keys", headers=admin.headers)
    key_id = other_key.json()["items"][0]["id"]
    # A key id is found only under its own account.
    _problem(
        client.post(f"/v1/accounts/{admin.account_id}/keys/{key_id}/revoke", headers=admin.headers),
        404,
        "api_key_not_found",
        "key_id",
    )
    _problem(
        client.post(
            "/v1/accounts", json={"role": "root", "display_name": "x"}, headers=admin.headers
        ),
        422,
        "validation_failed",
        "body/role",
    )
    unknown = _problem(
        client.post(
            "/v1/accounts",
            json={"role": "owner", "display_name": "x", "is_admin": True},
            headers=admin.headers,
        ),
        422,
        "validation_failed",
        "body/is_admin",
    )
    assert unknown["errors"][0]["code"] == "extra_forbidden"
    _problem(
        client.get("/v1/accounts", params={"cursor": "bm90LW91cnM"}, headers=admin.headers),
        422,
        "invalid_cursor",
        "cursor",
    )


def test_only_admins_manage_accounts(client: TestClient, principal: Make) -> None:
    for role in ("owner", "model_team", "finance"):
        who = principal(role)
        body = _problem(client.get("/v1/accounts", headers=who.headers), 403, "forbidden")
        assert f"your key belongs to a {role} account" in body["detail"]
        _problem(
            client.post(
                "/v1/accounts", json={"role": "admin", "display_name": "me"}, headers=who.headers
            ),
            403,
            "forbidden",
        )


def test_account_list_pages_with_a_cursor_without_gaps(client: TestClient, principal: Make) -> None:
    admin = principal("admin")
    made = [principal("model_team").account_id for _ in range(3)]
    seen: list[str] = []
    cursor = None
    while True:
        params = {"role": "model_team", "limit": 2, **({"cursor": cursor} if cursor else {})}
        page = client.get("/v1/accounts", params=params, headers=admin.headers).json()
        assert len(page["items"]) <= 2
        seen += [a["id"] for a in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert len(seen) == len(set(seen))
    assert {str(a) for a in made} <= set(seen)


# --- owner addresses ----------------------------------------------------------------------


def _link(client: TestClient, owner: ApiPrincipal, wallet, **extra) -> object:  # type: ignore[no-untyped-def]
    challenge = client.get(
        "/v1/owners/addresses/challenge",
        params={"address": wallet.address.lower()},
        headers=owner.headers,
    )
    assert challenge.status_code == 200, challenge.text
    assert challenge.json()["address"] == wallet.address
    message = challenge.json()["message"]
    assert str(owner.account_id) in message
    signature = wallet.sign_message(encode_defunct(text=message)).signature.hex()
    return client.post(
        "/v1/owners/addresses",
        json={"address": wallet.address, "signature": "0x" + signature.removeprefix("0x"), **extra},
        headers=owner.headers,
    )


def test_an_owner_links_an_address_it_proves_to_control(
    client: TestClient, principal: Make
) -> None:
    owner = principal("owner", wallets=0)
    wallet = EthAccount.create()
    linked = _link(client, owner, wallet, display_name="Treasury")
    assert linked.status_code == 201, linked.text  # type: ignore[attr-defined]
    assert linked.json()["display_name"] == "Treasury"  # type: ignore[attr-defined]
    again = _link(client, owner, wallet)
    assert again.status_code == 200  # type: ignore[attr-defined]
    listed = client.get("/v1/owners/addresses", headers=owner.headers).json()
    assert [a["address"] for a in listed["items"]] == [wallet.address]
    assert client.get("/v1/me", headers=owner.headers).json()["owner_addresses"] == [wallet.address]

    other = principal("owner", wallets=0)
    taken = _link(client, other, wallet)
    _problem(taken, 409, "address_taken", "address")


def test_a_proof_for_another_account_or_key_is_refused(
    client: TestClient, principal: Make, chain_settings: Settings
) -> None:
    owner = principal("owner", wallets=0)
    victim = principal("owner")  # its address must not be linkable by someone else
    thief_wallet = EthAccount.create()
    message = (
        f"usefirst: I control {victim.address} and link it to account {owner.account_id}.\n"
        "Signing this moves no funds and grants no allowance."
    )
    forged = thief_wallet.sign_message(encode_defunct(text=message)).signature.hex()
    body = _problem(
        client.post(
            "/v1/owners/addresses",
            json={"address": victim.address, "signature": "0x" + forged.removeprefix("0x")},
            headers=owner.headers,
        ),
        422,
        "address_proof_invalid",
        "signature",
    )
    assert thief_wallet.address in body["detail"]
    _problem(
        client.get(
            "/v1/owners/addresses/challenge",
            params={"address": "0x" + "0" * 40},
            headers=owner.headers,
        ),
        422,
        "address_zero",
        "address",
    )
    for role in ("model_team", "finance", "admin"):
        _problem(
            client.get("/v1/owners/addresses", headers=principal(role).headers), 403, "forbidden"
        )


# --- the same operations from the command line ----------------------------------------------


def test_admin_cli_creates_lists_and_revokes_keys(client: TestClient) -> None:
    from typer.testing import CliRunner

    from api.cli import app

    runner = CliRunner()
    created = runner.invoke(
        app, ["admin", "account", "create", "--role", "finance", "--name", "Books", "--json"]
    )
    assert created.exit_code == 0, created.output
    made = json.loads(created.stdout)
    key = made["api_key"]["key"]
    assert client.get("/v1/me", headers={"Authorization": f"Bearer {key}"}).json()["role"] == (
        "finance"
    )
    account_id = made["account"]["id"]

    listed = runner.invoke(app, ["admin", "key", "list", account_id, "--json"])
    assert listed.exit_code == 0, listed.output
    keys = json.loads(listed.stdout)
    assert [k["prefix"] for k in keys] == [made["api_key"]["prefix"]]
    assert key not in listed.stdout

    second = runner.invoke(app, ["admin", "key", "create", account_id, "--label", "ci"])
    assert second.exit_code == 0, second.output
    assert second.stdout.count("uf_") == 1  # printed once, in plain text mode too

    revoked = runner.invoke(app, ["admin", "key", "revoke", keys[0]["id"], "--json"])
    assert json.loads(revoked.stdout)["revoked_at"] is not None
    assert client.get("/v1/me", headers={"Authorization": f"Bearer {key}"}).status_code == 401

    disabled = runner.invoke(app, ["admin", "account", "disable", account_id, "--json"])
    assert json.loads(disabled.stdout)["disabled_at"] is not None
    refused = runner.invoke(app, ["admin", "key", "create", account_id])
    assert refused.exit_code != 0
    assert getattr(refused.exception, "code", None) == "account_disabled"


def test_text_with_a_nul_character_is_refused_not_a_500(
    client: TestClient, principal: Make
) -> None:
    admin = principal("admin")
    _problem(
        client.post(
            "/v1/accounts",
            json={"role": "owner", "display_name": "a\u0000b"},
            headers=admin.headers,
        ),
        422,
        "validation_failed",
        "display_name",
    )
    team = principal("model_team")
    _problem(
        client.post(
            f"/v1/accounts/{team.account_id}/keys", json={"label": "l\u0000"}, headers=admin.headers
        ),
        422,
        "validation_failed",
        "label",
    )
    _problem(
        client.post("/v1/models", json={"name": "m\u0000"}, headers=team.headers),
        422,
        "validation_failed",
        "name",
    )
    _problem(
        client.get(
            "/v1/owners/addresses",
            params={"cursor": "Ilx1MDAwMCI"},
            headers=principal("owner").headers,
        ),
        422,
        "invalid_cursor",
        "cursor",
    )
