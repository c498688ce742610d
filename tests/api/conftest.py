"""HTTP fixtures: the real app on the real database, and principals with API keys.

``principal("owner")`` creates an account of that role and an API key, and returns
an :class:`ApiPrincipal` whose ``headers`` authenticate as it. Owners get one owner
address (with its private key) so they can sign rights confirmations.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import pytest
from eth_account import Account as EthAccount
from eth_account.signers.local import LocalAccount
from fastapi.testclient import TestClient
from sqlalchemy import Engine
from sqlmodel import Session

from ledger.settings import Settings


@dataclass
class ApiPrincipal:
    role: str
    account_id: uuid.UUID
    key: str
    wallets: list[LocalAccount] = field(default_factory=list)

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}

    @property
    def address(self) -> str:
        return self.wallets[0].address


@pytest.fixture(scope="session")
def api_app(database: Settings):  # type: ignore[no-untyped-def]
    from api.app import create_app

    return create_app()


@pytest.fixture(scope="session")
def client(api_app) -> Iterator[TestClient]:  # type: ignore[no-untyped-def]
    with TestClient(api_app, raise_server_exceptions=False) as test_client:
        yield test_client


@pytest.fixture
def principal(db_engine: Engine) -> Callable[..., ApiPrincipal]:
    """Factory: ``principal(role, wallets=1)`` → a committed account with a fresh key."""
    from ledger.access.service import create_api_key
    from ledger.owners.service import create_account, create_owner

    def make(role: str, wallets: int | None = None) -> ApiPrincipal:
        count = wallets if wallets is not None else (1 if role == "owner" else 0)
        with Session(db_engine, expire_on_commit=False) as session:
            account = create_account(
                session, role=role, display_name=f"{role} {uuid.uuid4().hex[:6]}"
            )
            keys = [EthAccount.create() for _ in range(count)]
            for wallet in keys:
                create_owner(
                    session,
                    address=wallet.address,
                    display_name=f"wallet {wallet.address[:8]}",
                    account_id=account.id,
                )
            issued = create_api_key(session, account.id, label="test")
            session.commit()
            return ApiPrincipal(role, account.id, issued.plaintext, keys)

    return make
