"""Model teams report usage: ``POST /v1/usage/training`` and ``POST /v1/usage/retrievals``
(JSON arrays or NDJSON streams, up to 50,000 events per request, per-event results),
and read it back: ``GET /v1/usage/summary``.

Who may do what: only a model team reports usage, and only for its own models; finance
reads every model's summary. A model the caller may not use answers 404, exactly like
a model that does not exist: model ids are not revealed to other teams.

Decisions:
- a request is one unit of work: its accepted events, their rollups and its quarantined
  rejects are committed together, or (on any failure) nothing is;
- a malformed JSON array is a 400 (nothing can be attributed to an event); a malformed
  NDJSON line rejects that event only (``malformed_json``, naming the line);
- 50,001 events or more: 413 ``too_many_events`` naming the limit.

The hot path avoids pydantic: bodies are decoded by ``ledger.usage.wire``, validated by
``ledger.usage.schemas`` and the response is serialised with orjson. The router's
lifespan tunes the garbage collector for it (see :func:`_serve_batches`).
"""

from __future__ import annotations

import gc
import re
import sys
import uuid
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Annotated, Any, Final

import orjson
from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from pydantic import TypeAdapter
from sqlalchemy import text
from sqlmodel import Session

from api.deps import Principal, SessionDep, require_roles
from api.idempotency import Idempotency, IdempotencyDep
from api.schemas.usage import (
    BATCH_DOC,
    DatasetUsageOut,
    IngestOut,
    ReasonOut,
    RetrievalEventIn,
    TrainingEventIn,
    TrainingUsageOut,
    UsageSummaryOut,
    ingest_out,
)
from ledger.errors import DomainError, NotFound, ValidationFailed
from ledger.models.models import Model
from ledger.usage import compact, queries, wire
from ledger.usage import service as usage
from ledger.usage.schemas import EventRejected, IngestResult

# Young-generation threshold of the cyclic garbage collector while serving (CPython's
# default is 700 allocations).
GC_GEN0_THRESHOLD: Final = 50_000


@asynccontextmanager
async def _serve_batches(_app: object) -> AsyncIterator[None]:
    """Process settings for usage batches, once per server process.

    The recursion limit is capped (``wire.cap_recursion_limit``): JSON decoding recurses
    on the C stack, and a limit raised by a dependency lets a crafted body crash the
    worker (this protects FastAPI's own JSON parsing of every route too).

    The garbage collector is tuned: a 5,000-event request allocates about 200,000
    containers that all live until the response; with CPython's default thresholds
    they trigger full collections that walk the whole heap (the app's modules
    included) several times per request, which measured as half of the request's CPU
    time (1 worker: 280 → 155 ms per 5,000 retrievals). ``gc.freeze()`` moves what
    startup created out of the collector's sight, and a larger young generation
    collects less often; reference counting still frees the batches themselves at once."""
    recursion_limit = wire.cap_recursion_limit()
    gc.freeze()
    thresholds = gc.get_threshold()
    gc.set_threshold(GC_GEN0_THRESHOLD, *thresholds[1:])
    yield
    gc.set_threshold(*thresholds)
    sys.setrecursionlimit(recursion_limit)


router = APIRouter(tags=["model teams: usage"], lifespan=_serve_batches)
ModelTeamDep = Annotated[Principal, Depends(require_roles("model_team"))]
ReaderDep = Annotated[Principal, Depends(require_roles("model_team", "finance"))]
ModelIdQuery = Annotated[uuid.UUID, Query(description="A model of your team.")]

_PERIOD_KEY: Final = re.compile(r"(\d{4})-(0[1-9]|1[0-2])")
IngestFn = Callable[[Session, uuid.UUID, list[Any], Mapping[int, EventRejected]], IngestResult]


class UnsupportedMediaType(DomainError):
    code = "unsupported_media_type"
    http_status = 415
    title = "Unsupported media type"


def visible_model(session: Session, principal: Principal, model_id: uuid.UUID) -> Model:
    """The model, if ``principal`` may act on it: a model team its own models, finance
    any. Otherwise NotFound, the same answer as for a model that does not exist."""
    model = session.get(Model, model_id)
    if model is None or (principal.role != "finance" and model.account_id != principal.account_id):
        raise NotFound(
            f"model {model_id} does not exist or is not one of your team's models",
            field="model_id",
        )
    return model


def respond_json(idem: Idempotency, status_code: int, body: dict[str, Any]) -> Response:
    """Like ``Idempotency.respond`` for a body of plain JSON values (str, int, float,
    bool, None, dict, list): no ``jsonable_encoder`` walk and one orjson encoding, for
    the response and for the stored record (a 5,000-result body: 2 ms instead of 30)."""
    content = orjson.dumps(body)
    if idem.key is not None:
        idem.session.execute(
            text(
                """
                INSERT INTO idempotency_record
                       (id, account_id, method, path, key, request_sha256, status_code,
                        response_body)
                VALUES (gen_random_uuid(), :account, :method, :path, :key, :sha256, :status,
                        CAST(:body AS jsonb))
                """
            ),
            {
                "account": idem.principal.account_id,
                "method": idem.method,
                "path": idem.path,
                "key": idem.key,
                "sha256": idem.request_sha256,
                "status": status_code,
                "body": content.decode(),
            },
        )
    return Response(content, status_code=status_code, media_type="application/json")


def _schema_of(model: type[Any]) -> dict[str, Any]:
    """The JSON schema of a list of ``model``, with its definitions inlined (the body
    is documented through ``openapi_extra``, outside the components section)."""
    schema = TypeAdapter(list[model]).json_schema()  # type: ignore[valid-type]
    definitions = schema.pop("$defs", {})

    def inline(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith("#/$defs/"):
                return inline(definitions[ref.removeprefix("#/$defs/")])
            return {key: inline(value) for key, value in node.items()}
        if isinstance(node, list):
            return [inline(item) for item in node]
        return node

    return inline(schema)  # type: ignore[no-any-return]


def _batch_body(model: type[Any], example: dict[str, Any]) -> dict[str, Any]:
    ndjson = "\n".join(orjson.dumps(e).decode() for e in (example, example | {"event_id": "2"}))
    return {
        "requestBody": {
            "required": True,
            "content": {
                wire.MEDIA_JSON: {"schema": _schema_of(model), "example": [example]},
                wire.MEDIA_NDJSON: {
                    "schema": {
                        "type": "string",
                        "description": "One event (a JSON object as in application/json) "
                        "per line; blank lines are ignored.",
                    },
                    "example": ndjson + "\n",
                },
            },
        }
    }


_RESPONSES: Final[dict[int | str, dict[str, Any]]] = {
    400: {"description": "Malformed JSON array body (problem+json)."},
    404: {"description": "No such model among your team's models (problem+json)."},
    409: {"description": "Idempotency-Key reused with another body (problem+json)."},
    413: {"description": "More than 50,000 events or 64 MiB (problem+json)."},
    415: {"description": "Neither application/json nor application/x-ndjson."},
}


def _example(model: type[Any]) -> dict[str, Any]:
    return model.model_config["json_schema_extra"]["example"]  # type: ignore[no-any-return]


def _batch_route(kind: str, event_model: type[Any], ingest: IngestFn) -> None:
    """``POST /v1/usage/{kind}``: the two batch routes differ only in their events."""

    async def report_usage(
        request: Request,
        model_id: ModelIdQuery,
        principal: ModelTeamDep,
        session: SessionDep,
        idem: IdempotencyDep,
    ) -> Response:
        return await _ingest(request, session, principal, idem, model_id, ingest)

    router.add_api_route(
        f"/usage/{kind}",
        report_usage,
        methods=["POST"],
        name=f"report_{kind}",
        operation_id=f"report_{kind}",
        response_model=IngestOut,
        summary=f"Report {kind} usage (JSON array or NDJSON)",
        description=BATCH_DOC,
        responses=_RESPONSES,
        openapi_extra=_batch_body(event_model, _example(event_model)),
    )


_batch_route("training", TrainingEventIn, usage.ingest_training)
_batch_route("retrievals", RetrievalEventIn, usage.ingest_retrievals)


async def _ingest(
    request: Request,
    session: Session,
    principal: Principal,
    idem: Idempotency,
    model_id: uuid.UUID,
    ingest: IngestFn,
) -> Response:
    replay = await run_in_threadpool(_authorize_or_replay, session, principal, idem, model_id)
    if replay is not None:
        return replay
    media = request.headers.get("content-type", wire.MEDIA_JSON).split(";")[0].strip().lower()
    if media == wire.MEDIA_NDJSON:
        decoder = wire.NdjsonDecoder()
        async for piece in request.stream():
            decoder.feed(piece)
        decoder.finish()
        return await run_in_threadpool(
            _ingest_events, session, idem, model_id, ingest, decoder.events, decoder.rejected
        )
    if media != wire.MEDIA_JSON:
        raise UnsupportedMediaType(
            f"Content-Type {media!r} is not accepted; send {wire.MEDIA_JSON} (a JSON array of "
            f"events) or {wire.MEDIA_NDJSON} (one event per line)",
            field="Content-Type",
        )
    body = await request.body()
    return await run_in_threadpool(_ingest_json, session, idem, model_id, ingest, body)


def _authorize_or_replay(
    session: Session, principal: Principal, idem: Idempotency, model_id: uuid.UUID
) -> Response | None:
    visible_model(session, principal, model_id)
    return idem.replay()


def _ingest_json(
    session: Session, idem: Idempotency, model_id: uuid.UUID, ingest: IngestFn, body: bytes
) -> Response:
    if ingest is usage.ingest_retrievals:
        # The fast lane takes the compact JSON the SDK sends; anything else (or
        # anything wrong) goes the strict way, which explains every problem.
        decoded = compact.decode_retrievals(body)
        if decoded is not None:
            received, parsed = decoded
            result = usage.ingest_retrievals(session, model_id, received, parsed=parsed)
            return respond_json(idem, 200, ingest_out(model_id, result.kind, result.results))
    return _ingest_events(session, idem, model_id, ingest, wire.json_array(body), {})


def _ingest_events(
    session: Session,
    idem: Idempotency,
    model_id: uuid.UUID,
    ingest: IngestFn,
    events: list[Any],
    rejected: Mapping[int, EventRejected],
) -> Response:
    result = ingest(session, model_id, events, rejected)
    return respond_json(idem, 200, ingest_out(model_id, result.kind, result.results))


@router.get(
    "/usage/summary",
    response_model=UsageSummaryOut,
    summary="A model's usage in one period",
    description="Accepted events per kind, rollup totals per dataset and the most frequent "
    "rejection reasons of one UTC month. Model teams: their own models; finance: any.",
)
def usage_summary(
    session: SessionDep,
    principal: ReaderDep,
    model_id: ModelIdQuery,
    period: Annotated[str, Query(description="YYYY-MM (UTC month).", examples=["2026-03"])],
) -> UsageSummaryOut:
    match = _PERIOD_KEY.fullmatch(period)
    if match is None:
        raise ValidationFailed(
            f"period must be a month like 2026-03, got {period!r}",
            field="period",
            code="invalid_period",
        )
    visible_model(session, principal, model_id)
    month_start = datetime(int(match[1]), int(match[2]), 1, tzinfo=UTC)
    summary = queries.usage_summary(session, model_id, month_start)
    return UsageSummaryOut(
        model_id=summary.model_id,
        period=summary.period_key,
        period_state=summary.period_state,
        accepted_events={
            "training": summary.training_events,
            "retrieval": summary.retrieval_events,
        },
        datasets=[
            DatasetUsageOut(
                dataset_id=d.dataset_id,
                training=[
                    TrainingUsageOut(unit=unit, quantity=quantity, events=events)
                    for unit, (quantity, events) in sorted(d.training.items())
                ],
                retrieval_hits=d.retrieval_hits,
            )
            for d in summary.datasets
        ],
        rejected_events=summary.rejected_events,
        rejected_open=summary.rejected_open,
        top_rejection_reasons=[
            ReasonOut(reason_code=code, events=events)
            for code, events in summary.top_rejection_reasons
        ],
    )
