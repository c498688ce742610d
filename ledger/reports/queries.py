"""Read-side queries of the exports: which statements, and their rows, streamed.

Row sets that grow with the number of payees (lines, breakdown sources, journal
entries) are read through server-side cursors (``yield_per``), so memory does not
grow with them. Lines come in the statement's own order: by address in code-point
order (``COLLATE "C"``), which is Python's ``str`` order used by the engine.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from sqlalchemy import text
from sqlmodel import Session

from ledger.reports.streams import FETCH_ROWS, ExportIntegrityError

# Periods of the model a PDF usage chart covers, ending with the statement's period.
CHART_PERIODS_MAX: Final = 12

# The canonical statement has sorted keys and no whitespace, and a '"' inside a JSON
# string is always escaped, so these byte sequences occur exactly once, structurally:
# the opening of the top-level "lines" array and the key that follows its end.
_LINES_OPEN: Final = b'"lines":['
_LINES_CLOSE: Final = b'],"min_payout_minor":'


@dataclass(frozen=True, slots=True)
class SettlementInfo:
    """The on-chain settlement of a statement, as the ledger recorded it."""

    state: str
    chain_id: int
    contract_address: str
    token_address: str
    settlement_key: str
    merkle_root: str
    statement_hash: str
    publish_tx_hash: str | None
    publish_block: int | None
    units_per_minor: int
    total_units: int


@dataclass(frozen=True, slots=True)
class StatementRef:
    """A closed period selected for export, with what every format prints about it."""

    period_id: uuid.UUID
    period_key: str
    period_state: str
    starts_at: datetime
    ends_at: datetime
    model_id: uuid.UUID
    model_name: str
    currency: str
    currency_exponent: int
    revenue_minor: int
    pool_minor: int
    statement_hash: str
    line_count: int
    source_count: int
    settlement: SettlementInfo | None

    @property
    def short_name(self) -> str:
        """``2026-10 1a2b3c4d``: period key and the model id's first 8 hex digits."""
        return f"{self.period_key} {self.model_id.hex[:8]}"

    def as_json(self) -> dict[str, Any]:
        return {
            "period_id": str(self.period_id),
            "period_key": self.period_key,
            "period_state": self.period_state,
            "model_id": str(self.model_id),
            "currency": self.currency,
            "revenue_minor": self.revenue_minor,
            "pool_minor": self.pool_minor,
            "statement_hash": self.statement_hash,
            "lines": self.line_count,
            "merkle_root": self.settlement.merkle_root if self.settlement else None,
        }


_STATEMENTS_SQL: Final = """
    SELECT p.id, p.key, p.state, p.starts_at, p.ends_at, p.model_id, m.name AS model_name,
           a.currency, a.currency_exponent, p.revenue_minor, p.pool_minor, p.statement_hash,
           counts.line_count, counts.source_count,
           s.state AS s_state, s.chain_id, s.contract_address, s.token_address,
           s.settlement_key, s.merkle_root, s.statement_hash AS s_statement_hash,
           s.publish_tx_hash, s.publish_block, s.units_per_minor, s.total_units
      FROM period p
      JOIN model m ON m.id = p.model_id
      LEFT JOIN agreement a ON a.id = p.agreement_id
      LEFT JOIN settlement s ON s.period_id = p.id
     CROSS JOIN LATERAL (
           SELECT count(*) AS line_count,
                  COALESCE(sum(jsonb_array_length(l.breakdown)), 0) AS source_count
             FROM statement_line l WHERE l.period_id = p.id) counts
     WHERE {where}
     ORDER BY p.starts_at, m.name, p.model_id
"""


def _ref(row: Any) -> StatementRef:
    if row.currency is None or row.statement_hash is None:
        # A closed period always has its agreement and hash; anything else is corruption.
        raise ExportIntegrityError(f"period {row.id} is {row.state} but has no statement data")
    settlement = None
    if row.s_state is not None:
        settlement = SettlementInfo(
            state=row.s_state,
            chain_id=int(row.chain_id),
            contract_address=row.contract_address,
            token_address=row.token_address,
            settlement_key=row.settlement_key,
            merkle_root=row.merkle_root,
            statement_hash=row.s_statement_hash,
            publish_tx_hash=row.publish_tx_hash,
            publish_block=None if row.publish_block is None else int(row.publish_block),
            units_per_minor=int(row.units_per_minor),
            total_units=int(row.total_units),
        )
    return StatementRef(
        period_id=row.id,
        period_key=row.key,
        period_state=row.state,
        starts_at=row.starts_at,
        ends_at=row.ends_at,
        model_id=row.model_id,
        model_name=row.model_name,
        currency=row.currency,
        currency_exponent=int(row.currency_exponent),
        revenue_minor=int(row.revenue_minor or 0),
        pool_minor=int(row.pool_minor or 0),
        statement_hash=row.statement_hash,
        line_count=int(row.line_count),
        source_count=int(row.source_count),
        settlement=settlement,
    )


def statements_where(session: Session, where: str, params: dict[str, Any]) -> list[StatementRef]:
    """Closed periods matching ``where`` (SQL over ``p`` = period, ``m`` = model), in
    start order. ``where`` is assembled from constants by the caller, never from input."""
    sql = _STATEMENTS_SQL.format(where=f"p.state IN ('closed', 'anchored', 'paid') AND ({where})")
    return [_ref(row) for row in session.execute(text(sql), params).all()]


def period_states(
    session: Session, *, period_id: uuid.UUID | None, key: str | None, model_id: uuid.UUID | None
) -> list[tuple[uuid.UUID, str, str]]:
    """``(id, key, state)`` of the periods a selector names, whatever their state."""
    rows = session.execute(
        text(
            """
            SELECT id, key, state FROM period
             WHERE (CAST(:period AS uuid) IS NULL OR id = :period)
               AND (CAST(:key AS text) IS NULL OR key = :key)
               AND (CAST(:model AS uuid) IS NULL OR model_id = :model)
             ORDER BY starts_at, model_id
            """
        ),
        {"period": period_id, "key": key, "model": model_id},
    ).all()
    return [(row.id, row.key, row.state) for row in rows]


def statement_document_without_lines(session: Session, period_id: uuid.UUID) -> dict[str, Any]:
    """The period's canonical statement parsed without its ``lines`` (which become
    ``[]``): totals, sub-pools and rule texts, without reading 100,000 lines into
    memory. The database cuts the lines out of the stored bytes."""
    # Detoasted once (see stream_statement_slices), then searched and cut in place.
    row = session.execute(
        text(
            """
            WITH doc AS MATERIALIZED (
                SELECT canonical_json || ''::bytea AS doc FROM period_statement
                 WHERE period_id = :period)
            SELECT CASE WHEN s.open_at > 0 AND s.close_at > s.open_at
                        THEN substring(s.doc FROM 1 FOR s.open_at + :open_len - 1)
                             || substring(s.doc FROM s.close_at) END AS document
              FROM (SELECT d.doc, position(CAST(:open AS bytea) IN d.doc) AS open_at,
                           position(CAST(:close AS bytea) IN d.doc) AS close_at
                      FROM doc d) s
            """
        ),
        {
            "period": period_id,
            "open": _LINES_OPEN,
            "close": _LINES_CLOSE,
            "open_len": len(_LINES_OPEN),
        },
    ).one_or_none()
    if row is None or row.document is None:
        raise ExportIntegrityError(f"period {period_id} has no parseable canonical statement")
    document: dict[str, Any] = json.loads(bytes(row.document).decode("utf-8"))
    return document


def statement_size(session: Session, period_id: uuid.UUID) -> tuple[int, str]:
    """``(bytes, stored sha256)`` of the period's canonical statement."""
    row = session.execute(
        text(
            "SELECT octet_length(canonical_json) AS size, sha256 FROM period_statement "
            "WHERE period_id = :period"
        ),
        {"period": period_id},
    ).one_or_none()
    if row is None:
        raise ExportIntegrityError(f"period {period_id} is closed but has no stored statement")
    return int(row.size), row.sha256


def stream_statement_slices(
    session: Session, period_id: uuid.UUID, slice_bytes: int
) -> Iterator[bytes]:
    """The canonical statement in consecutive slices of ``slice_bytes``, fetched two at
    a time through a server-side cursor."""
    # The stored value is TOAST-compressed: slicing it directly would decompress it again
    # for every slice (quadratic). ``|| ''`` detoasts it once into the materialised CTE,
    # in the database server's memory, and every slice is cut from that copy.
    result = session.execute(
        text(
            """
            WITH doc AS MATERIALIZED (
                SELECT canonical_json || ''::bytea AS bytes FROM period_statement
                 WHERE period_id = :period)
            SELECT substring(doc.bytes FROM g.start FOR :length) AS chunk
              FROM doc, generate_series(1, octet_length(doc.bytes), :length) AS g(start)
             ORDER BY g.start
            """
        ).execution_options(yield_per=2),
        {"period": period_id, "length": slice_bytes},
    )
    for row in result:
        yield bytes(row.chunk)


@dataclass(frozen=True, slots=True)
class LineRow:
    address: str
    accrued_minor: int
    carry_in_minor: int
    adjustment_minor: int
    payable_minor: int
    carried_forward_minor: int

    @property
    def amounts_minor(self) -> tuple[int, int, int, int, int]:
        """Accrued, carry-in, adjustment, payable, carried forward (statement order)."""
        return (
            self.accrued_minor,
            self.carry_in_minor,
            self.adjustment_minor,
            self.payable_minor,
            self.carried_forward_minor,
        )


def _line(row: Any) -> LineRow:
    return LineRow(
        row.address,
        int(row.accrued_minor),
        int(row.carry_in_minor),
        int(row.adjustment_minor),
        int(row.payable_minor),
        int(row.carried_forward_minor),
    )


def stream_lines(session: Session, period_id: uuid.UUID) -> Iterator[LineRow]:
    """The statement's lines in statement order, through a server-side cursor."""
    result = session.execute(
        text(
            """
            SELECT address, accrued_minor, carry_in_minor, adjustment_minor, payable_minor,
                   carried_forward_minor
              FROM statement_line WHERE period_id = :period
             ORDER BY address COLLATE "C"
            """
        ).execution_options(yield_per=FETCH_ROWS),
        {"period": period_id},
    )
    for row in result:
        yield _line(row)


@dataclass(frozen=True, slots=True)
class SourceRow:
    """One source of a line: what one dataset's use of one kind paid one payee."""

    address: str
    dataset_id: str
    dataset_name: str | None
    kind: str
    weight: str  # exact fraction "num/den"
    total_weight: str
    sub_pool_minor: int
    dataset_amount_minor: int
    share_bps: int
    amount_minor: int
    rollup_ids: tuple[str, ...]


_SOURCES_SQL: Final = """
    SELECT l.address, s.src->>'dataset_id' AS dataset_id, d.name AS dataset_name,
           s.src->>'kind' AS kind, s.src->>'weight' AS weight,
           s.src->>'total_weight' AS total_weight, s.src->>'sub_pool_minor' AS sub_pool_minor,
           s.src->>'dataset_amount_minor' AS dataset_amount_minor,
           s.src->>'share_bps' AS share_bps, s.src->>'amount_minor' AS amount_minor,
           s.src->'rollup_ids' AS rollup_ids
      FROM statement_line l
     CROSS JOIN LATERAL jsonb_array_elements(l.breakdown) WITH ORDINALITY AS s(src, ord)
      LEFT JOIN dataset d ON d.id::text = s.src->>'dataset_id'
     WHERE l.period_id = :period AND {where}
     ORDER BY l.address COLLATE "C", s.ord
"""


def _source(row: Any) -> SourceRow:
    return SourceRow(
        address=row.address,
        dataset_id=row.dataset_id,
        dataset_name=row.dataset_name,
        kind=row.kind,
        weight=row.weight,
        total_weight=row.total_weight,
        sub_pool_minor=int(row.sub_pool_minor),
        dataset_amount_minor=int(row.dataset_amount_minor),
        share_bps=int(row.share_bps),
        amount_minor=int(row.amount_minor),
        rollup_ids=tuple(row.rollup_ids),
    )


def stream_sources(session: Session, period_id: uuid.UUID) -> Iterator[SourceRow]:
    """Every line's breakdown sources, in statement order, through a server-side cursor."""
    result = session.execute(
        text(_SOURCES_SQL.format(where="true")).execution_options(yield_per=FETCH_ROWS),
        {"period": period_id},
    )
    for row in result:
        yield _source(row)


@dataclass(frozen=True, slots=True)
class PayeeLine:
    line: LineRow
    sources: tuple[SourceRow, ...]
    adjustments: tuple[tuple[int, str, str], ...]  # (amount_minor, reason, reference)
    owner_name: str | None


def payee_line(session: Session, period_id: uuid.UUID, payee: str) -> PayeeLine | None:
    """One payee's line (address matched case-insensitively), its sources, the
    adjustments applied to it and the owner's display name; None if it has no line."""
    row = session.execute(
        text(
            """
            SELECT l.address, l.accrued_minor, l.carry_in_minor, l.adjustment_minor,
                   l.payable_minor, l.carried_forward_minor, o.display_name
              FROM statement_line l LEFT JOIN owner o ON o.address = l.address
             WHERE l.period_id = :period AND lower(l.address) = lower(:payee)
            """
        ),
        {"period": period_id, "payee": payee},
    ).one_or_none()
    if row is None:
        return None
    line = _line(row)
    sources = session.execute(
        text(_SOURCES_SQL.format(where="l.address = :address")),
        {"period": period_id, "address": line.address},
    ).all()
    # The statement applied exactly the adjustments booked into this period for the payee.
    adjustments = session.execute(
        text(
            """
            SELECT amount_minor, reason, reference FROM period_adjustment
             WHERE period_id = :period AND address = :address
             ORDER BY reference COLLATE "C", reason COLLATE "C", amount_minor
            """
        ),
        {"period": period_id, "address": line.address},
    ).all()
    return PayeeLine(
        line=line,
        sources=tuple(_source(source) for source in sources),
        adjustments=tuple((int(a.amount_minor), a.reason, a.reference) for a in adjustments),
        owner_name=row.display_name,
    )


@dataclass(frozen=True, slots=True)
class UsagePoint:
    """Usage of one dataset in one period: training units (Σ quantity × epochs, all
    units) and retrieval hits."""

    period_key: str
    dataset_id: uuid.UUID
    dataset_name: str
    training_units: int
    retrieval_hits: int


def payee_usage(
    session: Session, ref: StatementRef, address: str, periods_max: int = CHART_PERIODS_MAX
) -> list[UsagePoint]:
    """Per period (the last ``periods_max`` of the model up to ``ref``'s) and per dataset
    the payee co-owns (any terms version), the model's usage from ``usage_rollup``."""
    rows = session.execute(
        text(
            """
            WITH periods AS (
                SELECT id, key, starts_at FROM period
                 WHERE model_id = :model AND starts_at <= :start
                 ORDER BY starts_at DESC LIMIT :periods_max
            ), owned AS (
                SELECT DISTINCT dataset_id FROM dataset_co_owner WHERE address = :address
            )
            SELECT p.key, r.dataset_id, d.name,
                   COALESCE(sum(r.quantity) FILTER (WHERE r.kind = 'train'), 0) AS train,
                   COALESCE(sum(r.quantity) FILTER (WHERE r.kind = 'rag'), 0) AS rag
              FROM usage_rollup r
              JOIN periods p ON p.id = r.period_id
              JOIN owned o ON o.dataset_id = r.dataset_id
              JOIN dataset d ON d.id = r.dataset_id
             WHERE r.model_id = :model
             GROUP BY p.key, p.starts_at, r.dataset_id, d.name
             ORDER BY r.dataset_id, p.starts_at
            """
        ),
        {
            "model": ref.model_id,
            "start": ref.starts_at,
            "address": address,
            "periods_max": periods_max,
        },
    ).all()
    return [
        UsagePoint(row.key, row.dataset_id, row.name, int(row.train), int(row.rag)) for row in rows
    ]


def chart_period_keys(
    session: Session, ref: StatementRef, periods_max: int = CHART_PERIODS_MAX
) -> list[str]:
    """Keys of the model's last ``periods_max`` periods up to ``ref``'s, oldest first."""
    keys = session.execute(
        text(
            """
            SELECT key FROM (
                SELECT key, starts_at FROM period WHERE model_id = :model AND starts_at <= :start
                 ORDER BY starts_at DESC LIMIT :periods_max) recent
             ORDER BY starts_at
            """
        ),
        {"model": ref.model_id, "start": ref.starts_at, "periods_max": periods_max},
    ).scalars()
    return list(keys)


@dataclass(frozen=True, slots=True)
class JournalRow:
    transaction_id: uuid.UUID
    posted_at: datetime
    kind: str
    description: str
    account_code: str
    account_kind: str
    currency: str
    amount_minor: int  # + debit, − credit
    reference: dict[str, Any] | None


def journal_entry_count(session: Session, start: datetime, end: datetime) -> int:
    return int(
        session.execute(
            text(
                "SELECT count(*) FROM journal_entry e JOIN journal_transaction t "
                "ON t.id = e.transaction_id WHERE t.posted_at >= :start AND t.posted_at < :end"
            ),
            {"start": start, "end": end},
        ).scalar_one()
    )


def stream_journal(session: Session, start: datetime, end: datetime) -> Iterator[JournalRow]:
    """Journal entries of transactions posted in ``[start, end)``, by posting time,
    transaction and entry order, through a server-side cursor."""
    result = session.execute(
        text(
            """
            SELECT t.id, t.posted_at, t.kind, t.description, a.code, a.kind AS account_kind,
                   e.currency, e.amount_minor, t.reference
              FROM journal_transaction t
              JOIN journal_entry e ON e.transaction_id = t.id
              JOIN journal_account a ON a.id = e.account_id
             WHERE t.posted_at >= :start AND t.posted_at < :end
             ORDER BY t.posted_at, t.id, e.id
            """
        ).execution_options(yield_per=FETCH_ROWS),
        {"start": start, "end": end},
    )
    for row in result:
        yield JournalRow(
            row.id,
            row.posted_at,
            row.kind,
            row.description,
            row.code,
            row.account_kind,
            row.currency,
            int(row.amount_minor),
            row.reference,
        )
