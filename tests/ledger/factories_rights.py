"""Factories for owners, accounts, datasets (optionally confirmed by real signatures) and
models with agreements. Every call makes fresh keys, names and content, so tests never
share state. Factories only flush; the test decides whether to commit.

Usage tests typically want a dataset that counted from long ago::

    owner = make_owner(session)
    dataset = make_dataset(session, owners=[owner], confirm=True)   # counts from 2020-01-01
    model, agreement = make_model_with_agreement(session)
"""

from __future__ import annotations

import hashlib
import os
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from eth_account import Account as EthAccount
from eth_account.signers.local import LocalAccount
from sqlalchemy import select
from sqlmodel import Session, col

from ledger.datasets.fingerprint import ManifestEntry
from ledger.datasets.models import Dataset, DatasetConfirmation
from ledger.datasets.service import CoOwnerShare, register_dataset
from ledger.models.models import Agreement, Model
from ledger.models.service import create_agreement, create_model
from ledger.owners.models import Account, Owner
from ledger.owners.service import create_account, create_owner
from ledger.rights.eip712 import Eip712Domain, confirmation_signable, revocation_signable
from ledger.rights.service import (
    confirmation_message,
    revocation_message,
    rights_domain,
    signer_next_nonce,
    submit_confirmation,
)
from ledger.rights.signatures import NoChain

LONG_AGO = datetime(2020, 1, 1, tzinfo=UTC)


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


@dataclass(frozen=True)
class KeyedOwner:
    """An owner record and the key that signs for its address."""

    owner: Owner
    key: LocalAccount

    @property
    def address(self) -> str:
        return self.owner.address

    @property
    def id(self) -> uuid.UUID:
        return self.owner.id


def make_account(session: Session, role: str = "owner", name: str | None = None) -> Account:
    return create_account(session, role=role, display_name=name or unique(role))


def make_owner(
    session: Session, *, key: LocalAccount | None = None, account: Account | None = None
) -> KeyedOwner:
    key = key or EthAccount.create()
    owner = create_owner(
        session,
        address=key.address,
        display_name=unique("owner"),
        account_id=account.id if account else None,
    )
    return KeyedOwner(owner, key)


def random_files(count: int = 2) -> list[ManifestEntry]:
    """Manifest entries with random hashes: a content root no other test has."""
    return [
        ManifestEntry(f"part-{i}.jsonl", 1000 + i, hashlib.sha256(os.urandom(16)).hexdigest())
        for i in range(count)
    ]


def even_shares(count: int) -> list[int]:
    """Shares in bps summing to 10,000, the remainder on the first co-owner."""
    base = 10_000 // count
    return [10_000 - base * (count - 1)] + [base] * (count - 1)


def confirmation_signature(
    session: Session,
    dataset_id: uuid.UUID,
    key: LocalAccount,
    *,
    nonce: int | None = None,
    domain: Eip712Domain | None = None,
    terms_version: int | None = None,
) -> tuple[bytes, int]:
    """``key``'s RightsConfirmation signature of the dataset's terms, and the nonce used
    (default: the signer's next nonce)."""
    nonce = signer_next_nonce(session, key.address) if nonce is None else nonce
    message = confirmation_message(session, dataset_id, nonce, terms_version=terms_version)
    signable = confirmation_signable(domain or rights_domain(), message)
    return bytes(key.sign_message(signable).signature), nonce


def revocation_signature(
    session: Session,
    dataset_id: uuid.UUID,
    key: LocalAccount,
    *,
    nonce: int | None = None,
    domain: Eip712Domain | None = None,
) -> tuple[bytes, int]:
    """``key``'s RightsRevocation signature of the dataset, and the nonce used."""
    nonce = signer_next_nonce(session, key.address) if nonce is None else nonce
    signable = revocation_signable(domain or rights_domain(), revocation_message(dataset_id, nonce))
    return bytes(key.sign_message(signable).signature), nonce


def confirm_all(
    session: Session,
    dataset: Dataset,
    owners: Sequence[KeyedOwner],
    *,
    at: datetime | None = None,
) -> Dataset:
    """Every owner in ``owners`` confirms the dataset's current terms (EOA, no chain)."""
    for owner in owners:
        signature, nonce = confirmation_signature(session, dataset.id, owner.key)
        submit_confirmation(
            session, dataset.id, owner.address, signature, nonce, chain=NoChain(), at=at
        )
    return dataset


def make_dataset(
    session: Session,
    *,
    owners: Sequence[KeyedOwner] | None = None,
    shares: Sequence[int] | None = None,
    allowed_uses: Sequence[str] = ("train", "rag"),
    valid_from: datetime = LONG_AGO,
    valid_until: datetime | None = None,
    files: Sequence[ManifestEntry] | None = None,
    licence: str = "CC-BY-4.0",
    confirm: bool = False,
    confirmed_at: datetime | None = None,
) -> Dataset:
    """A registered dataset; with ``confirm=True`` every co-owner signs it for real.

    Defaults: one fresh co-owner, random content, valid from 2020-01-01, and (when
    confirmed) counting from ``confirmed_at`` (default ``valid_from``), so usage at any
    later time is accepted.
    """
    owners = list(owners) if owners is not None else [make_owner(session)]
    shares = list(shares) if shares is not None else even_shares(len(owners))
    dataset = register_dataset(
        session,
        registrant_owner_id=owners[0].id,
        name=unique("dataset"),
        licence=licence,
        allowed_uses=allowed_uses,
        valid_from=valid_from,
        valid_until=valid_until,
        files=files if files is not None else random_files(),
        co_owners=[CoOwnerShare(o.address, s) for o, s in zip(owners, shares, strict=True)],
        at=confirmed_at or valid_from,
    )
    if confirm:
        confirm_all(session, dataset, owners, at=confirmed_at or valid_from)
    return dataset


def make_model_with_agreement(
    session: Session,
    *,
    account: Account | None = None,
    royalty_rate_bps: int = 1_000,
    training_share_bps: int = 5_000,
    min_payout_minor: int = 0,
    currency: str = "EUR",
    effective_from: datetime = LONG_AGO,
    training_unit: str = "tokens",
    retrieval_policy: str = "uniform/v1",
    kind: str = "model",
) -> tuple[Model, Agreement]:
    """A model of a (fresh) model-team account with agreement version 1."""
    account = account or make_account(session, "model_team")
    model = create_model(session, account_id=account.id, name=unique("model"), kind=kind)
    agreement = create_agreement(
        session,
        model.id,
        royalty_rate_bps=royalty_rate_bps,
        training_share_bps=training_share_bps,
        min_payout_minor=min_payout_minor,
        currency=currency,
        effective_from=effective_from,
        training_unit=training_unit,
        retrieval_policy=retrieval_policy,
    )
    return model, agreement


def confirmation_intervals(session: Session, dataset_id: uuid.UUID) -> list[DatasetConfirmation]:
    """The dataset's confirmation intervals, oldest first."""
    rows = session.execute(
        select(DatasetConfirmation)
        .where(col(DatasetConfirmation.dataset_id) == dataset_id)
        .order_by(col(DatasetConfirmation.id))
    ).scalars()
    return list(rows)
