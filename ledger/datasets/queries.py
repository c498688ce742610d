"""Reads for datasets: who may see them, pages of datasets, files, usage and disputes.

Visibility is by address. A dataset belongs to the addresses named as co-owners in *any*
of its terms versions: a co-owner dropped from the current terms still has to sign (or
refuse) the change and still sees the usage its statements were paid from. Changing a
dataset takes a co-owner of the *current* terms (:func:`current_co_owner`).

Lists are keyset-paginated (``after`` = sort key of the last row returned, ``limit``).
"""

from __future__ import annotations

import uuid
from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import or_, select, text, tuple_
from sqlmodel import Session, col

from ledger.datasets.models import Dataset, DatasetCoOwner, DatasetFile, Dispute
from ledger.datasets.service import (
    co_owners_of,
    confirmed_signers,
    open_disputes,
    required_signers,
)
from ledger.errors import NotFound
from ledger.owners.models import Owner


def _co_owned_by(addresses: Collection[str]) -> Any:
    """``dataset.id IN (datasets naming any of addresses as co-owner, in any version)``."""
    return col(Dataset.id).in_(
        select(col(DatasetCoOwner.dataset_id)).where(
            col(DatasetCoOwner.address).in_(sorted(addresses))
        )
    )


def co_owner_in_any_version(
    session: Session, dataset_id: uuid.UUID, addresses: Collection[str]
) -> bool:
    """Whether any of ``addresses`` is named as a co-owner in any terms version."""
    if not addresses:
        return False
    found = session.execute(
        select(col(DatasetCoOwner.address))
        .where(
            col(DatasetCoOwner.dataset_id) == dataset_id,
            col(DatasetCoOwner.address).in_(sorted(addresses)),
        )
        .limit(1)
    ).first()
    return found is not None


def current_co_owner(session: Session, dataset: Dataset, addresses: Collection[str]) -> bool:
    """Whether any of ``addresses`` is a co-owner of the dataset's current terms."""
    current = {c.address for c in co_owners_of(session, dataset.id, dataset.terms_version)}
    return bool(current & set(addresses))


def visible_dataset(
    session: Session, dataset_id: uuid.UUID, addresses: Collection[str] | None
) -> Dataset:
    """The dataset if ``addresses`` (None: everyone's, for finance) may see it.

    NotFound (``dataset_not_found``) otherwise, the same answer as for a dataset that does
    not exist, so ids of other owners' datasets reveal nothing."""
    dataset = session.get(Dataset, dataset_id)
    if dataset is None or (
        addresses is not None and not co_owner_in_any_version(session, dataset_id, addresses)
    ):
        raise NotFound(
            f"dataset {dataset_id} does not exist or none of your addresses co-owns it",
            field="dataset_id",
            code="dataset_not_found",
        )
    return dataset


def datasets_page(
    session: Session,
    *,
    addresses: Collection[str] | None,
    status: str | None,
    after: tuple[datetime, uuid.UUID] | None,
    limit: int,
) -> list[Dataset]:
    """Datasets newest first (``created_at``, ``id`` descending) that ``addresses`` see."""
    if addresses is not None and not addresses:
        return []
    query = select(Dataset).order_by(col(Dataset.created_at).desc(), col(Dataset.id).desc())
    if addresses is not None:
        query = query.where(_co_owned_by(addresses))
    if status is not None:
        query = query.where(col(Dataset.status) == status)
    if after is not None:
        query = query.where(tuple_(col(Dataset.created_at), col(Dataset.id)) < tuple_(*after))
    return list(session.execute(query.limit(limit)).scalars())


@dataclass(frozen=True)
class CoOwnerView:
    address: str
    share_bps: int
    display_name: str
    confirmed: bool  # signed the current terms version


@dataclass(frozen=True)
class DatasetView:
    """A dataset with its current co-owners and where its signatures stand."""

    dataset: Dataset
    registrant: str
    co_owners: tuple[CoOwnerView, ...]
    required_signers: tuple[str, ...]
    missing_signers: tuple[str, ...]
    open_dispute_ids: tuple[uuid.UUID, ...]


def dataset_view(session: Session, dataset: Dataset) -> DatasetView:
    signed = confirmed_signers(session, dataset)
    rows = session.execute(
        select(DatasetCoOwner, col(Owner.display_name))
        .join(Owner, col(Owner.id) == col(DatasetCoOwner.owner_id))
        .where(
            col(DatasetCoOwner.dataset_id) == dataset.id,
            col(DatasetCoOwner.terms_version) == dataset.terms_version,
        )
    ).all()
    co_owners = sorted(
        (CoOwnerView(c.address, c.share_bps, name, c.address in signed) for c, name in rows),
        key=lambda c: c.address.lower(),
    )
    required = tuple(required_signers(session, dataset))
    registrant = session.get(Owner, dataset.registrant_owner_id)
    assert registrant is not None
    return DatasetView(
        dataset=dataset,
        registrant=registrant.address,
        co_owners=tuple(co_owners),
        required_signers=required,
        missing_signers=tuple(a for a in required if a not in signed),
        open_dispute_ids=tuple(d.id for d in open_disputes(session, dataset.id)),
    )


def files_page(
    session: Session, dataset_id: uuid.UUID, *, after: str | None, limit: int
) -> list[DatasetFile]:
    """The current manifest, by path."""
    query = (
        select(DatasetFile)
        .where(col(DatasetFile.dataset_id) == dataset_id)
        .order_by(col(DatasetFile.path))
    )
    if after is not None:
        query = query.where(col(DatasetFile.path) > after)
    return list(session.execute(query.limit(limit)).scalars())


@dataclass
class PeriodUsage:
    """What one model reported for the dataset in one period (from ``usage_rollup``).

    ``training`` maps a unit (tokens, samples, bytes) to (Σ quantity × epochs, events);
    ``retrieval_hits`` counts the chunks of the dataset returned at any rank."""

    period_id: uuid.UUID
    period_key: str
    period_state: str
    starts_at: datetime
    model_id: uuid.UUID
    model_name: str
    training: dict[str, tuple[int, int]]
    retrieval_hits: int

    @property
    def sort_key(self) -> tuple[datetime, uuid.UUID]:
        return (self.starts_at, self.period_id)


def usage_page(
    session: Session,
    dataset_id: uuid.UUID,
    *,
    after: tuple[datetime, uuid.UUID] | None,
    limit: int,
) -> list[PeriodUsage]:
    """The dataset's usage per period (one row per model period), newest first."""
    rows = session.execute(
        text(
            """
            WITH page AS (
                SELECT DISTINCT p.id, p.starts_at
                  FROM usage_rollup r JOIN period p ON p.id = r.period_id
                 WHERE r.dataset_id = :dataset
                   AND (CAST(:after_start AS timestamptz) IS NULL
                        OR (p.starts_at, p.id) < (:after_start, CAST(:after_id AS uuid)))
                 ORDER BY p.starts_at DESC, p.id DESC
                 LIMIT :limit
            )
            SELECT p.id AS period_id, p.key, p.state, p.starts_at, p.model_id,
                   m.name AS model_name, r.kind, r.unit,
                   sum(r.quantity) AS quantity, sum(r.event_count) AS events
              FROM page
              JOIN period p ON p.id = page.id
              JOIN model m ON m.id = p.model_id
              JOIN usage_rollup r ON r.period_id = p.id AND r.dataset_id = :dataset
             GROUP BY p.id, p.key, p.state, p.starts_at, p.model_id, m.name, r.kind, r.unit
             ORDER BY p.starts_at DESC, p.id DESC, r.kind, r.unit
            """
        ),
        {
            "dataset": dataset_id,
            "after_start": after[0] if after else None,
            "after_id": str(after[1]) if after else None,
            "limit": limit,
        },
    ).all()
    out: dict[uuid.UUID, PeriodUsage] = {}
    for row in rows:
        usage = out.get(row.period_id)
        if usage is None:
            usage = out[row.period_id] = PeriodUsage(
                period_id=row.period_id,
                period_key=row.key,
                period_state=row.state,
                starts_at=row.starts_at,
                model_id=row.model_id,
                model_name=row.model_name,
                training={},
                retrieval_hits=0,
            )
        if row.kind == "train":
            usage.training[row.unit] = (int(row.quantity), int(row.events))
        else:
            usage.retrieval_hits += int(row.quantity)
    return list(out.values())


def disputes_page(
    session: Session,
    *,
    addresses: Collection[str] | None,
    status: str | None,
    after: tuple[datetime, uuid.UUID] | None,
    limit: int,
) -> list[Dispute]:
    """Disputes oldest first; with ``addresses``, those about a dataset they see on
    either side (the disputed dataset or the one it conflicts with)."""
    if addresses is not None and not addresses:
        return []
    query = select(Dispute).order_by(col(Dispute.opened_at), col(Dispute.id))
    if addresses is not None:
        visible = select(col(DatasetCoOwner.dataset_id)).where(
            col(DatasetCoOwner.address).in_(sorted(addresses))
        )
        query = query.where(
            or_(
                col(Dispute.dataset_id).in_(visible),
                col(Dispute.conflicting_dataset_id).in_(visible),
            )
        )
    if status is not None:
        query = query.where(col(Dispute.status) == status)
    if after is not None:
        query = query.where(tuple_(col(Dispute.opened_at), col(Dispute.id)) > tuple_(*after))
    return list(session.execute(query.limit(limit)).scalars())


def visible_dispute(
    session: Session, dispute_id: uuid.UUID, addresses: Collection[str] | None
) -> Dispute:
    """The dispute if ``addresses`` (None: finance) see either of its datasets; NotFound
    (``dispute_not_found``) otherwise."""
    dispute = session.get(Dispute, dispute_id)
    if dispute is not None and addresses is not None:
        sides = (dispute.dataset_id, dispute.conflicting_dataset_id)
        if not any(co_owner_in_any_version(session, side, addresses) for side in sides):
            dispute = None
    if dispute is None:
        raise NotFound(
            f"dispute {dispute_id} does not exist", field="dispute_id", code="dispute_not_found"
        )
    return dispute
