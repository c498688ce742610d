"""The set-based ingestion path: one batch of usage events in a handful of statements.

1. Shape: each raw event is validated in Python (``schemas.parse_*``); repeats of an
   event id inside the batch are resolved (first wins; same body → duplicate, other
   body → ``event_id_conflict``).
2. Stage: the survivors are ``COPY``-ed into ``TEMP`` staging tables.
3. Replays: staged events whose id the model already used are duplicates (same
   body hash) or conflicts, and leave the staging table. This comes before the
   other checks so a replay answers ``duplicate`` even after its period closed.
4. Rules: one SQL statement finds, per event, the first broken rule (future time,
   agreement, unit, then for each dataset reference: unknown, outside its validity
   window, use not allowed, revoked, not confirmed) and removes those events.
5. Periods: the periods of the remaining events' months are created if missing and
   locked ``FOR SHARE``; events in periods that are not open are rejected.
6. Insert: events (``ON CONFLICT DO NOTHING``, in event-id order so concurrent
   batches lock keys in one order), their chunks, and rollup increments computed
   from the rows *actually inserted*, in one statement. Events a concurrent batch
   inserted first are classified as in step 3.
7. Quarantine: every rejected event goes to ``usage_quarantine`` in one statement,
   unless the same event already waits there for review with the same reason.

Steps 2-7 run inside a savepoint: if anything fails, the batch leaves nothing behind
(no events, chunks, rollup increments or quarantine rows), even if the caller goes
on to commit other work.
"""

from __future__ import annotations

import json
import math
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final, Generic, Literal, TypeVar

import psycopg
from psycopg import Cursor
from psycopg.rows import namedtuple_row
from sqlalchemy.exc import DBAPIError
from sqlmodel import Session

from ledger.errors import NotFound, PayloadTooLarge
from ledger.periods import service as periods
from ledger.rights.eip712 import USE_RAG, USE_TRAIN
from ledger.usage.schemas import (
    BATCH_EVENTS_MAX,
    ID_LENGTH_MAX,
    Chunk,
    EventRejected,
    EventResult,
    IngestResult,
    RetrievalEvent,
    TrainingEvent,
    conflict_message,
    differing_retrieval_fields,
    differing_training_fields,
    parse_retrieval,
    parse_training,
)

E = TypeVar("E", TrainingEvent, RetrievalEvent)

_MONTH: Final = "date_trunc('month', {ts}, 'UTC')"


@dataclass(frozen=True)
class _Kind(Generic[E]):
    name: Literal["training", "retrieval"]
    use: str  # 'train' | 'rag', as datasets name their uses
    use_bit: int
    stage: str
    parse: Callable[[object], E]
    differing: Callable[[E, E], list[str]]
    stage_ddl: tuple[str, ...]
    copy: Callable[[Cursor[Any], dict[int, E]], None]
    existing_sql: str  # %(model)s; rows (seq, same, stored…); removes them from staging
    rules_sql: str  # %(model)s, %(skew_s)s; rows of broken rules; removes them
    insert_sql: str  # %(model)s; rows (seq) of inserted events; removes them
    stored: Callable[[Cursor[Any], uuid.UUID, list[Any]], dict[int, E]]


def run(
    session: Session, model_id: uuid.UUID, events: Sequence[Mapping[str, Any]], kind: _Kind[E]
) -> IngestResult:
    """Ingest one batch of ``kind`` events for ``model_id``; see the module docstring."""
    if len(events) > BATCH_EVENTS_MAX:
        raise PayloadTooLarge(
            f"a batch holds at most {BATCH_EVENTS_MAX} events, got {len(events)}; split it",
            field="events",
        )
    session.flush()
    try:
        with session.begin_nested():
            raw = session.connection().connection.driver_connection
            assert raw is not None
            with raw.cursor(row_factory=namedtuple_row) as cursor:
                cursor.execute("SELECT 1 FROM model WHERE id = %s", (model_id,))
                if cursor.fetchone() is None:
                    raise NotFound(f"model {model_id} does not exist", field="model_id")
                batch: _Batch[E] = _Batch(kind, model_id, events)
                batch.parse_all()
                if batch.staged:
                    batch.run_sql(session, cursor)
                batch.resolve_repeats()
                batch.quarantine(cursor)
    except psycopg.Error as error:
        # Same exception types as the rest of the ORM code raises (callers retry
        # sqlalchemy.exc.OperationalError, e.g. a deadlock, as transient).
        raise DBAPIError.instance(None, None, error, psycopg.Error) from error
    return IngestResult(kind=kind.name, results=batch.final_results())


class _Batch(Generic[E]):
    def __init__(
        self, kind: _Kind[E], model_id: uuid.UUID, events: Sequence[Mapping[str, Any]]
    ) -> None:
        self.kind: _Kind[E] = kind
        self.model_id = model_id
        self.events = events
        self.results: list[EventResult | None] = [None] * len(events)
        self.staged: dict[int, E] = {}  # index → event, first occurrence of each id
        self.repeats: list[tuple[int, int]] = []  # (index, index of identical first)

    # --- Python side -------------------------------------------------------------------

    def parse_all(self) -> None:
        parse, staged = self.kind.parse, self.staged
        first_by_id: dict[str, int] = {}
        for index, raw in enumerate(self.events):
            try:
                event = parse(raw)
            except EventRejected as error:
                self.reject(index, error.code, error.message, error.field)
                continue
            first = first_by_id.setdefault(event.event_id, index)
            if first == index:
                staged[index] = event
                continue
            earlier = staged[first]
            if earlier.body_hash == event.body_hash:
                self.repeats.append((index, first))
            else:
                differing = self.kind.differing(earlier, event)
                where = f"appears earlier in this batch (at index {first})"
                self.reject(
                    index,
                    "event_id_conflict",
                    conflict_message(event.event_id, differing, where),
                    "event_id",
                )

    def reject(self, index: int, code: str, message: str, field: str) -> None:
        self.results[index] = EventResult(
            index, _event_id_of(self.events[index]), "rejected", code, message, field
        )

    def resolve_repeats(self) -> None:
        """An identical repeat inside the batch shares the fate of its first occurrence:
        accepted or duplicate → duplicate; rejected → rejected for the same reason."""
        for index, first in self.repeats:
            outcome = self.results[first]
            assert outcome is not None
            if outcome.status == "rejected":
                assert outcome.code is not None and outcome.message is not None
                self.reject(index, outcome.code, outcome.message, outcome.field or "")
            else:
                self.results[index] = EventResult(index, outcome.event_id, "duplicate")

    def final_results(self) -> list[EventResult]:
        assert all(r is not None for r in self.results), "every event has an outcome"
        return [r for r in self.results if r is not None]

    # --- SQL side ----------------------------------------------------------------------

    def run_sql(self, session: Session, cursor: Cursor[Any]) -> None:
        kind, params = self.kind, {"model": self.model_id, "skew_s": periods.FUTURE_TOLERANCE_S}
        for ddl in kind.stage_ddl:
            cursor.execute(ddl)
        kind.copy(cursor, self.staged)

        self.classify_existing(cursor)

        cursor.execute(kind.rules_sql, params)
        for row in cursor.fetchall():
            self.reject(row.seq, row.code, self.rule_message(row), self.rule_field(row))

        self.reject_closed_periods(session, cursor)

        cursor.execute(kind.insert_sql, params)
        accepted = [row.seq for row in cursor.fetchall()]
        for index in accepted:
            self.results[index] = EventResult(index, self.staged[index].event_id, "accepted")
        if any(self.results[index] is None for index in self.staged):
            # A concurrent batch inserted some of ours first (it committed while we
            # waited on the unique index): they are duplicates or conflicts now.
            self.classify_existing(cursor)
        cursor.execute(f"DROP TABLE {', '.join(_stage_tables(kind))}")

    def classify_existing(self, cursor: Cursor[Any]) -> None:
        cursor.execute(self.kind.existing_sql, {"model": self.model_id})
        rows = cursor.fetchall()
        conflicting = [row for row in rows if not row.same]
        for row in rows:
            if row.same:
                self.results[row.seq] = EventResult(
                    row.seq, self.staged[row.seq].event_id, "duplicate"
                )
        if conflicting:
            stored = self.kind.stored(cursor, self.model_id, conflicting)
            for row in conflicting:
                event = self.staged[row.seq]
                differing = self.kind.differing(stored[row.seq], event)
                self.reject(
                    row.seq,
                    "event_id_conflict",
                    conflict_message(event.event_id, differing, "was already recorded"),
                    "event_id",
                )

    def reject_closed_periods(self, session: Session, cursor: Cursor[Any]) -> None:
        stage = self.kind.stage
        month = _MONTH.format(ts="occurred_at")
        cursor.execute(f"SELECT DISTINCT {month} AS starts_at FROM {stage} ORDER BY 1")  # noqa: S608
        months = [row.starts_at for row in cursor.fetchall()]
        if not months:
            return
        periods.ensure_periods(session, self.model_id, months)
        closed = {
            p.starts_at: p
            for p in periods.lock_months_for_share(session, self.model_id, months)
            if p.state != "open"
        }
        if not closed:
            return
        cursor.execute(
            f"DELETE FROM {stage} WHERE {month} = ANY(%(months)s) RETURNING seq, {month} AS m",  # noqa: S608
            {"months": list(closed)},
        )
        for row in cursor.fetchall():
            period = closed[row.m]
            message = periods.not_open_message(period.key, self.model_id, period.state)
            self.reject(row.seq, "period_not_open", message, "occurred_at")

    def rule_field(self, row: Any) -> str:
        if row.code == "unit_mismatch":
            return "unit"
        if row.code in ("occurred_in_future", "no_agreement"):
            return "occurred_at"
        return "dataset_id" if row.pos < 0 else f"chunks/{row.pos}/dataset_id"

    def rule_message(self, row: Any) -> str:
        at = _iso(row.ts)
        dataset = f"dataset {row.dataset_id}"
        code = row.code
        if code == "occurred_in_future":
            return f"occurred_at {at} is in the future; report usage once it has happened"
        if code == "no_agreement":
            return (
                f"model {self.model_id} has no royalty agreement in force at {at}; "
                "create the model's agreement before reporting usage"
            )
        if code == "unit_mismatch":
            return (
                f"unit {row.unit!r} differs from the training unit of the model's agreement "
                f"(version {row.agreement_version}): {row.agreement_unit!r}; report quantities "
                f"in {row.agreement_unit}"
            )
        if code == "unknown_dataset":
            return f"{dataset} does not exist; register it first or fix the id"
        if code == "outside_validity_window":
            until = _iso(row.valid_until) if row.valid_until else "no end"
            return (
                f"{dataset} is valid from {_iso(row.valid_from)} until {until}; "
                f"usage at {at} lies outside that window"
            )
        if code == "use_not_allowed":
            allowed = " and ".join(
                use for use, bit in (("train", USE_TRAIN), ("rag", USE_RAG)) if row.uses & bit
            )
            return (
                f"{dataset} does not allow {self.kind.use} use at {at}: its confirmed terms "
                f"allow only {allowed}"
            )
        if code == "dataset_revoked":
            return (
                f"{dataset} was revoked at {_iso(row.revoked_at)}; usage after a revocation "
                "does not count (earlier usage still does)"
            )
        assert code == "dataset_not_confirmed", code
        return (
            f"{dataset} was not confirmed at {at} (status now: {row.status}); usage counts "
            "only while every co-owner's signed confirmation is in force"
        )

    def quarantine(self, cursor: Cursor[Any]) -> None:
        rejected = [r for r in self.results if r is not None and r.status == "rejected"]
        if rejected:
            cursor.execute(
                _QUARANTINE_SQL,
                {
                    "model": self.model_id,
                    "kind": self.kind.name,
                    "event_ids": [r.event_id for r in rejected],
                    "payloads": [_payload_json(self.events[r.index]) for r in rejected],
                    "codes": [r.code for r in rejected],
                    "fields": [r.field for r in rejected],
                    "messages": [r.message for r in rejected],
                },
            )


# --- SQL shared by both kinds ----------------------------------------------------------


# Rejected events, unless the same event is already waiting for review with the same
# reason (a replayed batch must not file its rejects twice).
_QUARANTINE_SQL: Final = """
    INSERT INTO usage_quarantine
           (model_id, kind, event_id, payload, reason_code, field, message, review_state)
    SELECT DISTINCT ON (q.event_id, q.reason_code, q.payload)
           %(model)s, %(kind)s::text, q.event_id, q.payload, q.reason_code, q.field,
           q.message, 'open'
      FROM (SELECT u.event_id, CAST(u.payload AS jsonb) AS payload, u.reason_code, u.field,
                   u.message, u.ord
              FROM unnest(%(event_ids)s::text[], %(payloads)s::text[], %(codes)s::text[],
                          %(fields)s::text[], %(messages)s::text[])
                   WITH ORDINALITY AS u(event_id, payload, reason_code, field, message, ord)
           ) q
     WHERE NOT EXISTS (
           SELECT 1 FROM usage_quarantine x
            WHERE x.model_id = %(model)s AND x.kind = %(kind)s::text
              AND (x.event_id = q.event_id OR (x.event_id IS NULL AND q.event_id IS NULL))
              AND x.reason_code = q.reason_code AND x.payload = q.payload
              AND x.review_state = 'open')
     ORDER BY q.event_id, q.reason_code, q.payload, q.ord
"""


def _stage_tables(kind: _Kind[Any]) -> list[str]:
    return [kind.stage] + (["_uf_stage_chunk"] if kind.name == "retrieval" else [])


def _existing_sql(stage: str, table: str, stored_columns: str) -> str:
    return f"""
        WITH found AS (
            SELECT s.seq, s.body_hash = e.body_hash AS same, {stored_columns}
              FROM {stage} s
              JOIN {table} e ON e.model_id = %(model)s AND e.event_id = s.event_id
        ), gone AS (
            DELETE FROM {stage} s USING found f WHERE s.seq = f.seq
        )
        SELECT * FROM found ORDER BY seq
    """  # noqa: S608


# Rules of one event, given ``src(seq, pos, dataset_id, ts)`` (one row per dataset
# reference; pos = -1 for a training event's single dataset). Broken rules come out
# as rows of ``problems``: the first per event (by prio, then pos) is reported.
def _rules_sql(stage: str, src: str, use_bit: int, unit_check: str) -> str:
    month = _MONTH.format(ts="s.occurred_at")
    agreement = periods.GOVERNING_AGREEMENT_SQL.format(model="%(model)s", month="m.starts_at")
    return f"""
        WITH src AS ({src}),
        months AS (SELECT DISTINCT {month} AS starts_at FROM {stage} s),
        gov AS (
            SELECT m.starts_at, g.version, g.training_unit, g.effective_from
              FROM months m LEFT JOIN LATERAL ({agreement}) g ON true
        ),
        event_problems AS (
            SELECT s.seq, -1 AS pos, s.occurred_at AS ts,
                   CASE WHEN s.occurred_at > now() + make_interval(secs => %(skew_s)s)
                             THEN 'occurred_in_future'
                        WHEN g.version IS NULL OR s.occurred_at < g.effective_from
                             THEN 'no_agreement'
                        ELSE 'unit_mismatch' END AS code,
                   g.version AS agreement_version, g.training_unit AS agreement_unit,
                   {"s.unit" if unit_check else "NULL::text"} AS unit
              FROM {stage} s JOIN gov g ON g.starts_at = {month}
             WHERE s.occurred_at > now() + make_interval(secs => %(skew_s)s)
                OR g.version IS NULL OR s.occurred_at < g.effective_from {unit_check}
        ),
        -- Windows in which each referenced dataset counts for this use: a confirmation
        -- interval allowing it, cut to the dataset's validity window.
        windows AS (
            SELECT c.dataset_id, greatest(c.confirmed_from, d.valid_from) AS f,
                   least(coalesce(c.confirmed_until, 'infinity'),
                         coalesce(d.valid_until, 'infinity')) AS u
              FROM dataset_confirmation c JOIN dataset d ON d.id = c.dataset_id
             WHERE c.allowed_uses & {use_bit} <> 0
               AND c.dataset_id IN (SELECT DISTINCT dataset_id FROM src)
        ),
        bad AS (
            SELECT * FROM src
             WHERE NOT EXISTS (SELECT 1 FROM windows w WHERE w.dataset_id = src.dataset_id
                                                   AND src.ts >= w.f AND src.ts < w.u)
        ),
        -- Only the (rare) bad references are explained in detail.
        dataset_problems AS (
            SELECT bad.seq, bad.pos, bad.ts, bad.dataset_id, d.valid_from, d.valid_until,
                   d.status, cov.allowed_uses AS uses,
                   coalesce(rev.confirmed_until, d.revoked_at) AS revoked_at,
                   CASE WHEN d.id IS NULL THEN 'unknown_dataset'
                        WHEN bad.ts < d.valid_from OR bad.ts >= coalesce(d.valid_until, 'infinity')
                             THEN 'outside_validity_window'
                        WHEN cov.allowed_uses IS NOT NULL THEN 'use_not_allowed'
                        WHEN rev.confirmed_until IS NOT NULL OR d.revoked_at <= bad.ts
                             THEN 'dataset_revoked'
                        ELSE 'dataset_not_confirmed' END AS code
              FROM bad
              LEFT JOIN dataset d ON d.id = bad.dataset_id
              LEFT JOIN LATERAL (
                  SELECT c.allowed_uses FROM dataset_confirmation c
                   WHERE c.dataset_id = bad.dataset_id AND c.confirmed_from <= bad.ts
                     AND (c.confirmed_until IS NULL OR bad.ts < c.confirmed_until)
                   LIMIT 1) cov ON true
              LEFT JOIN LATERAL (
                  SELECT c.confirmed_until FROM dataset_confirmation c
                   WHERE c.dataset_id = bad.dataset_id AND c.ended_reason = 'revoked'
                     AND c.confirmed_until <= bad.ts
                   ORDER BY c.confirmed_until DESC LIMIT 1) rev ON true
        ),
        problems AS (
            SELECT DISTINCT ON (seq) *
              FROM (SELECT seq, pos, ts, code,
                           CASE code WHEN 'occurred_in_future' THEN 0
                                     WHEN 'no_agreement' THEN 1 ELSE 2 END AS prio,
                           agreement_version, agreement_unit, unit,
                           NULL::uuid AS dataset_id, NULL::timestamptz AS valid_from,
                           NULL::timestamptz AS valid_until, NULL::text AS status,
                           NULL::smallint AS uses, NULL::timestamptz AS revoked_at
                      FROM event_problems
                    UNION ALL
                    SELECT seq, pos, ts, code, 3, NULL, NULL, NULL, dataset_id, valid_from,
                           valid_until, status, uses, revoked_at
                      FROM dataset_problems) p
             ORDER BY seq, prio, pos
        ),
        gone AS (DELETE FROM {stage} s USING problems p WHERE s.seq = p.seq)
        SELECT * FROM problems ORDER BY seq
    """  # noqa: S608


def _rollup_upsert(select_sql: str) -> str:
    # Keys in sorted order: concurrent batches touching the same rollup rows lock
    # them in one order and cannot deadlock each other.
    return f"""
        INSERT INTO usage_rollup
               (model_id, period_id, dataset_id, kind, unit, list_length, rank, quantity,
                event_count)
        {select_sql}
        ON CONFLICT (model_id, period_id, dataset_id, kind, unit, list_length, rank)
        DO UPDATE SET quantity = usage_rollup.quantity + EXCLUDED.quantity,
                      event_count = usage_rollup.event_count + EXCLUDED.event_count
    """


# --- training ----------------------------------------------------------------------------

_TRAINING_STAGE: Final = "_uf_stage_training"


def _copy_training(cursor: Cursor[Any], staged: dict[int, TrainingEvent]) -> None:
    columns = "seq, event_id, run_id, dataset_id, unit, quantity, epochs, occurred_at, body_hash"
    with cursor.copy(f"COPY {_TRAINING_STAGE} ({columns}) FROM STDIN") as copy:
        write = copy.write_row
        for seq, e in staged.items():
            write((seq, *e))


def _stored_training(
    cursor: Cursor[Any], model_id: uuid.UUID, rows: list[Any]
) -> dict[int, TrainingEvent]:
    return {
        row.seq: TrainingEvent(
            row.event_id,
            row.run_id,
            str(row.dataset_id),
            row.unit,
            row.quantity,
            row.epochs,
            row.occurred_at,
            "",
        )
        for row in rows
    }


_TRAINING_ROLLUP: Final = """
    SELECT %(model)s, period_id, dataset_id, 'train', unit, 0, 0,
           sum(quantity::numeric * epochs), count(*)
      FROM ins
     GROUP BY period_id, dataset_id, unit
     ORDER BY period_id, dataset_id, unit
"""

_TRAINING_INSERT: Final = f"""
    WITH ins AS (
        INSERT INTO usage_training_event
               (model_id, event_id, run_id, dataset_id, unit, quantity, epochs,
                occurred_at, period_id, body_hash)
        SELECT %(model)s, s.event_id, s.run_id, s.dataset_id, s.unit, s.quantity, s.epochs,
               s.occurred_at, p.id, s.body_hash
          FROM {_TRAINING_STAGE} s
          JOIN period p ON p.model_id = %(model)s
                       AND p.starts_at = {_MONTH.format(ts="s.occurred_at")}
         ORDER BY s.event_id
            ON CONFLICT (model_id, event_id) DO NOTHING
        RETURNING event_id, period_id, dataset_id, unit, quantity, epochs
    ), done AS (
        DELETE FROM {_TRAINING_STAGE} s USING ins WHERE s.event_id = ins.event_id
        RETURNING s.seq
    ), rollup AS ({_rollup_upsert(_TRAINING_ROLLUP)})
    SELECT seq FROM done
"""  # noqa: S608

TRAINING: Final[_Kind[TrainingEvent]] = _Kind(
    name="training",
    use="train",
    use_bit=USE_TRAIN,
    stage=_TRAINING_STAGE,
    parse=parse_training,
    differing=differing_training_fields,
    stage_ddl=(
        f"""
        CREATE TEMP TABLE {_TRAINING_STAGE} (
            seq integer NOT NULL, event_id text NOT NULL, run_id text NOT NULL,
            dataset_id uuid NOT NULL, unit text NOT NULL, quantity bigint NOT NULL,
            epochs integer NOT NULL, occurred_at timestamptz NOT NULL, body_hash text NOT NULL
        ) ON COMMIT DROP
        """,
    ),
    copy=_copy_training,
    existing_sql=_existing_sql(
        _TRAINING_STAGE,
        "usage_training_event",
        "e.event_id, e.run_id, e.dataset_id, e.unit, e.quantity, e.epochs, e.occurred_at",
    ),
    rules_sql=_rules_sql(
        _TRAINING_STAGE,
        f"SELECT seq, -1 AS pos, dataset_id, occurred_at AS ts FROM {_TRAINING_STAGE}",  # noqa: S608
        USE_TRAIN,
        "OR s.unit <> g.training_unit",
    ),
    insert_sql=_TRAINING_INSERT,
    stored=_stored_training,
)


# --- retrieval ---------------------------------------------------------------------------

_RETRIEVAL_STAGE: Final = "_uf_stage_retrieval"
_CHUNK_STAGE: Final = "_uf_stage_chunk"


def _copy_retrieval(cursor: Cursor[Any], staged: dict[int, RetrievalEvent]) -> None:
    columns = "seq, event_id, query_id, occurred_at, chunk_count, body_hash"
    with cursor.copy(f"COPY {_RETRIEVAL_STAGE} ({columns}) FROM STDIN") as copy:
        write = copy.write_row
        for seq, e in staged.items():
            write((seq, e.event_id, e.query_id, e.occurred_at, len(e.chunks), e.body_hash))
    columns = "seq, pos, rank, dataset_id, chunk_id, score"
    with cursor.copy(f"COPY {_CHUNK_STAGE} ({columns}) FROM STDIN") as copy:
        write = copy.write_row
        for seq, e in staged.items():
            for chunk in e.chunks:
                write((seq, *chunk))


def _stored_retrieval(
    cursor: Cursor[Any], model_id: uuid.UUID, rows: list[Any]
) -> dict[int, RetrievalEvent]:
    seq_by_id = {row.event_id: row.seq for row in rows}
    cursor.execute(
        """
        SELECT e.event_id, c.rank, c.dataset_id, c.chunk_id, c.score
          FROM usage_retrieval_event e JOIN usage_retrieval_chunk c ON c.retrieval_id = e.id
         WHERE e.model_id = %s AND e.event_id = ANY(%s)
         ORDER BY e.event_id, c.rank
        """,
        (model_id, list(seq_by_id)),
    )
    chunks: dict[str, list[Chunk]] = {event_id: [] for event_id in seq_by_id}
    for c in cursor.fetchall():
        chunks[c.event_id].append((-1, c.rank, str(c.dataset_id), c.chunk_id, c.score))
    return {
        row.seq: RetrievalEvent(
            row.event_id, row.query_id, row.occurred_at, tuple(chunks[row.event_id]), ""
        )
        for row in rows
    }


# Retrieval rollups count hits per (dataset, list length, rank); quantity and
# event_count coincide (one chunk per rank per event).
_RETRIEVAL_ROLLUP: Final = f"""
    SELECT %(model)s, d.period_id, c.dataset_id, 'rag', 'hits', d.chunk_count, c.rank,
           count(*), count(*)
      FROM done d JOIN {_CHUNK_STAGE} c ON c.seq = d.seq
     GROUP BY d.period_id, c.dataset_id, d.chunk_count, c.rank
     ORDER BY d.period_id, c.dataset_id, d.chunk_count, c.rank
"""  # noqa: S608

_RETRIEVAL_INSERT: Final = f"""
    WITH ins AS (
        INSERT INTO usage_retrieval_event
               (model_id, event_id, query_id, occurred_at, period_id, chunk_count, body_hash)
        SELECT %(model)s, s.event_id, s.query_id, s.occurred_at, p.id, s.chunk_count,
               s.body_hash
          FROM {_RETRIEVAL_STAGE} s
          JOIN period p ON p.model_id = %(model)s
                       AND p.starts_at = {_MONTH.format(ts="s.occurred_at")}
         ORDER BY s.event_id
            ON CONFLICT (model_id, event_id) DO NOTHING
        RETURNING id, event_id, period_id, chunk_count
    ), done AS (
        DELETE FROM {_RETRIEVAL_STAGE} s USING ins WHERE s.event_id = ins.event_id
        RETURNING s.seq, ins.id, ins.period_id, ins.chunk_count
    ), chunks AS (
        INSERT INTO usage_retrieval_chunk (retrieval_id, rank, dataset_id, chunk_id, score)
        SELECT d.id, c.rank, c.dataset_id, c.chunk_id, c.score
          FROM done d JOIN {_CHUNK_STAGE} c ON c.seq = d.seq
    ), rollup AS ({_rollup_upsert(_RETRIEVAL_ROLLUP)})
    SELECT seq FROM done
"""  # noqa: S608

RETRIEVAL: Final[_Kind[RetrievalEvent]] = _Kind(
    name="retrieval",
    use="rag",
    use_bit=USE_RAG,
    stage=_RETRIEVAL_STAGE,
    parse=parse_retrieval,
    differing=differing_retrieval_fields,
    stage_ddl=(
        f"""
        CREATE TEMP TABLE {_RETRIEVAL_STAGE} (
            seq integer NOT NULL, event_id text NOT NULL, query_id text NOT NULL,
            occurred_at timestamptz NOT NULL, chunk_count smallint NOT NULL,
            body_hash text NOT NULL
        ) ON COMMIT DROP
        """,
        f"""
        CREATE TEMP TABLE {_CHUNK_STAGE} (
            seq integer NOT NULL, pos smallint NOT NULL, rank smallint NOT NULL,
            dataset_id uuid NOT NULL, chunk_id text NOT NULL, score double precision
        ) ON COMMIT DROP
        """,
    ),
    copy=_copy_retrieval,
    existing_sql=_existing_sql(
        _RETRIEVAL_STAGE, "usage_retrieval_event", "e.event_id, e.query_id, e.occurred_at"
    ),
    rules_sql=_rules_sql(
        _RETRIEVAL_STAGE,
        f"""SELECT c.seq, c.pos, c.dataset_id, s.occurred_at AS ts
              FROM {_CHUNK_STAGE} c JOIN {_RETRIEVAL_STAGE} s ON s.seq = c.seq""",  # noqa: S608
        USE_RAG,
        "",
    ),
    insert_sql=_RETRIEVAL_INSERT,
    stored=_stored_retrieval,
)


# --- helpers -----------------------------------------------------------------------------


def _event_id_of(raw: object) -> str | None:
    """The event id to file a rejected event under, when it has a usable one."""
    if isinstance(raw, Mapping):
        value = raw.get("event_id")
        if type(value) is str and 0 < len(value) <= ID_LENGTH_MAX and value.isprintable():
            return value
    return None


def _iso(value: datetime | None) -> str:
    return "?" if value is None else value.isoformat()


def _payload_json(raw: object) -> str:
    """The event as received, as JSON the ``jsonb`` column accepts. NUL characters,
    lone surrogates and non-finite numbers cannot be stored and are replaced; the
    rest is kept as sent."""
    try:
        text = json.dumps(raw, default=_json_default, ensure_ascii=True, allow_nan=False)
        if "\\u0000" not in text and "\\ud" not in text and "\\uD" not in text:
            return text
    except (TypeError, ValueError):
        pass
    try:
        return json.dumps(_clean(raw), default=_json_default, ensure_ascii=True, allow_nan=False)
    except (TypeError, ValueError, RecursionError):
        return json.dumps({"unparsed_repr": _clean(repr(raw)[:10_000])}, ensure_ascii=True)


def _json_default(value: object) -> object:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, Mapping):
        return dict(value)
    if isinstance(value, tuple | set | frozenset):
        return list(value)
    return repr(value)


def _clean(value: object) -> object:
    if isinstance(value, str):
        return value.encode("utf-8", "replace").decode("utf-8").replace("\x00", "\ufffd")
    if isinstance(value, float) and not math.isfinite(value):
        return repr(value)
    if isinstance(value, Mapping):
        return {str(_clean(k)): _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_clean(v) for v in value]
    return value
