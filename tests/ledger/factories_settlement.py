"""Closed periods with real statements, for the anchoring and reconciliation tests.

:func:`closed_period` builds a model whose agreement sends the whole royalty pool to training
use, one single-owner dataset per payee with ``weight`` training tokens, one revenue event,
and closes the period through the real close service (statement, lines, journal accrual).
Everything is committed: the anchoring services use their own transactions.
"""

from __future__ import annotations

import hashlib
import secrets
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import Engine, text
from sqlmodel import Session, select

from contracts.client import UsefirstChain
from ledger.owners.models import Owner
from ledger.periods.close import close_period
from ledger.revenue.models import RevenueEvent
from ledger.settings import Settings
from ledger.usage.models import UsageRollup
from tests.ledger import factories

PERIOD_AT = datetime(2026, 3, 15, tzinfo=UTC)


@dataclass(frozen=True)
class ClosedPeriod:
    model_id: uuid.UUID
    period_id: uuid.UUID
    currency: str
    # (address, payable_minor) of every line, payable or not, in statement order.
    lines: tuple[tuple[str, int], ...]

    @property
    def payable(self) -> dict[str, int]:
        return {address: amount for address, amount in self.lines if amount > 0}


def owner_for(session: Session, address: str) -> Owner:
    """The owner with ``address``, created on first use (anvil accounts recur across tests)."""
    found = session.exec(select(Owner).where(Owner.address == address)).first()
    if found is not None:
        return found
    owner = Owner(address=address, display_name=f"owner {address[:8]}")
    session.add(owner)
    session.flush()
    return owner


def closed_period(
    engine: Engine,
    weights: dict[str, int],
    *,
    revenue_minor: int = 1_234_567,
    currency: str = "EUR",
    min_payout_minor: int = 0,
    at: datetime = PERIOD_AT,
) -> ClosedPeriod:
    """A closed period whose pool (10 % of ``revenue_minor``) is split by ``weights``."""
    from ledger.datasets.models import Dataset, DatasetCoOwner

    with Session(engine, expire_on_commit=False) as session:
        model = factories.make_model(session, agreement=False)
        factories.make_agreement(
            session,
            model.id,
            currency=currency,
            training_share_bps=10_000,
            min_payout_minor=min_payout_minor,
        )
        period = factories.make_period(session, model.id, at)
        for address, weight in weights.items():
            owner = owner_for(session, address)
            dataset = Dataset(
                name=f"dataset {secrets.token_hex(4)}",
                registrant_owner_id=owner.id,
                licence="CC-BY-4.0",
                terms_hash=secrets.token_hex(32),
                allowed_uses=factories.BOTH,
                valid_from=factories.SINCE,
                content_root=secrets.token_hex(32),
                file_count=1,
                total_bytes=1,
                status="confirmed",
                confirmed_at=factories.SINCE,
            )
            session.add(dataset)
            session.flush()
            session.add(
                DatasetCoOwner(
                    dataset_id=dataset.id,
                    terms_version=1,
                    address=address,
                    owner_id=owner.id,
                    share_bps=10_000,
                )
            )
            factories.add_confirmation(session, dataset.id)
            session.add(
                UsageRollup(
                    model_id=model.id,
                    period_id=period.id,
                    dataset_id=dataset.id,
                    kind="train",
                    unit="tokens",
                    list_length=0,
                    rank=0,
                    quantity=weight,
                    event_count=1,
                )
            )
        if revenue_minor:
            session.add(
                RevenueEvent(
                    model_id=model.id,
                    period_id=period.id,
                    amount_minor=revenue_minor,
                    currency=currency,
                    external_ref=f"rev-{secrets.token_hex(4)}",
                    occurred_at=at,
                    request_hash=hashlib.sha256(secrets.token_bytes(8)).hexdigest(),
                )
            )
        session.commit()
        close_period(session, period.id)
        session.commit()
        rows = session.execute(
            text(
                "SELECT address, payable_minor FROM statement_line WHERE period_id = :p "
                "ORDER BY address"
            ),
            {"p": period.id},
        ).all()
        return ClosedPeriod(
            model_id=model.id,
            period_id=period.id,
            currency=currency,
            lines=tuple((row.address, int(row.payable_minor)) for row in rows),
        )


def deploy_chain(
    chain_settings: Settings, data_dir: Path, *, challenge_window_s: int = 0
) -> UsefirstChain:
    """Fresh contracts recorded in ``data_dir`` (by default with a zero challenge window: claims
    open at publication, nothing can be revoked): the settlements and claims of one test module
    never meet another module's."""
    settings = chain_settings.model_copy(
        update={"data_dir": data_dir, "chain_challenge_window_s": challenge_window_s}
    )
    return UsefirstChain.connect(settings, deploy=True)
