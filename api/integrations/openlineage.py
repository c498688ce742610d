"""OpenLineage for training runs: the usefirst custom facets as ``openlineage-python``
classes, and helpers to build events and a client that posts them to usefirst.

Needs the extra: ``pip install 'usefirst[openlineage]'``. The naming rules (job
namespace ``usefirst``, dataset namespace ``usefirst`` named by the dataset UUID, the
``usefirst_model`` run facet and the ``usefirst_usage`` input facet) are defined in
:mod:`api.integrations.lineage_mapping` and documented in ``docs/SDK.md``::

    client = lineage_client("http://127.0.0.1:8000", api_key)
    run = Run(runId=str(uuid.uuid4()), facets=model_facets(model_id))
    job = Job(namespace="my-team", name="train-llm")
    inputs = [usefirst_input(dataset_id, quantity=1_000_000, unit="tokens", epochs=2)]
    client.emit(RunEvent(eventType=RunState.START, eventTime=now(), run=run, job=job,
                         inputs=inputs, producer=PRODUCER))
    ...  # train
    client.emit(RunEvent(eventType=RunState.COMPLETE, ...))  # records the usage
"""

from __future__ import annotations

import uuid
from typing import Any

import attr
from openlineage.client.client import OpenLineageClient
from openlineage.client.event_v2 import InputDataset, Job
from openlineage.client.facet_v2 import InputDatasetFacet, RunFacet
from openlineage.client.transport.http import (
    ApiKeyTokenProvider,
    HttpCompression,
    HttpConfig,
    HttpTransport,
)

from api.integrations.lineage_mapping import (
    MODEL_FACET,
    MODEL_FACET_SCHEMA_URL,
    NAMESPACE,
    USAGE_FACET,
    USAGE_FACET_SCHEMA_URL,
)

ENDPOINT = "v1/lineage"
PRODUCER = "urn:usefirst:sdk:python"  # the `producer` of events built with these helpers


@attr.define
class UsefirstUsageInputDatasetFacet(InputDatasetFacet):
    """``inputFacets.usefirst_usage``: how much of a usefirst dataset the run consumed
    (``quantity`` ``unit``s per epoch, ``epochs`` epochs)."""

    unit: str = attr.field()
    quantity: int = attr.field()
    epochs: int = attr.field(default=1)

    @staticmethod
    def _get_schema() -> str:
        return USAGE_FACET_SCHEMA_URL


@attr.define
class UsefirstModelRunFacet(RunFacet):
    """``run.facets.usefirst_model``: the usefirst model this run trains."""

    model_id: str = attr.field()

    @staticmethod
    def _get_schema() -> str:
        return MODEL_FACET_SCHEMA_URL


def model_facets(model_id: uuid.UUID | str) -> dict[str, RunFacet]:
    """Run facets naming the usefirst model (merge into your other run facets)."""
    return {MODEL_FACET: UsefirstModelRunFacet(model_id=str(model_id))}


def model_job(model_id: uuid.UUID | str) -> Job:
    """The alternative to :func:`model_facets`: a job in namespace ``usefirst`` named by
    the model id (use it when you do not need your own job naming)."""
    return Job(namespace=NAMESPACE, name=str(model_id))


def usefirst_input(
    dataset_id: uuid.UUID | str, quantity: int, *, unit: str = "tokens", epochs: int = 1
) -> InputDataset:
    """An input dataset that declares usage of a registered usefirst dataset."""
    facet = UsefirstUsageInputDatasetFacet(unit=unit, quantity=quantity, epochs=epochs)
    return InputDataset(namespace=NAMESPACE, name=str(dataset_id), inputFacets={USAGE_FACET: facet})


def transport_config(
    base_url: str,
    api_key: str,
    *,
    timeout_s: float = 10.0,
    gzip: bool = False,
    **options: Any,
) -> HttpConfig:
    """An ``HttpTransport`` config that posts to ``{base_url}/v1/lineage`` with the
    model team's key. The same as the YAML::

        transport:
          type: http
          url: http://127.0.0.1:8000
          endpoint: v1/lineage
          auth: {type: api_key, apiKey: uf_...}
    """
    return HttpConfig(
        url=base_url,
        endpoint=ENDPOINT,
        timeout=timeout_s,
        auth=ApiKeyTokenProvider({"api_key": api_key}),
        compression=HttpCompression.GZIP if gzip else None,
        **options,
    )


def lineage_client(base_url: str, api_key: str, **options: Any) -> OpenLineageClient:
    """An ``OpenLineageClient`` whose HTTP transport posts to usefirst (see
    :func:`transport_config` for the options)."""
    return OpenLineageClient(
        transport=HttpTransport(transport_config(base_url, api_key, **options))
    )


__all__ = [
    "ENDPOINT",
    "PRODUCER",
    "UsefirstModelRunFacet",
    "UsefirstUsageInputDatasetFacet",
    "lineage_client",
    "model_facets",
    "model_job",
    "transport_config",
    "usefirst_input",
]
