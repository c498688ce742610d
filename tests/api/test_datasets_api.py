"""Owners register datasets, sign their terms over HTTP, revoke, read usage and disputes;
finance reads everything and resolves disputes."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from eth_account.signers.local import LocalAccount
from fastapi.testclient import TestClient
from sqlalchemy import Engine
from sqlmodel import Session

from ledger.settings import Settings
from ledger.usage.models import UsageRollup
from tests.api.conftest import ApiPrincipal
from tests.api.test_accounts_api import _problem
from tests.ledger import factories

Make = Callable[..., ApiPrincipal]
MARCH = datetime(2026, 3, 10, tzinfo=UTC)


def _files(count: int = 2) -> list[dict[str, Any]]:
    return [
        {
            "path": f"part-{i}.jsonl",
            "size": 100 + i,
            "sha256": hashlib.sha256(os.urandom(8)).hexdigest(),
        }
        for i in range(count)
    ]


def _body(registrant: str, co_owners: list[tuple[str, int]], **extra: Any) -> dict[str, Any]:
    return {
        "registrant": registrant,
        "name": "street photos " + uuid.uuid4().hex[:6],
        "licence": "CC-BY-4.0",
        "allowed_uses": ["train", "rag"],
        "valid_from": "2026-01-01T00:00:00Z",
        "files": _files(),
        "co_owners": [{"address": a, "share_bps": s} for a, s in co_owners],
        **extra,
    }


def _register(
    client: TestClient, owner: ApiPrincipal, co_owners: list[tuple[str, int]], **extra: Any
) -> dict[str, Any]:
    response = client.post(
        "/v1/datasets", json=_body(owner.address, co_owners, **extra), headers=owner.headers
    )
    assert response.status_code == 201, response.text
    return response.json()  # type: ignore[no-any-return]


def _sign(
    client: TestClient,
    who: ApiPrincipal,
    dataset_id: str,
    wallet: LocalAccount,
    kind: str = "confirmation",
    headers: dict[str, str] | None = None,
) -> Any:
    """Fetch the typed data, sign it as a wallet would, submit it."""
    typed = client.get(
        f"/v1/datasets/{dataset_id}/typed-data",
        params={"signer": wallet.address, "kind": kind},
        headers=who.headers,
    )
    assert typed.status_code == 200, typed.text
    document = typed.json()
    signed = wallet.sign_typed_data(full_message=document["typed_data"])
    assert "0x" + signed.message_hash.hex().removeprefix("0x") == document["digest"]
    path = "confirmations" if kind == "confirmation" else "revocations"
    return client.post(
        f"/v1/datasets/{dataset_id}/{path}",
        json={
            "signer": wallet.address,
            "signature": "0x" + signed.signature.hex().removeprefix("0x"),
            "nonce": document["nonce"],
        },
        headers=headers or who.headers,
    )


def test_co_owners_register_sign_and_confirm_a_dataset(client: TestClient, principal: Make) -> None:
    alice, bob, stranger = principal("owner"), principal("owner"), principal("owner")
    dataset = _register(client, alice, [(alice.address, 7_000), (bob.address.lower(), 3_000)])
    assert dataset["status"] == "pending_signatures"
    assert dataset["registrant"] == alice.address
    assert [(c["address"], c["share_bps"], c["confirmed"]) for c in dataset["co_owners"]] == sorted(
        [(alice.address, 7_000, False), (bob.address, 3_000, False)], key=lambda c: c[0].lower()
    )
    assert sorted(dataset["missing_signers"]) == sorted([alice.address, bob.address])
    dataset_id = dataset["id"]

    # Bob sees it (co-owner); a stranger gets 404, as for a dataset that does not exist.
    assert client.get(f"/v1/datasets/{dataset_id}", headers=bob.headers).status_code == 200
    _problem(
        client.get(f"/v1/datasets/{dataset_id}", headers=stranger.headers),
        404,
        "dataset_not_found",
        "dataset_id",
    )
    listed = client.get("/v1/datasets", headers=stranger.headers).json()
    assert dataset_id not in {d["id"] for d in listed["items"]}

    first = _sign(client, alice, dataset_id, alice.wallets[0])
    assert first.status_code == 201, first.text
    assert first.json()["missing_signers"] == [bob.address]
    assert first.json()["dataset_status"] == "pending_signatures"
    second = _sign(client, bob, dataset_id, bob.wallets[0])
    assert second.status_code == 201, second.text
    assert second.json()["dataset_status"] == "confirmed"
    assert second.json()["missing_signers"] == []

    # A used nonce cannot carry another signature.
    reused = client.post(
        f"/v1/datasets/{dataset_id}/confirmations",
        json={
            "signer": bob.address,
            "signature": "0x" + bytes(0).hex(),
            "nonce": second.json()["nonce"],
        },
        headers=bob.headers,
    )
    _problem(reused, 409, "nonce_used", "nonce")

    mine = client.get("/v1/datasets", params={"status": "confirmed"}, headers=bob.headers).json()
    assert dataset_id in {d["id"] for d in mine["items"]}
    finance = principal("finance")
    assert client.get(f"/v1/datasets/{dataset_id}", headers=finance.headers).json()["status"] == (
        "confirmed"
    )
    # Already confirmed: nothing to sign.
    _problem(
        client.get(
            f"/v1/datasets/{dataset_id}/typed-data",
            params={"signer": bob.address},
            headers=bob.headers,
        ),
        409,
        "already_confirmed",
        "signer",
    )


def test_a_replayed_confirmation_returns_the_stored_result(
    client: TestClient, principal: Make
) -> None:
    alice = principal("owner")
    dataset_id = _register(client, alice, [(alice.address, 10_000)])["id"]
    typed = client.get(
        f"/v1/datasets/{dataset_id}/typed-data",
        params={"signer": alice.address},
        headers=alice.headers,
    ).json()
    signature = alice.wallets[0].sign_typed_data(full_message=typed["typed_data"]).signature
    body = {
        "signer": alice.address,
        "signature": "0x" + signature.hex().removeprefix("0x"),
        "nonce": typed["nonce"],
    }
    headers = {**alice.headers, "Idempotency-Key": uuid.uuid4().hex}
    first = client.post(f"/v1/datasets/{dataset_id}/confirmations", json=body, headers=headers)
    assert first.status_code == 201
    assert first.json()["dataset_status"] == "confirmed"
    keyed_replay = client.post(
        f"/v1/datasets/{dataset_id}/confirmations", json=body, headers=headers
    )
    assert keyed_replay.status_code == 201
    assert keyed_replay.json() == first.json()
    assert keyed_replay.headers["idempotent-replayed"] == "true"
    plain_replay = client.post(
        f"/v1/datasets/{dataset_id}/confirmations", json=body, headers=alice.headers
    )
    assert plain_replay.status_code == 200
    assert plain_replay.json()["replayed"] is True


def test_signature_errors_are_precise(
    client: TestClient, principal: Make, chain_settings: Settings
) -> None:
    alice, bob = principal("owner"), principal("owner")
    dataset_id = _register(client, alice, [(alice.address, 5_000), (bob.address, 5_000)])["id"]
    typed = client.get(
        f"/v1/datasets/{dataset_id}/typed-data",
        params={"signer": alice.address},
        headers=alice.headers,
    ).json()
    by_bob = bob.wallets[0].sign_typed_data(full_message=typed["typed_data"]).signature
    wrong_key = _problem(
        client.post(
            f"/v1/datasets/{dataset_id}/confirmations",
            json={
                "signer": alice.address,
                "signature": "0x" + by_bob.hex().removeprefix("0x"),
                "nonce": typed["nonce"],
            },
            headers=alice.headers,
        ),
        422,
        "signature_invalid",
        "signature",
    )
    assert bob.address in wrong_key["detail"]
    _problem(
        client.post(
            f"/v1/datasets/{dataset_id}/confirmations",
            json={"signer": alice.address, "signature": "0x00", "nonce": typed["nonce"] + 5},
            headers=alice.headers,
        ),
        422,
        "nonce_mismatch",
        "nonce",
    )
    outsider = principal("owner")
    _problem(
        client.get(
            f"/v1/datasets/{dataset_id}/typed-data",
            params={"signer": outsider.address},
            headers=alice.headers,
        ),
        403,
        "not_co_owner",
        "signer",
    )
    _problem(
        client.post(
            f"/v1/datasets/{dataset_id}/confirmations",
            json={"signer": alice.address, "signature": "zz", "nonce": 0, "extra": 1},
            headers=alice.headers,
        ),
        422,
        "validation_failed",
        "body/extra",
    )


def test_registration_refuses_what_it_cannot_accept(client: TestClient, principal: Make) -> None:
    alice, bob = principal("owner"), principal("owner")
    _problem(
        client.post(
            "/v1/datasets",
            json=_body(bob.address, [(bob.address, 10_000)]),
            headers=alice.headers,
        ),
        422,
        "registrant_not_yours",
        "registrant",
    )
    _problem(
        client.post(
            "/v1/datasets",
            json=_body(alice.address, [(bob.address, 10_000)]),
            headers=alice.headers,
        ),
        422,
        "registrant_not_co_owner",
        "registrant",
    )
    many = _problem(
        client.post(
            "/v1/datasets",
            json=_body(
                alice.address,
                [(alice.address, 6_000), (bob.address, 3_000)],
                licence="Apache-2.00",
                allowed_uses=["train", "fine-tune"],
            ),
            headers=alice.headers,
        ),
        422,
        "validation_failed",
    )
    fields = {(e["field"], e["code"]) for e in many["errors"]}
    assert ("licence", "licence_unknown") in fields
    assert ("allowed_uses", "allowed_uses_invalid") in fields
    assert any(f == "co_owners" for f, _ in fields), fields
    _problem(
        client.post(
            "/v1/datasets",
            json=_body(alice.address, [(alice.address, 10_000)], files=[]),
            headers=alice.headers,
        ),
        422,
        "validation_failed",
        "files",
    )
    _problem(
        client.post(
            "/v1/datasets",
            json=_body(
                alice.address,
                [(alice.address, 10_000)],
                licence="LicenseRef-lumen-1",
                terms_document_base64="***",
            ),
            headers=alice.headers,
        ),
        422,
        "base64_invalid",
        "terms_document_base64",
    )
    custom = _register(
        client,
        alice,
        [(alice.address, 10_000)],
        licence="LicenseRef-lumen-1",
        terms_document_base64=base64.b64encode(b"Use with attribution.").decode(),
    )
    assert custom["terms_document_sha256"] == hashlib.sha256(b"Use with attribution.").hexdigest()
    for role in ("model_team", "finance", "admin"):
        _problem(
            client.post(
                "/v1/datasets",
                json=_body(alice.address, [(alice.address, 10_000)]),
                headers=principal(role).headers,
            ),
            403,
            "forbidden",
        )


def test_register_from_a_croissant_document(client: TestClient, principal: Make) -> None:
    alice = principal("owner")
    sha = hashlib.sha256(os.urandom(8)).hexdigest()
    croissant = {
        "@context": {"@vocab": "https://schema.org/", "cr": "http://mlcommons.org/croissant/"},
        "@type": "sc:Dataset",
        "name": "city-noise-2024",
        "description": "Street noise readings.",
        "license": "https://creativecommons.org/licenses/by-sa/4.0/",
        "distribution": [
            {"@type": "cr:FileObject", "@id": "train.csv", "name": "train.csv",
             "contentUrl": "data/train.csv", "contentSize": "117743 B", "sha256": sha},
        ],
    }  # fmt: skip
    body = _body(alice.address, [(alice.address, 10_000)], croissant=croissant)
    for field in ("name", "licence", "files"):
        body.pop(field)
    created = client.post("/v1/datasets", json=body, headers=alice.headers)
    assert created.status_code == 201, created.text
    dataset = created.json()
    assert (dataset["name"], dataset["licence"], dataset["file_count"]) == (
        "city-noise-2024",
        "CC-BY-SA-4.0",
        1,
    )
    files = client.get(f"/v1/datasets/{dataset['id']}/files", headers=alice.headers).json()
    assert files["items"] == [{"path": "data/train.csv", "size": 117_743, "sha256": sha}]


def test_only_a_current_co_owner_changes_the_terms(client: TestClient, principal: Make) -> None:
    alice, bob, carol = principal("owner"), principal("owner"), principal("owner")
    dataset = _register(client, alice, [(alice.address, 5_000), (bob.address, 5_000)])
    dataset_id = dataset["id"]
    for who in (alice, bob):
        assert _sign(client, who, dataset_id, who.wallets[0]).status_code == 201

    changed = client.patch(
        f"/v1/datasets/{dataset_id}",
        json={"co_owners": [{"address": alice.address, "share_bps": 6_000},
                            {"address": carol.address, "share_bps": 4_000}]},
        headers=alice.headers,
    )  # fmt: skip
    assert changed.status_code == 200, changed.text
    after = changed.json()
    assert after["terms_version"] == 2
    assert after["status"] == "pending_signatures"
    # Bob loses his share only by signing it away: he still has to sign.
    assert bob.address in after["missing_signers"]

    # Bob still sees the dataset but can no longer change it.
    assert client.get(f"/v1/datasets/{dataset_id}", headers=bob.headers).status_code == 200
    _problem(
        client.patch(f"/v1/datasets/{dataset_id}", json={"name": "mine"}, headers=bob.headers),
        403,
        "not_current_co_owner",
        "dataset_id",
    )
    _problem(
        client.patch(f"/v1/datasets/{dataset_id}", json={"licence": None}, headers=alice.headers),
        422,
        "licence_required",
        "licence",
    )
    renamed = client.patch(
        f"/v1/datasets/{dataset_id}", json={"name": "renamed"}, headers=carol.headers
    )
    assert renamed.status_code == 200
    assert (renamed.json()["name"], renamed.json()["terms_version"]) == ("renamed", 2)
    stranger = principal("owner")
    _problem(
        client.patch(f"/v1/datasets/{dataset_id}", json={"name": "x"}, headers=stranger.headers),
        404,
        "dataset_not_found",
    )


def test_a_co_owner_revokes_and_renewal_asks_for_signatures_again(
    client: TestClient, principal: Make
) -> None:
    alice = principal("owner")
    dataset_id = _register(client, alice, [(alice.address, 10_000)])["id"]
    assert _sign(client, alice, dataset_id, alice.wallets[0]).status_code == 201
    revoked = _sign(client, alice, dataset_id, alice.wallets[0], kind="revocation")
    assert revoked.status_code == 201, revoked.text
    assert revoked.json()["kind"] == "revocation"
    assert revoked.json()["dataset_status"] == "revoked"
    _problem(
        client.get(
            f"/v1/datasets/{dataset_id}/typed-data",
            params={"signer": alice.address},
            headers=alice.headers,
        ),
        409,
        "dataset_revoked",
        "dataset_id",
    )
    renewed = client.patch(
        f"/v1/datasets/{dataset_id}", json={"renew": True}, headers=alice.headers
    )
    assert renewed.json()["status"] == "pending_signatures"
    assert renewed.json()["terms_version"] == 2
    assert _sign(client, alice, dataset_id, alice.wallets[0]).json()["dataset_status"] == (
        "confirmed"
    )


def test_usage_per_period_is_visible_to_its_owners_and_finance(
    client: TestClient, principal: Make, db_engine: Engine
) -> None:
    alice = principal("owner")
    dataset_id = _register(client, alice, [(alice.address, 10_000)])["id"]
    with Session(db_engine, expire_on_commit=False) as session:
        model = factories.make_model(session)
        periods = [
            factories.make_period(session, model.id, datetime(2026, month, 10, tzinfo=UTC))
            for month in (1, 2, 3)
        ]
        for period, tokens in zip(periods, (100, 200, 300), strict=True):
            session.add(
                UsageRollup(
                    model_id=model.id,
                    period_id=period.id,
                    dataset_id=uuid.UUID(dataset_id),
                    kind="train",
                    unit="tokens",
                    list_length=0,
                    rank=0,
                    quantity=tokens,
                    event_count=1,
                )
            )
        for rank, hits in ((1, 4), (2, 3)):
            session.add(
                UsageRollup(
                    model_id=model.id,
                    period_id=periods[2].id,
                    dataset_id=uuid.UUID(dataset_id),
                    kind="rag",
                    unit="hits",
                    list_length=2,
                    rank=rank,
                    quantity=hits,
                    event_count=hits,
                )
            )
        session.commit()  # fmt: skip
    first = client.get(
        f"/v1/datasets/{dataset_id}/usage", params={"limit": 2}, headers=alice.headers
    ).json()
    assert [(u["period"], u["retrieval_hits"]) for u in first["items"]] == [
        ("2026-03", 7),
        ("2026-02", 0),
    ]
    assert first["items"][0]["training"] == [{"unit": "tokens", "quantity": 300, "events": 1}]
    assert first["items"][0]["model_id"] == str(model.id)
    rest = client.get(
        f"/v1/datasets/{dataset_id}/usage",
        params={"limit": 2, "cursor": first["next_cursor"]},
        headers=alice.headers,
    ).json()
    assert [u["period"] for u in rest["items"]] == ["2026-01"]
    assert rest["next_cursor"] is None
    finance = principal("finance")
    assert (
        len(client.get(f"/v1/datasets/{dataset_id}/usage", headers=finance.headers).json()["items"])
        == 3
    )
    _problem(
        client.get(f"/v1/datasets/{dataset_id}/usage", headers=principal("owner").headers),
        404,
        "dataset_not_found",
    )
    _problem(
        client.get(f"/v1/datasets/{dataset_id}/usage", headers=principal("model_team").headers),
        403,
        "forbidden",
    )


def test_disputes_are_seen_by_both_sides_and_resolved_by_finance(
    client: TestClient, principal: Make
) -> None:
    alice, mallory, stranger = principal("owner"), principal("owner"), principal("owner")
    files = _files()
    original = _register(client, alice, [(alice.address, 10_000)], files=files)
    copy = _register(client, mallory, [(mallory.address, 10_000)], files=files)
    assert copy["status"] == "disputed"
    dispute_id = copy["open_disputes"][0]

    for side in (alice, mallory):
        listed = client.get("/v1/disputes", params={"status": "open"}, headers=side.headers)
        assert dispute_id in {d["id"] for d in listed.json()["items"]}
        assert client.get(f"/v1/disputes/{dispute_id}", headers=side.headers).status_code == 200
    assert dispute_id not in {
        d["id"] for d in client.get("/v1/disputes", headers=stranger.headers).json()["items"]
    }
    _problem(
        client.get(f"/v1/disputes/{dispute_id}", headers=stranger.headers),
        404,
        "dispute_not_found",
    )
    _problem(
        client.post(
            f"/v1/disputes/{dispute_id}/resolve",
            json={"resolution": "upheld", "note": "mine"},
            headers=mallory.headers,
        ),
        403,
        "forbidden",
    )

    finance = principal("finance")
    resolved = client.post(
        f"/v1/disputes/{dispute_id}/resolve",
        json={"resolution": "rejected", "note": "copied from the original registration"},
        headers=finance.headers,
    )
    assert resolved.status_code == 200, resolved.text
    assert (resolved.json()["status"], resolved.json()["resolution"]) == ("resolved", "rejected")
    assert client.get(f"/v1/datasets/{copy['id']}", headers=finance.headers).json()["status"] == (
        "rejected"
    )
    assert client.get(f"/v1/datasets/{original['id']}", headers=alice.headers).json()["status"] == (
        "pending_signatures"
    )
    for target, body, status, code, field in (
        (dispute_id, {"resolution": "upheld", "note": "changed my mind"}, 409,
         "dispute_resolved", "dispute_id"),
        (uuid.uuid4(), {"resolution": "upheld", "note": "x"}, 404, "dispute_not_found", None),
        (dispute_id, {"resolution": "maybe", "note": "x"}, 422, "validation_failed",
         "body/resolution"),
    ):  # fmt: skip
        _problem(
            client.post(f"/v1/disputes/{target}/resolve", json=body, headers=finance.headers),
            status,
            code,
            field,
        )


def test_dataset_lists_page_without_gaps(client: TestClient, principal: Make) -> None:
    alice = principal("owner")
    made = [_register(client, alice, [(alice.address, 10_000)])["id"] for _ in range(3)]
    first = client.get("/v1/datasets", params={"limit": 2}, headers=alice.headers).json()
    second = client.get(
        "/v1/datasets", params={"limit": 2, "cursor": first["next_cursor"]}, headers=alice.headers
    ).json()
    assert [d["id"] for d in first["items"] + second["items"]] == list(reversed(made))
    assert second["next_cursor"] is None
    _problem(
        client.get(
            "/v1/datasets",
            params={"cursor": base64.urlsafe_b64encode(json.dumps([1, 2]).encode()).decode()},
            headers=alice.headers,
        ),
        422,
        "invalid_cursor",
        "cursor",
    )


# --- the same operations from the command line ----------------------------------------------


def test_owner_cli_registers_a_folder_signs_and_revokes(
    client: TestClient, principal: Make, tmp_path: Path
) -> None:
    from typer.testing import CliRunner

    from api.cli import app

    alice, bob = principal("owner"), principal("owner")
    folder = tmp_path / "photos"
    (folder / "a").mkdir(parents=True)
    (folder / "a" / "one.jpg").write_bytes(os.urandom(2048))
    (folder / "captions.jsonl").write_text('{"id": 1}\n')
    runner = CliRunner()
    registered = runner.invoke(
        app,
        ["owner", "dataset", "register", str(folder), "--registrant", alice.address,
         "--co-owner", f"{alice.address}:6000:Alice", "--co-owner", f"{bob.address}:4000",
         "--use", "train", "--valid-from", "2026-01-01T00:00:00Z", "--licence", "MIT", "--json"],
    )  # fmt: skip
    assert registered.exit_code == 0, registered.output
    dataset = json.loads(registered.stdout)
    assert (dataset["name"], dataset["file_count"], dataset["allowed_uses"]) == (
        "photos",
        2,
        ["train"],
    )
    dataset_id = dataset["id"]

    typed = runner.invoke(
        app, ["owner", "dataset", "typed-data", dataset_id, "--signer", bob.address, "--json"]
    )
    assert json.loads(typed.stdout)["typed_data"]["primaryType"] == "RightsConfirmation"
    api_typed = client.get(
        f"/v1/datasets/{dataset_id}/typed-data",
        params={"signer": bob.address},
        headers=bob.headers,
    ).json()
    assert json.loads(typed.stdout) == api_typed  # the CLI and the API agree to the byte

    for who in (alice, bob):
        env = {"SIGNER_KEY": who.wallets[0].key.hex()}
        signed = runner.invoke(
            app,
            ["owner", "dataset", "sign", dataset_id, "--private-key-env", "SIGNER_KEY", "--json"],
            env=env,
        )
        assert signed.exit_code == 0, signed.output
    assert json.loads(signed.stdout)["dataset_status"] == "confirmed"
    seen = client.get(f"/v1/datasets/{dataset_id}", headers=alice.headers).json()
    assert seen["status"] == "confirmed"

    missing = runner.invoke(
        app, ["owner", "dataset", "revoke", dataset_id, "--private-key-env", "NOT_SET_ANYWHERE"]
    )
    assert getattr(missing.exception, "code", None) == "private_key_missing"
    revoked = runner.invoke(
        app,
        ["owner", "dataset", "revoke", dataset_id, "--private-key-env", "SIGNER_KEY", "--json"],
        env={"SIGNER_KEY": bob.wallets[0].key.hex()},
    )
    assert revoked.exit_code == 0, revoked.output
    assert json.loads(revoked.stdout)["dataset_status"] == "revoked"
    listed = runner.invoke(app, ["owner", "dataset", "list", "--address", bob.address, "--json"])
    assert [d["status"] for d in json.loads(listed.stdout)] == ["revoked"]


def test_dataset_text_with_a_nul_character_is_refused(client: TestClient, principal: Make) -> None:
    alice = principal("owner")
    for extra, field in (
        ({"description": "d\u0000"}, "description"),
        ({"co_owners": [{"address": alice.address, "share_bps": 10_000, "display_name": "\u0000"}]},
         "co_owners/0/display_name"),
        ({"croissant": {"name": "n", "license": "MIT\u0000"}}, "croissant"),
    ):  # fmt: skip
        body = {**_body(alice.address, [(alice.address, 10_000)]), **extra}
        response = client.post("/v1/datasets", json=body, headers=alice.headers)
        assert response.status_code == 422, response.text
        assert field in [e["field"] for e in response.json()["errors"]]
