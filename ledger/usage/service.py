"""Usage ingestion: the public entry points.

Both take a batch of raw events (parsed JSON objects, or mappings of Python values)
for one model and return one :class:`~ledger.usage.schemas.EventResult` per event,
in input order: ``accepted``, ``duplicate`` (the event id was already used with the
same body: nothing changes) or ``rejected`` with a stable ``code``, a ``message``
saying what to fix and the ``field`` path (``chunks/2/rank``). Rejected events are
kept in ``usage_quarantine``. A batch is all-or-nothing at the database level: if
it fails it leaves nothing behind. The functions flush; the caller commits.

Training event fields: ``event_id``, ``run_id``, ``dataset_id``, ``unit``
(``tokens``/``samples``/``bytes``, the agreement's training unit), ``quantity``
(1..QUANTITY_MAX), ``epochs`` (1..EPOCHS_MAX), ``occurred_at`` (ISO 8601 with an
offset, or an aware datetime).

Retrieval event fields: ``event_id``, ``query_id``, ``occurred_at``, ``chunks``: 1..
CHUNKS_PER_RETRIEVAL_MAX objects with ``dataset_id``, ``chunk_id``, ``rank`` (the
ranks are exactly 1..n) and an optional numeric ``score``.

Reason codes: shape — ``missing_field``, ``unknown_field``, ``invalid_type``,
``invalid_value``, ``invalid_unit``, ``invalid_datetime``, ``naive_datetime``,
``quantity_out_of_range``, ``epochs_out_of_range``, ``no_chunks``,
``too_many_chunks``, ``rank_out_of_range``, ``rank_gap``, ``rank_duplicate``;
state — ``event_id_conflict``, ``occurred_in_future``, ``no_agreement``,
``unit_mismatch``, ``unknown_dataset``, ``outside_validity_window``,
``use_not_allowed``, ``dataset_revoked``, ``dataset_not_confirmed``,
``period_not_open``.

Raises ``NotFound`` for an unknown model and ``PayloadTooLarge`` for a batch of
more than BATCH_EVENTS_MAX events.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from sqlmodel import Session

from ledger.usage import ingest
from ledger.usage.schemas import IngestResult


def ingest_training(
    session: Session, model_id: uuid.UUID, events: Sequence[Mapping[str, Any]]
) -> IngestResult:
    """Ingest training events of ``model_id`` (see the module docstring)."""
    return ingest.run(session, model_id, events, ingest.TRAINING)


def ingest_retrievals(
    session: Session, model_id: uuid.UUID, events: Sequence[Mapping[str, Any]]
) -> IngestResult:
    """Ingest retrieval events of ``model_id`` (see the module docstring)."""
    return ingest.run(session, model_id, events, ingest.RETRIEVAL)
