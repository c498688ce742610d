"""``/v1/usage/*`` and ``/v1/quarantine``: bodies (JSON arrays, NDJSON), per-event
results, limits, idempotency, who may do what, and the summary. Real app, real
PostgreSQL."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, text
from sqlmodel import Session

from ledger.usage.schemas import BATCH_EVENTS_MAX
from tests.api.conftest import ApiPrincipal
from tests.ledger import factories

AT = "2026-03-10T12:00:00Z"
PROBLEM = "application/problem+json"
NDJSON = {"Content-Type": "application/x-ndjson"}


@dataclass
class World:
    team: ApiPrincipal
    model_id: uuid.UUID
    datasets: list[uuid.UUID]


@pytest.fixture
def world(principal: Callable[..., ApiPrincipal], db_engine: Engine) -> World:
    """A model team with one model (agreement in tokens) and two datasets confirmed for
    both uses."""
    return _world(principal, db_engine)


def _world(principal: Callable[..., ApiPrincipal], db_engine: Engine) -> World:
    team = principal("model_team")
    with Session(db_engine, expire_on_commit=False) as session:
        model = factories.make_model(session)
        model.account_id = team.account_id
        session.add(model)
        datasets = [factories.make_dataset(session).id for _ in range(2)]
        session.commit()
    return World(team, model.id, datasets)


def retrieval(world: World, event_id: str | None = None, **fields: Any) -> dict[str, Any]:
    return {
        "event_id": event_id or f"r-{uuid.uuid4().hex[:12]}",
        "query_id": "q-1",
        "occurred_at": AT,
        "chunks": [
            {"dataset_id": str(d), "chunk_id": f"c-{rank}", "rank": rank, "score": 0.5}
            for rank, d in enumerate(world.datasets, start=1)
        ],
    } | fields


def training(world: World, event_id: str | None = None, **fields: Any) -> dict[str, Any]:
    return {
        "event_id": event_id or f"t-{uuid.uuid4().hex[:12]}",
        "run_id": "run-1",
        "dataset_id": str(world.datasets[0]),
        "unit": "tokens",
        "quantity": 1_000,
        "epochs": 2,
        "occurred_at": AT,
    } | fields


def post(
    client: TestClient,
    world: World,
    kind: str,
    body: Any,
    headers: dict[str, str] | None = None,
    who: ApiPrincipal | None = None,
) -> Any:
    content = body if isinstance(body, str | bytes) else json.dumps(body)
    return client.post(
        f"/v1/usage/{kind}",
        params={"model_id": str(world.model_id)},
        content=content,
        headers={
            "Content-Type": "application/json",
            **(who or world.team).headers,
            **(headers or {}),
        },
    )


def stored(db_engine: Engine, model_id: uuid.UUID) -> dict[str, int]:
    """What ingestion wrote for a model."""
    with Session(db_engine) as session:
        return {
            table: session.execute(
                text(f"SELECT count(*) FROM {table} WHERE model_id = :m"),
                {"m": model_id},
            ).scalar_one()
            for table in (
                "usage_training_event",
                "usage_retrieval_event",
                "usage_rollup",
                "usage_quarantine",
            )
        }


def assert_problem(response: Any, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(PROBLEM)
    body: dict[str, Any] = response.json()
    assert body["code"] == code and body["type"] == f"urn:usefirst:problem:{code}"
    return body


# --- accepted batches ----------------------------------------------------------------


def test_a_json_array_of_retrievals_is_accepted_with_results_in_order(
    client: TestClient, world: World, db_engine: Engine
) -> None:
    events = [retrieval(world), retrieval(world)]
    response = post(client, world, "retrievals", events)
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["kind"], body["received"], body["accepted"]) == ("retrieval", 2, 2)
    assert (body["duplicates"], body["rejected"]) == (0, 0)
    assert body["model_id"] == str(world.model_id)
    assert body["results"] == [
        {"index": 0, "event_id": events[0]["event_id"], "status": "accepted"},
        {"index": 1, "event_id": events[1]["event_id"], "status": "accepted"},
    ]
    counts = stored(db_engine, world.model_id)
    assert counts["usage_retrieval_event"] == 2
    assert counts["usage_rollup"] == 2  # (dataset, rank) × 1 period


def test_an_ndjson_stream_is_decoded_line_by_line(client: TestClient, world: World) -> None:
    events = [training(world) for _ in range(300)]
    lines = "".join(json.dumps(e) + "\n" for e in events).encode()

    def pieces() -> Iterator[bytes]:  # a streamed body, cut in the middle of lines
        for start in range(0, len(lines), 1_000):
            yield lines[start : start + 1_000]

    response = client.post(
        "/v1/usage/training",
        params={"model_id": str(world.model_id)},
        content=pieces(),
        headers={**NDJSON, **world.team.headers},
    )
    assert response.status_code == 200, response.text
    assert response.json()["accepted"] == 300


def test_a_broken_ndjson_line_rejects_only_its_event(
    client: TestClient, world: World, db_engine: Engine
) -> None:
    good = [training(world), training(world)]
    body = "\r\n".join([json.dumps(good[0]), '{"event_id": "broken", ', "", json.dumps(good[1])])
    response = post(client, world, "training", body, NDJSON)
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    assert [r["status"] for r in results] == ["accepted", "rejected", "accepted"]
    broken = results[1]
    assert (broken["index"], broken["code"], broken["field"]) == (1, "malformed_json", "events/1")
    assert "line 2 of the NDJSON body" in broken["message"]
    assert "not valid JSON" in broken["message"]
    assert stored(db_engine, world.model_id)["usage_quarantine"] == 1


def test_a_replayed_event_is_a_duplicate(client: TestClient, world: World) -> None:
    event = retrieval(world)
    assert post(client, world, "retrievals", [event]).json()["accepted"] == 1
    again = post(client, world, "retrievals", [event, retrieval(world)]).json()
    assert [r["status"] for r in again["results"]] == ["duplicate", "accepted"]
    changed = post(client, world, "retrievals", [event | {"query_id": "other"}]).json()
    [result] = changed["results"]
    assert (result["code"], result["field"]) == ("event_id_conflict", "events/0/event_id")
    assert "differs in: query_id" in result["message"]


# --- precise rejects, nothing written ----------------------------------------------------


BAD_TRAINING: list[tuple[Callable[[World], dict[str, Any]], str, str]] = [
    (lambda w: training(w, quantity="1000"), "invalid_type", "quantity"),
    (lambda w: training(w, quantity=-5), "quantity_out_of_range", "quantity"),
    (lambda w: training(w, quantity=10**30), "quantity_out_of_range", "quantity"),
    (lambda w: training(w, epochs=0), "epochs_out_of_range", "epochs"),
    (lambda w: training(w, colour="red"), "unknown_field", "colour"),
    (lambda w: training(w, occurred_at="2026-03-10T12:00:00"), "naive_datetime", "occurred_at"),
    (lambda w: training(w, occurred_at="yesterday"), "invalid_datetime", "occurred_at"),
    (lambda w: training(w, dataset_id="not-a-uuid"), "invalid_value", "dataset_id"),
    (lambda w: training(w, unit="bytes"), "unit_mismatch", "unit"),
    (lambda w: training(w, occurred_at="2024-06-01T00:00:00Z"), "no_agreement", "occurred_at"),
    (lambda w: training(w, dataset_id=str(uuid.uuid4())), "unknown_dataset", "dataset_id"),
]


@pytest.mark.parametrize(("build", "code", "field"), BAD_TRAINING)
def test_bad_training_events_are_rejected_precisely_and_nothing_is_written(
    client: TestClient,
    world: World,
    db_engine: Engine,
    build: Callable[[World], dict[str, Any]],
    code: str,
    field: str,
) -> None:
    response = post(client, world, "training", [build(world)])
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["accepted"], body["rejected"]) == (0, 1)
    [result] = body["results"]
    assert (result["status"], result["code"], result["field"]) == (
        "rejected",
        code,
        f"events/0/{field}",
    )
    assert result["message"]
    counts = stored(db_engine, world.model_id)
    assert (counts["usage_training_event"], counts["usage_rollup"]) == (0, 0)
    assert counts["usage_quarantine"] == 1


def test_bad_retrieval_events_are_rejected_with_chunk_paths(
    client: TestClient, world: World, db_engine: Engine
) -> None:
    good = retrieval(world)
    wrong_rank = retrieval(world)
    wrong_rank["chunks"][1]["rank"] = 7
    stray = retrieval(world)
    stray["chunks"][0]["colour"] = "red"
    huge_score = retrieval(world)
    huge_score["chunks"][1]["score"] = 10**400
    response = post(client, world, "retrievals", [wrong_rank, stray, huge_score, good])
    results = response.json()["results"]
    assert [(r["status"], r.get("code"), r.get("field")) for r in results] == [
        ("rejected", "rank_gap", "events/0/chunks/1/rank"),
        ("rejected", "unknown_field", "events/1/chunks/0/colour"),
        ("rejected", "invalid_value", "events/2/chunks/1/score"),
        ("accepted", None, None),
    ]
    assert stored(db_engine, world.model_id)["usage_retrieval_event"] == 1


def test_a_repeated_key_rejects_the_event_naming_the_key(
    client: TestClient, world: World, db_engine: Engine
) -> None:
    event = json.dumps(training(world))
    repeated_top = event[:-1] + ', "quantity": 5}'
    chunked = json.dumps(retrieval(world)).replace('"rank": 1', '"rank": 1, "rank": 1')
    response = post(client, world, "training", f"[{repeated_top}]")
    [result] = response.json()["results"]
    assert (result["code"], result["field"]) == ("duplicate_key", "events/0/quantity")
    response = post(client, world, "retrievals", chunked + "\n", NDJSON)
    [result] = response.json()["results"]
    assert (result["code"], result["field"]) == ("duplicate_key", "events/0/chunks/0/rank")
    counts = stored(db_engine, world.model_id)
    assert counts["usage_training_event"] == counts["usage_retrieval_event"] == 0


def test_events_outside_the_open_period_are_rejected(
    client: TestClient, world: World, db_engine: Engine
) -> None:
    with Session(db_engine) as session:
        factories.make_period(session, world.model_id, datetime(2026, 2, 5, tzinfo=UTC), "closed")
        session.commit()
    response = post(
        client,
        world,
        "retrievals",
        [retrieval(world, occurred_at="2026-02-05T10:00:00+01:00"), retrieval(world)],
    )
    results = response.json()["results"]
    assert (results[0]["code"], results[0]["field"]) == ("period_not_open", "events/0/occurred_at")
    assert "2026-02" in results[0]["message"]
    assert results[1]["status"] == "accepted"
    future = post(
        client, world, "retrievals", [retrieval(world, occurred_at="2999-01-01T00:00:00Z")]
    )
    assert future.json()["results"][0]["code"] == "occurred_in_future"


# --- whole-request errors ----------------------------------------------------------------


def test_malformed_json_is_a_400_problem(
    client: TestClient, world: World, db_engine: Engine
) -> None:
    body = assert_problem(
        post(client, world, "training", '[{"event_id": "a",'), 400, "malformed_json"
    )
    assert "not valid JSON" in body["detail"]
    deep = assert_problem(post(client, world, "training", "[" * 100_000), 400, "malformed_json")
    assert "nested too deeply" in deep["detail"]  # and the worker is still alive
    body = assert_problem(post(client, world, "training", "[NaN]"), 400, "malformed_json")
    assert "NaN" in body["detail"]
    body = assert_problem(post(client, world, "training", {"events": []}), 422, "invalid_type")
    assert body["errors"][0]["field"] == "body"
    assert stored(db_engine, world.model_id)["usage_quarantine"] == 0


def test_more_than_the_batch_limit_is_a_413_naming_it(client: TestClient, world: World) -> None:
    events = "[" + ",".join(["{}"] * (BATCH_EVENTS_MAX + 1)) + "]"
    body = assert_problem(post(client, world, "retrievals", events), 413, "too_many_events")
    assert body["max_events"] == BATCH_EVENTS_MAX
    assert str(BATCH_EVENTS_MAX) in body["detail"]
    lines = "{}\n" * (BATCH_EVENTS_MAX + 1)
    body = assert_problem(post(client, world, "training", lines, NDJSON), 413, "too_many_events")
    assert body["max_events"] == BATCH_EVENTS_MAX


def test_other_media_types_are_refused(client: TestClient, world: World) -> None:
    response = post(client, world, "training", "a,b", {"Content-Type": "text/csv"})
    assert_problem(response, 415, "unsupported_media_type")


# --- idempotency -------------------------------------------------------------------------


def test_a_retry_with_the_idempotency_key_returns_the_original_response(
    client: TestClient, world: World, db_engine: Engine
) -> None:
    events = [retrieval(world), {"event_id": "bad"}]
    key = {"Idempotency-Key": f"batch-{uuid.uuid4()}"}
    first = post(client, world, "retrievals", events, key)
    assert first.status_code == 200
    before = stored(db_engine, world.model_id)
    replay = post(client, world, "retrievals", events, key)
    assert replay.status_code == 200
    assert replay.headers["Idempotent-Replayed"] == "true"
    assert replay.json() == first.json()  # accepted again, not "duplicate"
    assert stored(db_engine, world.model_id) == before
    other = post(client, world, "retrievals", [retrieval(world)], key)
    assert_problem(other, 409, "idempotency_key_reused")
    lines = json.dumps(training(world)) + "\n"
    ndjson_key = NDJSON | {"Idempotency-Key": f"ndjson-{uuid.uuid4()}"}
    first = post(client, world, "training", lines, ndjson_key)
    replay = post(client, world, "training", lines, ndjson_key)
    assert first.json()["accepted"] == 1 and replay.json() == first.json()
    assert replay.headers["Idempotent-Replayed"] == "true"


# --- who may report ----------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["training", "retrievals"])
@pytest.mark.parametrize(
    ("role", "status"),
    [("owner", 403), ("finance", 403), ("admin", 403), ("model_team", 404)],
)
def test_only_the_owning_team_reports_usage(
    client: TestClient,
    world: World,
    principal: Callable[..., ApiPrincipal],
    db_engine: Engine,
    kind: str,
    role: str,
    status: int,
) -> None:
    event = training(world) if kind == "training" else retrieval(world)
    response = post(client, world, kind, [event], who=principal(role))
    assert_problem(response, status, "forbidden" if status == 403 else "not_found")
    assert sum(stored(db_engine, world.model_id).values()) == 0


def test_an_unknown_model_and_no_key(client: TestClient, world: World) -> None:
    response = client.post(
        "/v1/usage/training",
        params={"model_id": str(uuid.uuid4())},
        json=[],
        headers=world.team.headers,
    )
    assert_problem(response, 404, "not_found")
    response = client.post("/v1/usage/training", params={"model_id": str(world.model_id)}, json=[])
    assert_problem(response, 401, "unauthorized")


# --- summary -----------------------------------------------------------------------------


def test_the_summary_counts_events_rollups_and_reasons(
    client: TestClient, world: World, principal: Callable[..., ApiPrincipal]
) -> None:
    post(client, world, "retrievals", [retrieval(world) for _ in range(3)])
    post(client, world, "training", [training(world), training(world, quantity=500, epochs=1)])
    post(client, world, "training", [training(world, dataset_id=str(uuid.uuid4()))] * 2)
    params = {"model_id": str(world.model_id), "period": "2026-03"}
    response = client.get("/v1/usage/summary", params=params, headers=world.team.headers)
    assert response.status_code == 200, response.text
    summary = response.json()
    assert summary["period_state"] == "open"
    assert summary["accepted_events"] == {"training": 2, "retrieval": 3}
    by_dataset = {d["dataset_id"]: d for d in summary["datasets"]}
    first, second = (by_dataset[str(d)] for d in world.datasets)
    assert first["training"] == [{"unit": "tokens", "quantity": 2_500, "events": 2}]
    assert (first["retrieval_hits"], second["retrieval_hits"]) == (3, 3)
    # Two identical rejects are filed for review once.
    assert summary["top_rejection_reasons"] == [{"reason_code": "unknown_dataset", "events": 1}]
    assert summary["rejected_open"] == 1

    finance = principal("finance")
    assert (
        client.get("/v1/usage/summary", params=params, headers=finance.headers).status_code == 200
    )
    other = principal("model_team")
    assert_problem(
        client.get("/v1/usage/summary", params=params, headers=other.headers), 404, "not_found"
    )
    owner = principal("owner")
    assert_problem(
        client.get("/v1/usage/summary", params=params, headers=owner.headers), 403, "forbidden"
    )
    bad = client.get(
        "/v1/usage/summary", params=params | {"period": "2026-13"}, headers=world.team.headers
    )
    assert_problem(bad, 422, "invalid_period")
    empty = client.get(
        "/v1/usage/summary", params=params | {"period": "2020-01"}, headers=world.team.headers
    ).json()
    assert (empty["period_state"], empty["accepted_events"]) == (
        None,
        {"training": 0, "retrieval": 0},
    )


# --- quarantine review -------------------------------------------------------------------


def test_quarantine_review(
    client: TestClient, world: World, principal: Callable[..., ApiPrincipal]
) -> None:
    rejects = [training(world, dataset_id=str(uuid.uuid4())) for _ in range(3)]
    stray = training(world, colour="red")
    post(client, world, "training", [*rejects, stray])
    finance, other, owner = principal("finance"), principal("model_team"), principal("owner")
    params: dict[str, Any] = {"model_id": str(world.model_id), "limit": 2}

    page = client.get("/v1/quarantine", params=params, headers=world.team.headers).json()
    rest = client.get(
        "/v1/quarantine",
        params=params | {"cursor": page["next_cursor"]},
        headers=world.team.headers,
    ).json()
    assert (len(page["items"]), len(rest["items"]), rest["next_cursor"]) == (2, 2, None)
    listed = page["items"] + rest["items"]
    assert sorted(e["event_id"] for e in listed) == sorted(e["event_id"] for e in [*rejects, stray])
    only = client.get(
        "/v1/quarantine",
        params={"model_id": str(world.model_id), "reason_code": "unknown_field"},
        headers=finance.headers,
    ).json()["items"]
    assert [(e["event_id"], e["field"]) for e in only] == [(stray["event_id"], "colour")]
    assert only[0]["payload"]["colour"] == "red"

    assert_problem(
        client.get("/v1/quarantine", params=params, headers=other.headers), 404, "not_found"
    )
    mine = client.get("/v1/quarantine", headers=other.headers).json()
    assert mine["items"] == []  # another team's rejects are not listed
    assert_problem(client.get("/v1/quarantine", headers=owner.headers), 403, "forbidden")

    target = page["items"][0]["id"]
    note = {"note": "test dataset id from a staging run"}
    url = f"/v1/quarantine/{target}/dismiss"
    assert_problem(client.post(url, json=note, headers=world.team.headers), 403, "forbidden")
    assert_problem(
        client.post(url, json={"note": ""}, headers=finance.headers), 422, "validation_failed"
    )
    dismissed = client.post(url, json=note, headers=finance.headers)
    assert dismissed.status_code == 200, dismissed.text
    out = dismissed.json()
    assert (out["review_state"], out["review_note"]) == ("dismissed", note["note"])
    assert out["reviewed_by"] == str(finance.account_id)
    assert_problem(client.post(url, json=note, headers=finance.headers), 409, "already_reviewed")
    assert_problem(
        client.post("/v1/quarantine/999999999/dismiss", json=note, headers=finance.headers),
        404,
        "not_found",
    )
    left = client.get(
        "/v1/quarantine", params={"model_id": str(world.model_id)}, headers=world.team.headers
    ).json()["items"]
    assert target not in [e["id"] for e in left]
    both = client.get(
        "/v1/quarantine",
        params={"model_id": str(world.model_id), "state": "any"},
        headers=world.team.headers,
    ).json()["items"]
    assert target in [e["id"] for e in both]


# --- documentation -----------------------------------------------------------------------


def test_the_openapi_schema_documents_both_body_types(client: TestClient) -> None:
    schema = client.get("/v1/openapi.json").json()
    for kind in ("training", "retrievals"):
        content = schema["paths"][f"/v1/usage/{kind}"]["post"]["requestBody"]["content"]
        assert set(content) == {"application/json", "application/x-ndjson"}
        assert content["application/json"]["schema"]["type"] == "array"
        assert content["application/json"]["example"]
        assert content["application/x-ndjson"]["example"].count("\n") == 2


# --- the fast lane for compact retrieval batches --------------------------------------


_UUID_TEXT = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def _lane_scenario(
    client: TestClient, world: World, db_engine: Engine, encode: Callable[[Any], bytes]
) -> tuple[list[Any], list[Any], list[Any]]:
    """Accepted events, an identical repeat and a conflicting repeat in one batch, a
    closed period, the future, then the same batch again: per-event results of both
    posts and what went to quarantine (payload, reason)."""
    with Session(db_engine) as session:
        factories.make_period(session, world.model_id, datetime(2026, 2, 5, tzinfo=UTC), "closed")
        session.commit()
    first = retrieval(world, "e-1")
    batch = [
        first,
        retrieval(world, "e-2", occurred_at="2026-03-10T12:00:00.000250+02:00"),
        first,
        retrieval(world, "e-1", query_id="q-other"),
        retrieval(world, "e-3", occurred_at="2026-02-05T10:00:00Z"),
        retrieval(world, "e-4", occurred_at="2999-01-01T00:00:00Z"),
        retrieval(
            world, "e-5", chunks=[{"dataset_id": str(uuid.uuid4()), "chunk_id": "x", "rank": 1}]
        ),
    ]
    outcomes = []
    for _ in range(2):
        response = post(client, world, "retrievals", encode(batch))
        assert response.status_code == 200, response.text
        outcomes.append(response.json()["results"])
    with Session(db_engine) as session:
        quarantined = session.execute(
            text(
                "SELECT payload, reason_code FROM usage_quarantine WHERE model_id = :m"
                " ORDER BY event_id, reason_code"
            ),
            {"m": world.model_id},
        ).all()
    return outcomes[0], outcomes[1], [tuple(row) for row in quarantined]


def test_compact_and_spaced_json_take_different_lanes_to_the_same_outcome(
    client: TestClient,
    principal: Callable[..., ApiPrincipal],
    db_engine: Engine,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from ledger.usage import compact

    fast_lane_batches: list[int] = []
    decode = compact.decode_retrievals

    def counting(body: bytes) -> Any:
        decoded = decode(body)
        if decoded is not None:
            fast_lane_batches.append(len(decoded[0]))
        return decoded

    monkeypatch.setattr(compact, "decode_retrievals", counting)
    outcomes = {}
    for name, encode in {
        "compact": lambda v: json.dumps(v, separators=(",", ":")).encode(),
        "spaced": lambda v: json.dumps(v, indent=1).encode(),
    }.items():
        world = _world(principal, db_engine)
        outcomes[name] = _lane_scenario(client, world, db_engine, encode)
        stored_rows = stored(db_engine, world.model_id)
        assert stored_rows["usage_retrieval_event"] == 2, name
    assert fast_lane_batches == [7, 7], "the compact batch (and its replay) took the fast lane"
    # The two worlds have their own dataset ids; everything else must be equal.
    same = {name: re.sub(_UUID_TEXT, "<uuid>", repr(o)) for name, o in outcomes.items()}
    assert same["compact"] == same["spaced"]
    first, replay, quarantined = outcomes["compact"]
    assert [r["status"] for r in first] == [
        "accepted",
        "accepted",
        "duplicate",
        "rejected",
        "rejected",
        "rejected",
        "rejected",
    ]
    assert [r["status"] for r in replay][:3] == ["duplicate"] * 3
    assert {reason for _, reason in quarantined} >= {"period_not_open", "occurred_in_future"}
