"""How an OpenLineage ``RunEvent`` declares training usage: the naming rules and the
translation into training events. Pure (no database, no ``openlineage`` package), so
the server uses it without the extra and anyone can re-derive what an event means.

The rules (documented in ``docs/SDK.md``):

- **Model**: the run facet ``usefirst_model`` = ``{"model_id": "<model uuid>"}``, or
  the job namespace ``usefirst`` with the job name ``<model uuid>``. If both are given
  they must agree.
- **Datasets**: each input dataset in namespace ``usefirst`` whose name is the
  registered dataset's UUID. Inputs in other namespaces are listed as ``ignored``.
- **Quantities**: the input facet ``usefirst_usage`` = ``{"unit": "tokens"|"samples"|
  "bytes", "quantity": <int>, "epochs": <int, default 1>}`` on each ``usefirst``
  input (``inputFacets``; a dataset facet of that name is read too).
- **When**: only ``COMPLETE`` events record usage, at the event's ``eventTime``, one
  training event per ``usefirst`` input with ``event_id = "ol:<runId>:<dataset>"`` and
  ``run_id = runId``. A resent COMPLETE is a duplicate; START, RUNNING, FAIL, ABORT and
  OTHER record nothing. A ``usefirst`` input the ledger cannot accept (unknown
  dataset, missing facet, use not allowed…) is rejected with a reason and kept in the
  usage quarantine like any rejected event.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any, Final

from ledger.errors import ErrorCollector, ValidationFailed

NAMESPACE: Final = "usefirst"
MODEL_FACET: Final = "usefirst_model"
USAGE_FACET: Final = "usefirst_usage"
MODEL_FACET_SCHEMA_URL: Final = "urn:usefirst:openlineage:UsefirstModelRunFacet:1-0-0"
USAGE_FACET_SCHEMA_URL: Final = "urn:usefirst:openlineage:UsefirstUsageInputDatasetFacet:1-0-0"
EVENT_TYPES: Final = ("START", "RUNNING", "COMPLETE", "ABORT", "FAIL", "OTHER")
RECORDING_EVENT_TYPE: Final = "COMPLETE"
RUN_ID_LENGTH_MAX: Final = 100  # keeps "ol:<runId>:<dataset uuid>" within 200 characters
_USAGE_FIELDS: Final = ("unit", "quantity", "epochs")

# JSON Schemas of the two custom facets (served at GET /v1/lineage/facets).
FACET_SCHEMAS: Final[dict[str, dict[str, Any]]] = {
    MODEL_FACET: {
        "$id": MODEL_FACET_SCHEMA_URL,
        "title": "UsefirstModelRunFacet",
        "description": "Names the usefirst model (or RAG application) this run trains.",
        "type": "object",
        "properties": {
            "_producer": {"type": "string", "format": "uri"},
            "_schemaURL": {"type": "string", "format": "uri"},
            "model_id": {"type": "string", "format": "uuid", "description": "The model's id."},
        },
        "required": ["model_id"],
    },
    USAGE_FACET: {
        "$id": USAGE_FACET_SCHEMA_URL,
        "title": "UsefirstUsageInputDatasetFacet",
        "description": (
            "How much of a registered usefirst dataset this run consumed: quantity units "
            "per epoch, for epochs epochs (the ledger counts quantity × epochs)."
        ),
        "type": "object",
        "properties": {
            "_producer": {"type": "string", "format": "uri"},
            "_schemaURL": {"type": "string", "format": "uri"},
            "unit": {"type": "string", "enum": ["tokens", "samples", "bytes"]},
            "quantity": {"type": "integer", "minimum": 1},
            "epochs": {"type": "integer", "minimum": 1, "default": 1},
        },
        "required": ["unit", "quantity"],
    },
}


@dataclass(frozen=True)
class InputRef:
    """One input dataset of the event: either ``event`` (a training event to ingest) or
    why it was ignored."""

    index: int
    namespace: str
    name: str
    event: dict[str, Any] | None = None
    facet_missing: bool = False
    ignored_code: str | None = None
    ignored_message: str | None = None


@dataclass(frozen=True)
class LineagePlan:
    """What one OpenLineage event means for the ledger."""

    event_type: str | None
    run_id: str | None
    model_id: uuid.UUID | None
    records: bool  # only COMPLETE run events record usage
    reason: str | None = None  # why nothing is recorded
    inputs: list[InputRef] = field(default_factory=list)

    @property
    def training_events(self) -> list[dict[str, Any]]:
        return [ref.event for ref in self.inputs if ref.event is not None]


def plan(raw: object) -> LineagePlan:
    """Translate a parsed OpenLineage event. Raises ``ValidationFailed`` (field paths
    like ``run/runId``) when it is not a well-formed event or names no model."""
    if not isinstance(raw, dict):
        raise ValidationFailed("an OpenLineage event must be a JSON object", field="")
    if "run" not in raw and "eventType" not in raw:
        # OpenLineage 2 DatasetEvent / JobEvent: static metadata, no usage.
        return LineagePlan(
            None, None, None, False, reason="not a RunEvent (no run): nothing to record"
        )
    errors = ErrorCollector()
    event_type = raw.get("eventType")
    if event_type not in EVENT_TYPES:
        errors.add(
            "eventType",
            "invalid_value",
            f"eventType must be one of {', '.join(EVENT_TYPES)}, got {event_type!r}",
        )
    run = _object(raw, "run", errors)
    job = _object(raw, "job", errors)
    run_id = run.get("runId")
    if not isinstance(run_id, str) or not 0 < len(run_id) <= RUN_ID_LENGTH_MAX:
        errors.add(
            "run/runId",
            "invalid_value",
            f"run.runId must be a string of 1 to {RUN_ID_LENGTH_MAX} characters (a UUID)",
        )
    model_id = _model_id(run, job, errors)
    errors.raise_if_any("the OpenLineage event is not usable")
    assert isinstance(event_type, str) and isinstance(run_id, str) and model_id is not None
    if event_type != RECORDING_EVENT_TYPE:
        return LineagePlan(
            event_type,
            run_id,
            model_id,
            False,
            reason=f"{event_type} events record nothing; usage is recorded from the "
            "COMPLETE event of the run",
        )
    event_time = raw.get("eventTime")
    if not isinstance(event_time, str):
        raise ValidationFailed(
            "eventTime must be an ISO 8601 time with an offset", field="eventTime"
        )
    inputs_raw = raw.get("inputs") or []
    if not isinstance(inputs_raw, list):
        raise ValidationFailed("inputs must be a list of datasets", field="inputs")
    refs = [_input(i, item, run_id, event_time) for i, item in enumerate(inputs_raw)]
    return LineagePlan(event_type, run_id, model_id, True, inputs=refs)


def event_field(ref: InputRef, service_field: str | None) -> str | None:
    """The path in the OpenLineage event of a training event's field (as the ingestion
    service names it), so a rejection points at what the client sent."""
    if service_field is None:
        return None
    prefix = f"inputs/{ref.index}"
    if service_field == "dataset_id":
        return f"{prefix}/name"
    if service_field in _USAGE_FIELDS:
        return f"{prefix}/inputFacets/{USAGE_FACET}/{service_field}"
    if service_field == "occurred_at":
        return "eventTime"
    if service_field in ("run_id", "event_id"):
        return "run/runId"
    return f"{prefix}/{service_field}"


def missing_facet_message(ref: InputRef) -> str:
    return (
        f"input {ref.index} ({ref.namespace}/{ref.name}) has no {USAGE_FACET} input facet; "
        'add {"unit": "tokens"|"samples"|"bytes", "quantity": <int>, "epochs": <int>}'
    )


def _object(raw: dict[str, Any], key: str, errors: ErrorCollector) -> dict[str, Any]:
    value = raw.get(key)
    if not isinstance(value, dict):
        errors.add(key, "missing_field" if value is None else "invalid_type", f"{key} is required")
        return {}
    return value


def _model_id(run: dict[str, Any], job: dict[str, Any], errors: ErrorCollector) -> uuid.UUID | None:
    from_facet: uuid.UUID | None = None
    facets = run.get("facets")
    facet = facets.get(MODEL_FACET) if isinstance(facets, dict) else None
    if facet is not None:
        value = facet.get("model_id") if isinstance(facet, dict) else None
        from_facet = _uuid(value)
        if from_facet is None:
            errors.add(
                f"run/facets/{MODEL_FACET}/model_id",
                "invalid_value",
                f"the {MODEL_FACET} run facet's model_id must be the model's UUID, got {value!r}",
            )
            return None
    from_job = _uuid(job.get("name")) if job.get("namespace") == NAMESPACE else None
    if job.get("namespace") == NAMESPACE and from_job is None:
        errors.add(
            "job/name",
            "invalid_value",
            f"a job in namespace {NAMESPACE!r} must be named by the model's UUID",
        )
        return None
    if from_facet is not None and from_job is not None and from_facet != from_job:
        errors.add(
            "job/name",
            "lineage_model_ambiguous",
            f"the job names model {from_job} but the {MODEL_FACET} facet names {from_facet}",
        )
        return None
    model_id = from_facet or from_job
    if model_id is None:
        errors.add(
            "run/facets",
            "lineage_model_missing",
            f"the event names no usefirst model: add the run facet {MODEL_FACET} "
            f'{{"model_id": "<model uuid>"}} or use job namespace {NAMESPACE!r} with the '
            "model's UUID as the job name",
        )
    return model_id


def _input(index: int, item: object, run_id: str, event_time: str) -> InputRef:
    if not isinstance(item, dict):
        return InputRef(
            index, "", "", ignored_code="invalid_type", ignored_message="not a dataset object"
        )
    namespace, name = item.get("namespace"), item.get("name")
    namespace_text = namespace if isinstance(namespace, str) else ""
    name_text = name if isinstance(name, str) else ""
    if namespace != NAMESPACE:
        return InputRef(
            index,
            namespace_text,
            name_text,
            ignored_code="foreign_namespace",
            ignored_message=f"only inputs in namespace {NAMESPACE!r} are usefirst datasets",
        )
    canonical = _uuid(name)
    dataset = str(canonical) if canonical is not None else name_text
    event: dict[str, Any] = {
        "event_id": f"ol:{run_id}:{dataset}",
        "run_id": run_id,
        "dataset_id": dataset,
        "occurred_at": event_time,
    }
    facet = _usage_facet(item)
    if facet is not None:
        event.update({k: facet[k] for k in _USAGE_FIELDS if k in facet})
        event.setdefault("epochs", 1)
    return InputRef(index, namespace_text, name_text, event=event, facet_missing=facet is None)


def _usage_facet(item: dict[str, Any]) -> dict[str, Any] | None:
    for key in ("inputFacets", "facets"):
        facets = item.get(key)
        if isinstance(facets, dict) and isinstance(facets.get(USAGE_FACET), dict):
            return dict(facets[USAGE_FACET])
    return None


def _uuid(value: object) -> uuid.UUID | None:
    if not isinstance(value, str):
        return None
    try:
        return uuid.UUID(value)
    except ValueError:
        return None
