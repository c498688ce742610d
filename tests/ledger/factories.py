"""Small factories that insert ledger rows directly (no signatures, no services).

Each call creates fresh rows with unique ids, so tests never see each other's data.
Rows are flushed, not committed: the caller commits when other connections must
see them (deferred constraints, such as co-owner shares summing to 10,000, are
checked at that commit).
"""

from __future__ import annotations

import secrets
import threading
import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import TypeVar, cast

from eth_utils import to_checksum_address
from sqlmodel import Session, SQLModel

import ledger.tables  # noqa: F401  (every table in the metadata, for foreign keys)
from ledger.datasets.models import Dataset, DatasetConfirmation, DatasetCoOwner
from ledger.models.models import Agreement, Model
from ledger.owners.models import Account, Owner
from ledger.periods import service as periods
from ledger.periods.models import Period

# Defaults: everything in force from the start of 2025; tests use dates in 2026.
SINCE = datetime(2025, 1, 1, tzinfo=UTC)
T = TypeVar("T")
TRAIN, RAG, BOTH = 1, 2, 3


Row = TypeVar("Row", bound=SQLModel)


def _saved(session: Session, row: Row) -> Row:
    session.add(row)
    session.flush()
    return row


def make_account(session: Session, role: str = "model_team") -> Account:
    return _saved(session, Account(role=role, display_name=f"{role} {secrets.token_hex(4)}"))


def make_owner(session: Session) -> Owner:
    return _saved(
        session,
        Owner(
            address=to_checksum_address("0x" + secrets.token_hex(20)),
            display_name=f"owner {secrets.token_hex(4)}",
        ),
    )


def make_agreement(
    session: Session,
    model_id: uuid.UUID,
    *,
    version: int = 1,
    currency: str = "EUR",
    currency_exponent: int = 2,
    training_unit: str = "tokens",
    effective_from: datetime = SINCE,
    royalty_rate_bps: int = 1_000,
    training_share_bps: int = 5_000,
    min_payout_minor: int = 0,
) -> Agreement:
    return _saved(
        session,
        Agreement(
            model_id=model_id,
            version=version,
            royalty_rate_bps=royalty_rate_bps,
            training_share_bps=training_share_bps,
            min_payout_minor=min_payout_minor,
            currency=currency,
            currency_exponent=currency_exponent,
            training_unit=training_unit,
            effective_from=effective_from,
        ),
    )


def make_model(
    session: Session,
    *,
    agreement: bool = True,
    currency: str = "EUR",
    training_unit: str = "tokens",
    effective_from: datetime = SINCE,
) -> Model:
    """A model of a fresh model-team account, with agreement version 1 unless
    ``agreement=False``."""
    model = _saved(
        session, Model(account_id=make_account(session).id, name=f"model {secrets.token_hex(4)}")
    )
    if agreement:
        make_agreement(
            session,
            model.id,
            currency=currency,
            training_unit=training_unit,
            effective_from=effective_from,
        )
    return model


def make_dataset(
    session: Session,
    *,
    allowed_uses: int = BOTH,
    co_owners: int = 1,
    valid_from: datetime = SINCE,
    valid_until: datetime | None = None,
    confirmed_from: datetime | None = SINCE,
    confirmed_until: datetime | None = None,
    ended_reason: str | None = None,
    status: str = "confirmed",
) -> Dataset:
    """A dataset with ``co_owners`` owners sharing 10,000 bps and, unless
    ``confirmed_from`` is None, one confirmation interval allowing ``allowed_uses``."""
    owners = [make_owner(session) for _ in range(co_owners)]
    dataset = _saved(
        session,
        Dataset(
            name=f"dataset {secrets.token_hex(4)}",
            registrant_owner_id=owners[0].id,
            licence="CC-BY-4.0",
            terms_hash=secrets.token_hex(32),
            allowed_uses=allowed_uses,
            valid_from=valid_from,
            valid_until=valid_until,
            content_root=secrets.token_hex(32),
            file_count=1,
            total_bytes=1,
            status=status,
            confirmed_at=confirmed_from,
        ),
    )
    base, remainder = divmod(10_000, co_owners)
    for index, owner in enumerate(owners):
        session.add(
            DatasetCoOwner(
                dataset_id=dataset.id,
                terms_version=1,
                address=owner.address,
                owner_id=owner.id,
                share_bps=base + (remainder if index == 0 else 0),
            )
        )
    session.flush()
    if confirmed_from is not None:
        add_confirmation(
            session,
            dataset.id,
            allowed_uses=allowed_uses,
            confirmed_from=confirmed_from,
            confirmed_until=confirmed_until,
            ended_reason=ended_reason,
        )
    return dataset


def add_confirmation(
    session: Session,
    dataset_id: uuid.UUID,
    *,
    allowed_uses: int = BOTH,
    confirmed_from: datetime = SINCE,
    confirmed_until: datetime | None = None,
    ended_reason: str | None = None,
    terms_version: int = 1,
) -> DatasetConfirmation:
    return _saved(
        session,
        DatasetConfirmation(
            dataset_id=dataset_id,
            terms_version=terms_version,
            allowed_uses=allowed_uses,
            confirmed_from=confirmed_from,
            confirmed_until=confirmed_until,
            ended_reason=ended_reason,
        ),
    )


def make_period(session: Session, model_id: uuid.UUID, at: datetime, state: str = "open") -> Period:
    """The period of ``model_id`` containing ``at``, forced into ``state``."""
    period = periods.period_for(session, model_id, at)
    if period.state != state:
        period.state = state
        _saved(session, period)
    return period


def run_concurrently(workers: Sequence[Callable[[], T]]) -> list[T]:
    """Run each worker in its own thread, all released at once by a barrier; return
    their results in order, or raise the first error. Workers open their own sessions:
    a race needs separate, committing connections."""
    barrier = threading.Barrier(len(workers))
    results: list[T | None] = [None] * len(workers)
    errors: list[BaseException] = []

    def run(index: int) -> None:
        try:
            barrier.wait()
            results[index] = workers[index]()
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(workers))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
    return cast(list[T], results)  # every worker ran and returned
