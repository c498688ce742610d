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
6. Insert: events (``ON CONFLICT DO NOTHING``, in event-id order, bytewise like the
   fast path's Python sort, so concurrent batches lock keys in one order) and rollup
   increments computed from the rows *actually inserted*, in one statement. Events a
   concurrent batch inserted first are classified as in step 3.
7. Quarantine: every rejected event goes to ``usage_quarantine`` in one statement,
   unless the same event already waits there for review with the same reason.

Retrieval batches first try a fast path (:func:`_fast_retrievals`), the hot path of
the HTTP API: one query checks, for the whole batch at once, that no rule can fail
(every dataset confirmed for RAG over the batch's whole time span, an agreement for
every month, nothing in the future); the periods are locked as in step 5; then the
events are ``COPY``-ed in binary straight into ``usage_retrieval_event`` (in event-id
order) and the rollup increments, counted in Python, are added in one statement. The
unique primary key is the replay check: if any event id exists already (or a
concurrent batch inserts one first), the COPY fails, is rolled back to its own
savepoint, and the batch takes steps 2-7, which classify each event precisely; so
does a batch in which any rule might fail.

Steps 2-7 run inside a savepoint: if anything fails, the batch leaves nothing behind
(no events, rollup increments or quarantine rows), even if the caller goes on to
commit other work.
"""

from __future__ import annotations

import itertools
import json
import math
import operator
import uuid
from collections import Counter
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
from ledger.types import CHUNKS_PER_RETRIEVAL_MAX
from ledger.usage import pgbinary
from ledger.usage.compact import WireRetrieval, payload_json
from ledger.usage.schemas import (
    BATCH_EVENTS_MAX,
    ID_LENGTH_MAX,
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
    same_retrieval,
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
    same: Callable[[E, E], bool]  # two events with one id have the same body
    differing: Callable[[E, E], list[str]]
    stage_ddl: tuple[str, ...]
    copy: Callable[[Cursor[Any], dict[int, E]], None]
    existing_sql: str  # %(model)s; rows (seq, same, stored…); removes them from staging
    rules_sql: str  # %(model)s, %(skew_s)s; rows of broken rules; removes them
    insert_sql: str  # %(model)s; rows (seq) of inserted events; removes them
    stored: Callable[[list[Any]], dict[int, E]]  # rows of existing_sql → stored events
    # Tries the whole batch at once; False hands it to the staged path (see above).
    fast: Callable[[_Batch[E], Session, Cursor[Any]], bool] | None = None


def run(
    session: Session,
    model_id: uuid.UUID,
    events: Sequence[Any],
    kind: _Kind[E],
    rejected: Mapping[int, EventRejected] | None = None,
    parsed: Sequence[E] | None = None,
) -> IngestResult:
    """Ingest one batch of ``kind`` events for ``model_id``; see the module docstring.
    ``rejected``: events already refused while decoding (by index), quarantined as such.
    ``parsed``: every event already shape-validated by a decoder (``events[i]`` as
    received, ``parsed[i]`` what ``kind.parse`` would return for it), e.g. by
    ``ledger.usage.compact``."""
    if len(events) > BATCH_EVENTS_MAX:
        raise PayloadTooLarge(
            f"a batch holds at most {BATCH_EVENTS_MAX} events, got {len(events)}; split it",
            field="events",
            code="too_many_events",
            details={"max_events": BATCH_EVENTS_MAX},
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
                if parsed is None:
                    batch.parse_all(rejected or {})
                else:
                    batch.take_parsed(parsed)
                if batch.staged and not (kind.fast and kind.fast(batch, session, cursor)):
                    batch.run_sql(session, cursor)
                batch.resolve_repeats()
                batch.quarantine(cursor)
    except psycopg.Error as error:
        # Same exception types as the rest of the ORM code raises (callers retry
        # sqlalchemy.exc.OperationalError, e.g. a deadlock, as transient).
        raise DBAPIError.instance(None, None, error, psycopg.Error) from error
    return IngestResult(kind=kind.name, results=batch.final_results())


class _Batch(Generic[E]):
    def __init__(self, kind: _Kind[E], model_id: uuid.UUID, events: Sequence[Any]) -> None:
        self.kind: _Kind[E] = kind
        self.model_id = model_id
        self.events = events
        self.results: list[EventResult | None] = [None] * len(events)
        self.staged: dict[int, E] = {}  # index → event, first occurrence of each id
        self.repeats: list[tuple[int, int]] = []  # (index, index of identical first)

    # --- Python side -------------------------------------------------------------------

    def parse_all(
        self,
        rejected: Mapping[int, EventRejected],
        parse: Callable[[], E] | None = None,
    ) -> None:
        """Validate every event (``parse``: the next already validated event instead)
        and resolve repeats of an event id inside the batch."""
        staged, parse_raw = self.staged, self.kind.parse
        first_by_id: dict[str, int] = {}
        for index, raw in enumerate(self.events):
            try:
                if rejected and index in rejected:
                    raise rejected[index]
                event = parse_raw(raw) if parse is None else parse()
            except EventRejected as error:
                self.reject(index, error.code, error.message, error.field)
                continue
            first = first_by_id.setdefault(event.event_id, index)
            if first == index:
                staged[index] = event
                continue
            earlier = staged[first]
            if self.kind.same(earlier, event):
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

    def take_parsed(self, parsed: Sequence[E]) -> None:
        """Like :meth:`parse_all` for events a decoder already validated."""
        if len(parsed) != len(self.events):
            raise ValueError(f"{len(parsed)} parsed events for {len(self.events)} received")
        self.parse_all({}, parse=iter(parsed).__next__)

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
            stored = self.kind.stored(conflicting)
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
     -- One index probe per reject, by construction: two probes rather than one with
     -- "= OR both NULL" (which no index can serve), and OFFSET 0 keeps each a per-row
     -- subplan instead of an anti-join that hashes every quarantined event of the model
     -- (seen under load: 0.3-1 s and temp files per batch, while holding rollup locks).
     WHERE NOT EXISTS (
           SELECT 1 FROM usage_quarantine x
            WHERE q.event_id IS NOT NULL
              AND x.model_id = %(model)s AND x.event_id = q.event_id
              AND x.kind = %(kind)s::text AND x.reason_code = q.reason_code
              AND x.payload = q.payload AND x.review_state = 'open'
           OFFSET 0)
       AND NOT EXISTS (
           SELECT 1 FROM usage_quarantine x
            WHERE q.event_id IS NULL
              AND x.model_id = %(model)s AND x.event_id IS NULL
              AND x.kind = %(kind)s::text AND x.reason_code = q.reason_code
              AND x.payload = q.payload AND x.review_state = 'open'
           OFFSET 0)
     ORDER BY q.event_id, q.reason_code, q.payload, q.ord
"""


def _stage_tables(kind: _Kind[Any]) -> list[str]:
    return [kind.stage]


def _existing_sql(stage: str, table: str, same: str, stored_columns: str) -> str:
    # One primary-key probe per staged event, by construction (LIMIT keeps the planner from
    # flattening the lateral subquery into a join): the staging table has no statistics and
    # a COPY-fed event table outgrows its own, and with both estimates off a hash join over
    # all of a model's stored events was chosen under load (seconds, temp files).
    return f"""
        WITH found AS (
            SELECT s.seq, {same} AS same, {stored_columns}
              FROM {stage} s
              CROSS JOIN LATERAL (
                    SELECT * FROM {table} x
                     WHERE x.model_id = %(model)s AND x.event_id = s.event_id
                     LIMIT 1
                   ) e
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


def _stored_training(rows: list[Any]) -> dict[int, TrainingEvent]:
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
         ORDER BY s.event_id COLLATE "C"
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
    same=lambda a, b: a.body_hash == b.body_hash,
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
        "s.body_hash = e.body_hash",
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


def _copy_retrieval(cursor: Cursor[Any], staged: dict[int, RetrievalEvent]) -> None:
    columns = (
        "seq, event_id, query_id, occurred_at, chunk_count, dataset_ids, chunk_ids, "
        "chunk_scores, positions"
    )
    with cursor.copy(f"COPY {_RETRIEVAL_STAGE} ({columns}) FROM STDIN") as copy:
        write = copy.write_row
        for seq, e in staged.items():
            write(
                (
                    seq,
                    e.event_id,
                    e.query_id,
                    e.occurred_at,
                    len(e.dataset_ids),
                    e.dataset_ids,
                    e.chunk_ids,
                    e.scores,
                    e.positions,
                )
            )


def _stored_retrieval(rows: list[Any]) -> dict[int, RetrievalEvent]:
    return {
        row.seq: RetrievalEvent(
            row.event_id,
            row.query_id,
            row.occurred_at,
            [str(d) for d in row.dataset_ids],
            list(row.chunk_ids),
            None if row.chunk_scores is None else list(row.chunk_scores),
            None,
        )
        for row in rows
    }


# Retrieval rollups count hits per (dataset, list length, rank); quantity and
# event_count coincide (one chunk per rank per event).
_RETRIEVAL_INSERT: Final = f"""
    WITH ins AS (
        INSERT INTO usage_retrieval_event
               (model_id, event_id, query_id, occurred_at, period_id, chunk_count,
                dataset_ids, chunk_ids, chunk_scores)
        SELECT %(model)s, s.event_id, s.query_id, s.occurred_at, p.id, s.chunk_count,
               s.dataset_ids, s.chunk_ids, s.chunk_scores
          FROM {_RETRIEVAL_STAGE} s
          JOIN period p ON p.model_id = %(model)s
                       AND p.starts_at = {_MONTH.format(ts="s.occurred_at")}
         ORDER BY s.event_id COLLATE "C"
            ON CONFLICT (model_id, event_id) DO NOTHING
        RETURNING event_id, period_id, chunk_count, dataset_ids
    ), done AS (
        DELETE FROM {_RETRIEVAL_STAGE} s USING ins WHERE s.event_id = ins.event_id
        RETURNING s.seq
    ), rollup AS ({
    _rollup_upsert('''
        SELECT %(model)s, i.period_id, c.dataset_id, 'rag', 'hits', i.chunk_count,
               c.rank::smallint, count(*), count(*)
          FROM ins i, unnest(i.dataset_ids) WITH ORDINALITY AS c(dataset_id, rank)
         GROUP BY i.period_id, c.dataset_id, i.chunk_count, c.rank
         ORDER BY i.period_id, c.dataset_id, i.chunk_count, c.rank
    ''')
})
    SELECT seq FROM done
"""  # noqa: S608


# --- retrieval fast path -----------------------------------------------------------------

# Whether every rule holds for every event of the batch, checked for the batch as a
# whole: nothing after now (+ skew); per month an agreement in force at the month's
# earliest event; per dataset one window (a confirmation allowing RAG, cut to the
# validity window) spanning the batch's earliest to latest event.
_FAST_CHECK_SQL: Final = f"""
    SELECT %(latest)s <= now() + make_interval(secs => %(skew_s)s) AS not_future,
           (SELECT count(*) FROM unnest(%(datasets)s::uuid[]) AS d(id)
             WHERE EXISTS (
                   SELECT 1 FROM dataset_confirmation c JOIN dataset ds ON ds.id = c.dataset_id
                    WHERE c.dataset_id = d.id AND c.allowed_uses & {USE_RAG} <> 0
                      AND greatest(c.confirmed_from, ds.valid_from) <= %(earliest)s
                      AND %(latest)s < least(coalesce(c.confirmed_until, 'infinity'),
                                             coalesce(ds.valid_until, 'infinity')))
           ) AS covered_datasets,
           (SELECT bool_and(g.version IS NOT NULL AND m.earliest >= g.effective_from)
              FROM unnest(%(months)s::timestamptz[], %(month_earliest)s::timestamptz[])
                   AS m(starts_at, earliest)
              LEFT JOIN LATERAL ({
    periods.GOVERNING_AGREEMENT_SQL.format(model="%(model)s", month="m.starts_at")
}) g ON true
           ) AS agreements
"""  # noqa: S608

_FAST_ROLLUP: Final = _rollup_upsert(
    """
    SELECT %(model)s, r.period_id, r.dataset_id, 'rag', 'hits', r.list_length, r.rank,
           r.hits, r.hits
      FROM unnest(%(periods)s::uuid[], %(datasets)s::uuid[], %(lengths)s::smallint[],
                  %(ranks)s::smallint[], %(hits)s::bigint[])
           AS r(period_id, dataset_id, list_length, rank, hits)
     ORDER BY r.period_id, r.dataset_id, r.list_length, r.rank
    """
)

# (list length, rank) keys per list length, for counting hits.
_LENGTH_RANKS: Final = {
    n: tuple((n, rank) for rank in range(1, n + 1)) for n in range(1, CHUNKS_PER_RETRIEVAL_MAX + 1)
}


def _fast_retrievals(batch: _Batch[RetrievalEvent], session: Session, cursor: Cursor[Any]) -> bool:
    """Insert the whole staged batch when no rule can fail and no event id exists;
    False (nothing written) otherwise. See the module docstring."""
    model_id, staged = batch.model_id, batch.staged
    events = sorted(staged.values(), key=_BY_EVENT_ID)
    times = [e.occurred_at for e in events]
    earliest, latest = min(times), max(times)
    first_month, last_month = periods.month_start(earliest), periods.month_start(latest)
    if first_month == last_month:
        month_of: list[datetime] | None = None
        month_earliest = {first_month: earliest}
    else:
        month_of = [periods.month_start(t) for t in times]
        month_earliest = {}
        for month, at in zip(month_of, times, strict=True):
            if month not in month_earliest or at < month_earliest[month]:
                month_earliest[month] = at
    months = sorted(month_earliest)
    datasets = sorted(set().union(*(e.dataset_ids for e in events)))
    cursor.execute(
        _FAST_CHECK_SQL,
        {
            "model": model_id,
            "skew_s": periods.FUTURE_TOLERANCE_S,
            "earliest": earliest,
            "latest": latest,
            "datasets": datasets,
            "months": months,
            "month_earliest": [month_earliest[m] for m in months],
        },
    )
    check = cursor.fetchone()
    assert check is not None
    if not (check.not_future and check.agreements and check.covered_datasets == len(datasets)):
        return False
    periods.ensure_periods(session, model_id, months)
    locked = periods.lock_months_for_share(session, model_id, months)
    if any(p.state != "open" for p in locked):
        return False
    period_ids = {p.starts_at: p.id for p in locked}

    period_fields = {m: pgbinary.uuid_field(period_ids[m]) for m in months}
    if month_of is None:
        rows: Any = zip(events, itertools.repeat(period_fields[first_month]))
    else:
        rows = zip(events, [period_fields[m] for m in month_of], strict=True)
    data = pgbinary.retrieval_rows(pgbinary.uuid_field(model_id), rows)
    cursor.execute("SAVEPOINT uf_fast_copy")
    try:
        with cursor.copy(
            f"COPY usage_retrieval_event ({pgbinary.RETRIEVAL_COLUMNS}) FROM STDIN (FORMAT binary)"
        ) as copy:
            copy.write(data)
    except psycopg.errors.UniqueViolation:
        # An event id exists (a replay, or a concurrent batch won): classify precisely.
        cursor.execute("ROLLBACK TO SAVEPOINT uf_fast_copy")
        cursor.execute("RELEASE SAVEPOINT uf_fast_copy")
        return False
    cursor.execute("RELEASE SAVEPOINT uf_fast_copy")

    # One flat list of (dataset, (list length, rank)) keys per month, counted in C.
    hits: Counter[tuple[datetime, str, tuple[int, int]]] = Counter()
    lengths_ranks = _LENGTH_RANKS
    if month_of is None:
        flat: list[tuple[str, tuple[int, int]]] = []
        extend = flat.extend
        for e in events:
            extend(zip(e.dataset_ids, lengths_ranks[len(e.dataset_ids)], strict=True))
        hits.update({(first_month, *key): count for key, count in Counter(flat).items()})
    else:
        for month, e in zip(month_of, events, strict=True):
            hits.update(
                (month, d, lr)
                for d, lr in zip(e.dataset_ids, lengths_ranks[len(e.dataset_ids)], strict=True)
            )
    keys = list(hits)
    cursor.execute(
        _FAST_ROLLUP,
        {
            "model": model_id,
            "periods": [period_ids[k[0]] for k in keys],
            "datasets": [k[1] for k in keys],
            "lengths": [k[2][0] for k in keys],
            "ranks": [k[2][1] for k in keys],
            "hits": list(hits.values()),
        },
    )
    results = batch.results
    for index, e in staged.items():
        results[index] = EventResult(index, e.event_id, "accepted")
    return True


_BY_EVENT_ID: Final = operator.itemgetter(0)  # RetrievalEvent.event_id


RETRIEVAL: Final[_Kind[RetrievalEvent]] = _Kind(
    name="retrieval",
    use="rag",
    use_bit=USE_RAG,
    stage=_RETRIEVAL_STAGE,
    parse=parse_retrieval,
    same=same_retrieval,
    differing=differing_retrieval_fields,
    stage_ddl=(
        f"""
        CREATE TEMP TABLE {_RETRIEVAL_STAGE} (
            seq integer NOT NULL, event_id text NOT NULL, query_id text NOT NULL,
            occurred_at timestamptz NOT NULL, chunk_count smallint NOT NULL,
            dataset_ids uuid[] NOT NULL, chunk_ids text[] NOT NULL,
            chunk_scores double precision[], positions smallint[]
        ) ON COMMIT DROP
        """,
    ),
    copy=_copy_retrieval,
    existing_sql=_existing_sql(
        _RETRIEVAL_STAGE,
        "usage_retrieval_event",
        """s.query_id = e.query_id AND s.occurred_at = e.occurred_at
           AND s.dataset_ids = e.dataset_ids AND s.chunk_ids = e.chunk_ids
           AND s.chunk_scores IS NOT DISTINCT FROM e.chunk_scores""",
        "e.event_id, e.query_id, e.occurred_at, e.dataset_ids, e.chunk_ids, e.chunk_scores",
    ),
    rules_sql=_rules_sql(
        _RETRIEVAL_STAGE,
        f"""SELECT s.seq, coalesce(s.positions[c.rank::int], c.rank - 1) AS pos, c.dataset_id,
                   s.occurred_at AS ts
              FROM {_RETRIEVAL_STAGE} s,
                   unnest(s.dataset_ids) WITH ORDINALITY AS c(dataset_id, rank)""",  # noqa: S608
        USE_RAG,
        "",
    ),
    insert_sql=_RETRIEVAL_INSERT,
    stored=_stored_retrieval,
    fast=_fast_retrievals,
)


# --- helpers -----------------------------------------------------------------------------


def _event_id_of(raw: object) -> str | None:
    """The event id to file a rejected event under, when it has a usable one."""
    if type(raw) is WireRetrieval:
        return raw.event_id
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
    if type(raw) is WireRetrieval:
        return payload_json(raw)
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
