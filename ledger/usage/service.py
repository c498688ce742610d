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
``quantity_out_of_range``, ``epochs_out_of_range``, ``no_chunks``, ``duplicate_key``,
``malformed_json`` (an NDJSON line),
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
from typing import Any, Final

from sqlalchemy import text
from sqlmodel import Session

from ledger.errors import NotFound, StateError, ValidationFailed
from ledger.usage import ingest
from ledger.usage.models import QuarantinedEvent
from ledger.usage.schemas import EventRejected, IngestResult, RetrievalEvent


def ingest_training(
    session: Session,
    model_id: uuid.UUID,
    events: Sequence[Mapping[str, Any] | Any],
    rejected: Mapping[int, EventRejected] | None = None,
) -> IngestResult:
    """Ingest training events of ``model_id`` (see the module docstring). ``rejected``
    holds events refused while decoding (``ledger.usage.wire``), by index."""
    return ingest.run(session, model_id, events, ingest.TRAINING, rejected)


def ingest_retrievals(
    session: Session,
    model_id: uuid.UUID,
    events: Sequence[Mapping[str, Any] | Any],
    rejected: Mapping[int, EventRejected] | None = None,
    parsed: Sequence[RetrievalEvent] | None = None,
) -> IngestResult:
    """Ingest retrieval events of ``model_id`` (see the module docstring). ``rejected``
    holds events refused while decoding (``ledger.usage.wire``), by index; ``parsed``
    the events already validated by a decoder (``ledger.usage.compact``)."""
    return ingest.run(session, model_id, events, ingest.RETRIEVAL, rejected, parsed)


REVIEW_NOTE_LENGTH_MAX: Final = 2_000


def dismiss_quarantined(
    session: Session, quarantine_id: int, note: str, reviewer_account_id: uuid.UUID
) -> QuarantinedEvent:
    """Mark an open quarantined event as reviewed and dismissed, with ``note`` (why,
    1..REVIEW_NOTE_LENGTH_MAX characters) and who and when. The event stays in the
    quarantine for audit. Raises ``ValidationFailed`` (note), ``NotFound``, ``StateError``
    (``already_reviewed``). A conditional UPDATE: of two concurrent dismissals one wins,
    the other gets the StateError. Flushes; the caller commits."""
    if (
        not isinstance(note, str)
        or not 0 < len(note.strip()) <= REVIEW_NOTE_LENGTH_MAX
        or "\x00" in note  # PostgreSQL text cannot store U+0000
    ):
        raise ValidationFailed(
            f"note must say why the event is dismissed (1 to {REVIEW_NOTE_LENGTH_MAX} "
            "characters, no NUL)",
            field="note",
            code="invalid_note",
        )
    session.flush()
    dismissed = session.execute(
        text(
            """
            UPDATE usage_quarantine
               SET review_state = 'dismissed', review_note = :note, reviewed_at = now(),
                   reviewed_by = :by
             WHERE id = :id AND review_state = 'open'
            RETURNING id
            """
        ),
        {"id": quarantine_id, "note": note.strip(), "by": reviewer_account_id},
    ).scalar_one_or_none()
    event = session.get(QuarantinedEvent, quarantine_id, populate_existing=True)
    if event is None:
        raise NotFound(f"quarantined event {quarantine_id} does not exist", field="id")
    if dismissed is None:
        raise StateError(
            f"quarantined event {quarantine_id} was already reviewed ({event.review_state} "
            f"at {event.reviewed_at.isoformat() if event.reviewed_at else 'an unknown time'}); "
            "only open events can be dismissed",
            field="id",
            code="already_reviewed",
        )
    return event
