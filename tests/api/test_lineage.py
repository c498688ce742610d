"""``POST /v1/lineage`` with the real ``openlineage-python`` client: its HTTP transport
posts RunEvents to a real server (uvicorn), and COMPLETE events become training usage
counted once; START/RUNNING/FAIL/ABORT record nothing; inputs the ledger cannot accept
are rejected per input and quarantined."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest
import requests
from fastapi.testclient import TestClient
from openlineage.client.client import OpenLineageClient
from openlineage.client.event_v2 import InputDataset, Job, Run, RunEvent, RunState
from openlineage.client.serde import Serde
from sqlalchemy import Engine, text
from sqlmodel import Session

from api.integrations.lineage_mapping import FACET_SCHEMAS, MODEL_FACET, USAGE_FACET
from api.integrations.openlineage import (
    PRODUCER,
    UsefirstModelRunFacet,
    UsefirstUsageInputDatasetFacet,
    lineage_client,
    model_facets,
    model_job,
    transport_config,
    usefirst_input,
)
from api.sdk import UsefirstClient
from tests.api.conftest import ApiPrincipal
from tests.api.support import LiveServer, team_with_model
from tests.ledger import factories

TOKENS = 250_000


@dataclass
class World:
    team: ApiPrincipal
    model_id: uuid.UUID
    both: list[uuid.UUID]  # confirmed for training and retrieval
    rag_only: uuid.UUID


@pytest.fixture
def world(principal: Callable[..., ApiPrincipal], db_engine: Engine) -> World:
    uses = (factories.BOTH, factories.BOTH, factories.RAG)
    made = team_with_model(principal, db_engine, uses)
    return World(made.team, made.model_id, made.datasets[:2], made.datasets[2])


@pytest.fixture(scope="module")
def server(database: Any) -> Iterator[LiveServer]:
    with LiveServer() as live:
        yield live


@pytest.fixture
def ol(server: LiveServer, world: World) -> Iterator[OpenLineageClient]:
    """The official client, configured as docs/SDK.md says."""
    client = lineage_client(server.url, world.team.key)
    yield client
    client.close()


def event(
    state: RunState,
    run_id: str,
    *,
    run_facets: dict[str, Any] | None = None,
    job: Job | None = None,
    inputs: list[InputDataset] | None = None,
) -> RunEvent:
    return RunEvent(
        eventType=state,
        eventTime=datetime.now(UTC).isoformat(),
        run=Run(runId=run_id, facets=run_facets or {}),
        job=job or Job(namespace="acme-ml", name="pretrain"),
        inputs=inputs or [],
        producer=PRODUCER,
    )


def stored(db_engine: Engine, model_id: uuid.UUID) -> dict[str, Any]:
    with Session(db_engine) as session:
        rows = session.execute(
            text(
                "SELECT event_id, run_id, dataset_id, unit, quantity, epochs "
                "FROM usage_training_event WHERE model_id = :m ORDER BY event_id"
            ),
            {"m": model_id},
        ).all()
        units = session.execute(
            text(
                "SELECT coalesce(sum(quantity), 0) FROM usage_rollup "
                "WHERE model_id = :m AND kind = 'train'"
            ),
            {"m": model_id},
        ).scalar_one()
        quarantine = session.execute(
            text(
                "SELECT reason_code FROM usage_quarantine WHERE model_id = :m ORDER BY reason_code"
            ),
            {"m": model_id},
        ).scalars()
        return {"events": rows, "units": int(units), "quarantine": list(quarantine)}


def test_a_run_records_its_usage_once_on_complete(
    ol: OpenLineageClient, world: World, db_engine: Engine
) -> None:
    run_id = str(uuid.uuid4())
    facets = model_facets(world.model_id)
    inputs = [
        usefirst_input(world.both[0], TOKENS, unit="tokens", epochs=3),
        usefirst_input(world.both[1], 10 * TOKENS),
        InputDataset(namespace="s3://acme-raw", name="tokenizer/vocab.json"),
    ]
    for state in (RunState.START, RunState.RUNNING):
        ol.emit(event(state, run_id, run_facets=facets, inputs=inputs))
    assert stored(db_engine, world.model_id)["units"] == 0

    complete = event(RunState.COMPLETE, run_id, run_facets=facets, inputs=inputs)
    ol.emit(complete)
    ol.emit(complete)  # a resend (e.g. the transport's retry) counts once
    ol.emit(event(RunState.COMPLETE, run_id, run_facets=facets, inputs=inputs))  # new eventTime
    after = stored(db_engine, world.model_id)
    assert [tuple(r) for r in after["events"]] == sorted(
        [
            (f"ol:{run_id}:{world.both[0]}", run_id, world.both[0], "tokens", TOKENS, 3),
            (f"ol:{run_id}:{world.both[1]}", run_id, world.both[1], "tokens", 10 * TOKENS, 1),
        ]
    )
    assert after["units"] == TOKENS * 3 + 10 * TOKENS
    # The third COMPLETE had another eventTime: same ids, other body → rejected, kept.
    assert after["quarantine"] == ["event_id_conflict", "event_id_conflict"]

    for state in (RunState.FAIL, RunState.ABORT, RunState.OTHER):
        ol.emit(event(state, run_id, run_facets=facets, inputs=inputs))
    assert stored(db_engine, world.model_id)["units"] == after["units"]


def test_the_answer_lists_each_input(
    server: LiveServer, ol: OpenLineageClient, world: World, db_engine: Engine
) -> None:
    run_id = str(uuid.uuid4())
    unknown = uuid.uuid4()
    inputs = [
        usefirst_input(world.both[0], TOKENS),
        usefirst_input(unknown, TOKENS),
        InputDataset(namespace="usefirst", name=str(world.both[1])),  # no usefirst_usage facet
        usefirst_input(world.rag_only, TOKENS),
        usefirst_input(world.both[1], TOKENS, unit="samples"),
        InputDataset(namespace="postgres://warehouse", name="public.labels"),
    ]
    # The model named by the job (namespace usefirst, name = model id) instead of a facet.
    job = model_job(world.model_id)
    start = ol.transport.emit(event(RunState.START, run_id, job=job, inputs=inputs))
    assert start.status_code == 202 and start.json()["status"] == "ignored"

    complete = event(RunState.COMPLETE, run_id, job=job, inputs=inputs)
    answer = ol.transport.emit(complete).json()
    assert answer["status"] == "recorded" and answer["model_id"] == str(world.model_id)
    assert (answer["accepted"], answer["rejected"], answer["ignored"]) == (1, 4, 1)
    outcomes = [(i["status"], i.get("code"), i.get("field")) for i in answer["inputs"]]
    assert outcomes == [
        ("accepted", None, None),
        ("rejected", "unknown_dataset", "inputs/1/name"),
        ("rejected", "missing_facet", f"inputs/2/inputFacets/{USAGE_FACET}/unit"),
        ("rejected", "use_not_allowed", "inputs/3/name"),
        ("rejected", "unit_mismatch", f"inputs/4/inputFacets/{USAGE_FACET}/unit"),
        ("ignored", "foreign_namespace", None),
    ]
    assert "usefirst_usage input facet" in answer["inputs"][2]["message"]
    assert stored(db_engine, world.model_id)["quarantine"] == sorted(
        ["unknown_dataset", "missing_field", "use_not_allowed", "unit_mismatch"]
    )

    # The SDK posts OpenLineage events too: RunEvent objects, or dicts.
    other_run = str(uuid.uuid4())
    as_dict = Serde.to_dict(event(RunState.COMPLETE, other_run, job=job, inputs=inputs[:1]))
    with UsefirstClient(server.url, world.team.key) as sdk:
        resent = sdk.send_lineage(complete)
        recorded = sdk.send_lineage(as_dict)
    assert [i.status for i in resent.inputs][:2] == ["duplicate", "rejected"]
    assert recorded.status == "recorded" and recorded.inputs[0].status == "accepted"
    assert recorded.inputs[0].event_id == f"ol:{other_run}:{world.both[0]}"
    assert stored(db_engine, world.model_id)["units"] == 2 * TOKENS


def test_misconfigured_events_fail_loudly_at_start(
    server: LiveServer,
    ol: OpenLineageClient,
    world: World,
    principal: Callable[..., ApiPrincipal],
) -> None:
    inputs = [usefirst_input(world.both[0], TOKENS)]
    with pytest.raises(requests.HTTPError) as no_model:
        ol.emit(event(RunState.START, str(uuid.uuid4()), inputs=inputs))
    problem = no_model.value.response.json()
    assert no_model.value.response.status_code == 422
    assert problem["errors"][0]["code"] == "lineage_model_missing"
    assert MODEL_FACET in problem["errors"][0]["message"]

    someone_else = lineage_client(server.url, principal("model_team").key)
    with pytest.raises(requests.HTTPError) as not_theirs:
        someone_else.emit(
            event(RunState.START, str(uuid.uuid4()), run_facets=model_facets(world.model_id))
        )
    assert not_theirs.value.response.status_code == 404

    ambiguous = event(
        RunState.COMPLETE,
        str(uuid.uuid4()),
        run_facets=model_facets(world.model_id),
        job=model_job(uuid.uuid4()),
        inputs=inputs,
    )
    with pytest.raises(requests.HTTPError) as conflict:
        ol.emit(ambiguous)
    assert conflict.value.response.json()["errors"][0]["code"] == "lineage_model_ambiguous"

    wrong_key = lineage_client(server.url, "uf_wrong")
    with pytest.raises(requests.HTTPError) as unauthorized:
        wrong_key.emit(event(RunState.START, str(uuid.uuid4())))
    assert unauthorized.value.response.status_code == 401


def test_gzip_transport_and_yaml_style_config(
    server: LiveServer, world: World, db_engine: Engine
) -> None:
    from openlineage.client.transport.http import HttpConfig, HttpTransport

    # The dict form is what an openlineage.yml `transport:` section becomes.
    config = HttpConfig.from_dict(
        {
            "type": "http",
            "url": server.url,
            "endpoint": "v1/lineage",
            "auth": {"type": "api_key", "apiKey": world.team.key},
            "compression": "gzip",
        }
    )
    assert config.endpoint == transport_config(server.url, "k").endpoint
    client = OpenLineageClient(transport=HttpTransport(config))
    run_id = str(uuid.uuid4())
    client.emit(
        event(
            RunState.COMPLETE,
            run_id,
            run_facets=model_facets(world.model_id),
            inputs=[usefirst_input(world.both[0], 7, unit="tokens")],
        )
    )
    client.close()
    assert stored(db_engine, world.model_id)["units"] == 7


def test_client_configured_from_the_environment(
    server: LiveServer, world: World, db_engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in {
        "TYPE": "http",
        "URL": server.url,
        "ENDPOINT": "v1/lineage",
        "AUTH__TYPE": "api_key",
        "AUTH__APIKEY": world.team.key,
    }.items():
        monkeypatch.setenv(f"OPENLINEAGE__TRANSPORT__{name}", value)
    client = OpenLineageClient()  # as an Airflow or Spark integration would build it
    client.emit(
        event(
            RunState.COMPLETE,
            str(uuid.uuid4()),
            job=model_job(world.model_id),
            inputs=[usefirst_input(world.both[1], 11, unit="tokens", epochs=2)],
        )
    )
    client.close()
    assert stored(db_engine, world.model_id)["units"] == 22


def test_facet_classes_match_the_published_schemas(client: TestClient) -> None:
    body = client.get("/v1/lineage/facets").json()
    assert body["namespace"] == "usefirst"
    usage = UsefirstUsageInputDatasetFacet(unit="tokens", quantity=1)
    model = UsefirstModelRunFacet(model_id=str(uuid.uuid4()))
    assert (
        usage._schemaURL == FACET_SCHEMAS[USAGE_FACET]["$id"] == body["facets"][USAGE_FACET]["$id"]
    )
    assert model._schemaURL == body["facets"][MODEL_FACET]["$id"]
    assert usage.epochs == 1


def test_non_run_events_and_malformed_bodies(client: TestClient, world: World) -> None:
    headers = {**world.team.headers, "Content-Type": "application/json"}
    dataset_event = {
        "eventTime": datetime.now(UTC).isoformat(),
        "producer": PRODUCER,
        "schemaURL": "https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/DatasetEvent",
        "dataset": {"namespace": "usefirst", "name": str(world.both[0])},
    }
    ignored = client.post("/v1/lineage", json=dataset_event, headers=headers)
    assert ignored.status_code == 202 and "not a RunEvent" in ignored.json()["reason"]
    malformed = client.post("/v1/lineage", content=b"{not json", headers=headers)
    assert malformed.status_code == 400 and malformed.json()["code"] == "malformed_json"
    bad_type = client.post(
        "/v1/lineage",
        json={"eventType": "DONE", "eventTime": "x", "run": {"runId": "r"}, "job": {}},
        headers=headers,
    )
    assert bad_type.status_code == 422
    assert {e["field"] for e in bad_type.json()["errors"]} >= {"eventType", "run/facets"}
    owner = client.post("/v1/lineage", json=dataset_event, headers={"Authorization": "Bearer x"})
    assert owner.status_code == 401
