"""``POST /v1/lineage``: training usage declared through OpenLineage.

Takes one OpenLineage event per request, as the official clients' HTTP transport
sends it (JSON, optionally ``Content-Encoding: gzip``; configure the transport with
``endpoint: v1/lineage`` and ``auth: {type: api_key, apiKey: <model-team key>}``).
The naming rules and the translation live in ``api.integrations.lineage_mapping``;
the events go through the ordinary ingestion service, so a resend counts once and a
rejected input lands in the usage quarantine.

Answers: 200 ``{"status": "recorded", …, "inputs": [...]}`` for a COMPLETE event,
with one entry per input (``accepted``, ``duplicate``, ``rejected`` with code,
message and field, or ``ignored``); 202 ``{"status": "ignored", "reason": …}`` for
other event types (after checking the model) and for non-run events; 422 when the
event is malformed or names no model; 404 for a model that is not the caller's.
"""

from __future__ import annotations

import json
import logging
import zlib
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse

from api.deps import Principal, SessionDep, require_roles
from api.integrations import lineage_mapping as mapping
from api.routers.usage import visible_model
from ledger.errors import DomainError, PayloadTooLarge
from ledger.usage.service import ingest_training

router = APIRouter(tags=["usage: OpenLineage"])
log = logging.getLogger("usefirst.api.lineage")
ModelTeamDep = Annotated[Principal, Depends(require_roles("model_team"))]

LINEAGE_BODY_MAX_BYTES = 8 * 1024 * 1024  # also the decompressed limit of a gzip body


class MalformedBody(DomainError):
    code = "malformed_json"
    http_status = 400
    title = "Malformed body"


async def lineage_body(request: Request) -> Any:
    """The request's JSON, gunzipped when ``Content-Encoding: gzip`` (the transport's
    ``compression: gzip`` option), at most LINEAGE_BODY_MAX_BYTES either way."""
    raw = await request.body()
    if request.headers.get("content-encoding", "").strip().lower() == "gzip":
        inflater = zlib.decompressobj(wbits=31)
        try:
            raw = inflater.decompress(raw, LINEAGE_BODY_MAX_BYTES + 1)
        except zlib.error as error:
            raise MalformedBody(f"the gzip body does not decompress: {error}") from None
        if len(raw) > LINEAGE_BODY_MAX_BYTES or inflater.unconsumed_tail:
            raise PayloadTooLarge(
                f"the decompressed event exceeds {LINEAGE_BODY_MAX_BYTES} bytes; "
                "send one event per request"
            )
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError) as error:
        raise MalformedBody(f"the body is not JSON: {error}") from None


_REQUEST_BODY_DOC: dict[str, Any] = {
    "required": True,
    "content": {
        "application/json": {
            "schema": {
                "type": "object",
                "description": "An OpenLineage RunEvent (https://openlineage.io/spec).",
                "required": ["eventType", "eventTime", "run", "job"],
                "properties": {
                    "eventType": {"type": "string", "enum": list(mapping.EVENT_TYPES)},
                    "eventTime": {"type": "string", "format": "date-time"},
                    "run": {"type": "object"},
                    "job": {"type": "object"},
                    "inputs": {"type": "array", "items": {"type": "object"}},
                },
            }
        }
    },
}


@router.post(
    "/lineage",
    summary="Record training usage from an OpenLineage RunEvent (COMPLETE events only)",
    openapi_extra={"requestBody": _REQUEST_BODY_DOC},
    responses={202: {"description": "Not a COMPLETE run event: nothing recorded"}},
)
def post_lineage(
    session: SessionDep,
    principal: ModelTeamDep,
    event: Annotated[Any, Depends(lineage_body)],
) -> JSONResponse:
    plan = mapping.plan(event)
    if plan.model_id is not None:
        visible_model(session, principal, plan.model_id)
    if not plan.records:
        return JSONResponse(
            {
                "status": "ignored",
                "event_type": plan.event_type,
                "run_id": plan.run_id,
                "model_id": str(plan.model_id) if plan.model_id else None,
                "reason": plan.reason,
            },
            status_code=202,
        )
    assert plan.model_id is not None
    events = plan.training_events
    results = ingest_training(session, plan.model_id, events).results if events else []
    inputs = _input_outcomes(plan, results)
    counts = {s: sum(1 for i in inputs if i["status"] == s) for s in _STATUSES}
    if counts["ignored"] or counts["rejected"]:
        log.warning(
            "lineage event recorded partially",
            extra={"run_id": plan.run_id, "model_id": str(plan.model_id), **counts},
        )
    return JSONResponse(
        {
            "status": "recorded",
            "event_type": plan.event_type,
            "run_id": plan.run_id,
            "model_id": str(plan.model_id),
            "accepted": counts["accepted"],
            "duplicates": counts["duplicate"],
            "rejected": counts["rejected"],
            "ignored": counts["ignored"],
            "inputs": inputs,
        }
    )


_STATUSES = ("accepted", "duplicate", "rejected", "ignored")


def _input_outcomes(plan: mapping.LineagePlan, results: list[Any]) -> list[dict[str, Any]]:
    """One outcome per input, in input order: the ingestion result of its training
    event (field paths rewritten into the OpenLineage event), or why it was ignored."""
    outcomes: list[dict[str, Any]] = []
    position = 0
    for ref in plan.inputs:
        out: dict[str, Any] = {"index": ref.index, "namespace": ref.namespace, "name": ref.name}
        if ref.event is None:
            out.update(status="ignored", code=ref.ignored_code, message=ref.ignored_message)
        else:
            result = results[position]
            position += 1
            out.update(event_id=result.event_id, status=result.status)
            if result.status == "rejected":
                missing = ref.facet_missing and result.code == "missing_field"
                out.update(
                    code="missing_facet" if missing else result.code,
                    message=mapping.missing_facet_message(ref) if missing else result.message,
                    field=mapping.event_field(ref, result.field),
                )
        outcomes.append(out)
    return outcomes


@router.get(
    "/lineage/facets",
    summary="JSON Schemas of the usefirst OpenLineage facets",
)
def lineage_facets() -> dict[str, Any]:
    return {
        "namespace": mapping.NAMESPACE,
        "facets": mapping.FACET_SCHEMAS,
    }
