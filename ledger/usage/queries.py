"""Read-side queries over usage: rollups and the quarantine."""

from __future__ import annotations

import uuid
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select, text
from sqlmodel import Session, col

from ledger.models.models import Model
from ledger.usage.models import QuarantinedEvent


@dataclass(frozen=True, slots=True)
class RollupRow:
    """One rollup row; ``quantity`` is Σ quantity×epochs (train) or hits (rag)."""

    period_key: str
    dataset_id: uuid.UUID
    kind: str
    unit: str
    list_length: int
    rank: int
    quantity: int
    event_count: int


def rollups(
    session: Session, model_id: uuid.UUID, period_id: uuid.UUID | None = None
) -> list[RollupRow]:
    """The rollups of a model (optionally one period), in key order."""
    session.flush()
    rows = session.execute(
        text(
            """
            SELECT p.key, r.dataset_id, r.kind, r.unit, r.list_length, r.rank, r.quantity,
                   r.event_count
              FROM usage_rollup r JOIN period p ON p.id = r.period_id
             WHERE r.model_id = :model AND (CAST(:period AS uuid) IS NULL OR r.period_id = :period)
             ORDER BY p.starts_at, r.dataset_id, r.kind, r.unit, r.list_length, r.rank
            """
        ),
        {"model": model_id, "period": period_id},
    ).all()
    return [
        RollupRow(
            row.key,
            row.dataset_id,
            row.kind,
            row.unit,
            row.list_length,
            row.rank,
            int(row.quantity),
            int(row.event_count),
        )
        for row in rows
    ]


def quarantined(
    session: Session, model_id: uuid.UUID, *, limit: int = 100, review_state: str = "open"
) -> list[QuarantinedEvent]:
    """Rejected events of a model awaiting review, oldest first."""
    session.flush()
    return list(
        session.execute(
            select(QuarantinedEvent)
            .where(
                QuarantinedEvent.model_id == model_id,  # type: ignore[arg-type]
                QuarantinedEvent.review_state == review_state,  # type: ignore[arg-type]
            )
            .order_by(QuarantinedEvent.id)  # type: ignore[arg-type]
            .limit(limit)
        ).scalars()
    )


def quarantine_page(
    session: Session,
    *,
    model_id: uuid.UUID | None = None,
    account_id: uuid.UUID | None = None,
    reason_code: str | None = None,
    review_state: str | None = "open",
    after_id: int | None = None,
    limit: int = 50,
) -> list[QuarantinedEvent]:
    """Quarantined events in id order (oldest first), after ``after_id``: of one model,
    of the models of one account (``account_id``), or all; optionally of one reason and
    one review state (None: any)."""
    session.flush()
    query = select(QuarantinedEvent).order_by(col(QuarantinedEvent.id)).limit(limit)
    if model_id is not None:
        query = query.where(col(QuarantinedEvent.model_id) == model_id)
    if account_id is not None:
        owned = select(col(Model.id)).where(col(Model.account_id) == account_id)
        query = query.where(col(QuarantinedEvent.model_id).in_(owned))
    if reason_code is not None:
        query = query.where(col(QuarantinedEvent.reason_code) == reason_code)
    if review_state is not None:
        query = query.where(col(QuarantinedEvent.review_state) == review_state)
    if after_id is not None:
        query = query.where(col(QuarantinedEvent.id) > after_id)
    return list(session.execute(query).scalars())


@dataclass(frozen=True, slots=True)
class DatasetUsage:
    """One dataset's usage by a model in a period: training quantity (Σ quantity ×
    epochs) and events per unit, and retrieval hits (chunks returned, any rank)."""

    dataset_id: uuid.UUID
    training: dict[str, tuple[int, int]]  # unit → (quantity, events)
    retrieval_hits: int


@dataclass(frozen=True, slots=True)
class UsageSummary:
    """A model's usage in one period (a UTC month ``YYYY-MM``), from the rollups; the
    rejections are the quarantined events dated in that month (those without a
    readable ``occurred_at`` belong to no month)."""

    model_id: uuid.UUID
    period_key: str
    period_state: str | None  # None: no usage or revenue was ever reported for it
    training_events: int
    retrieval_events: int
    datasets: list[DatasetUsage]
    rejected_events: int
    rejected_open: int
    top_rejection_reasons: list[tuple[str, int]]  # (reason code, events), most first


def usage_summary(
    session: Session, model_id: uuid.UUID, month_start: datetime, *, reasons_max: int = 10
) -> UsageSummary:
    """The usage summary of ``model_id`` for the UTC month starting at ``month_start``.

    Event counts come from the rollups: every training event adds 1 to one rollup row's
    ``event_count``, every retrieval event has exactly one rank-1 chunk."""
    session.flush()
    key = month_start.strftime("%Y-%m")
    period = session.execute(
        text("SELECT id, state FROM period WHERE model_id = :m AND starts_at = :s"),
        {"m": model_id, "s": month_start},
    ).one_or_none()
    datasets: dict[uuid.UUID, DatasetUsage] = {}
    training_events = retrieval_events = 0
    if period is not None:
        rows = session.execute(
            text(
                """
                SELECT dataset_id, kind, unit, sum(quantity) AS quantity,
                       sum(event_count) AS events,
                       sum(event_count) FILTER (WHERE rank = 1) AS rank1_events
                  FROM usage_rollup
                 WHERE model_id = :m AND period_id = :p
                 GROUP BY dataset_id, kind, unit
                 ORDER BY dataset_id, kind, unit
                """
            ),
            {"m": model_id, "p": period.id},
        ).all()
        for row in rows:
            usage = datasets.setdefault(row.dataset_id, DatasetUsage(row.dataset_id, {}, 0))
            if row.kind == "train":
                usage.training[row.unit] = (int(row.quantity), int(row.events))
                training_events += int(row.events)
            else:
                datasets[row.dataset_id] = DatasetUsage(
                    row.dataset_id, usage.training, usage.retrieval_hits + int(row.quantity)
                )
                retrieval_events += int(row.rank1_events or 0)
    # Candidates by text prefix (an offset can move an instant into the next or the
    # previous UTC month), then the exact UTC month in Python: payload times may be
    # anything, and a failing cast must not fail the query.
    month_end = (month_start + timedelta(days=32)).replace(day=1)
    prefixes = [f"{m:%Y-%m}-%" for m in (month_start - timedelta(days=1), month_start, month_end)]
    candidates = session.execute(
        text(
            """
            SELECT reason_code, review_state, payload->>'occurred_at' AS at
              FROM usage_quarantine
             WHERE model_id = :m AND payload->>'occurred_at' LIKE ANY(:prefixes)
            """
        ),
        {"m": model_id, "prefixes": prefixes},
    ).all()
    events: Counter[str] = Counter()
    still_open = 0
    for row in candidates:
        at = _instant(row.at)
        if at is not None and month_start <= at < month_end:
            events[row.reason_code] += 1
            still_open += row.review_state == "open"
    ranked = sorted(events.items(), key=lambda item: (-item[1], item[0]))
    return UsageSummary(
        model_id=model_id,
        period_key=key,
        period_state=None if period is None else period.state,
        training_events=training_events,
        retrieval_events=retrieval_events,
        datasets=list(datasets.values()),
        rejected_events=sum(events.values()),
        rejected_open=still_open,
        top_rejection_reasons=ranked[:reasons_max],
    )


def _instant(value: str | None) -> datetime | None:
    try:
        at = datetime.fromisoformat(value) if value else None
    except ValueError:
        return None
    return at if at is not None and at.utcoffset() is not None else None
