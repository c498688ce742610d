"""Session fixtures: real PostgreSQL, anvil and a Celery worker, started once.

The test session uses its own data directory (``.usefirst-test``) and ports, so
it never touches a demo's services. External services are used when
``DATABASE_URL`` / ``ETH_RPC_URL`` / ``CELERY_BROKER_URL`` are set. Services the
session started are stopped at the end unless ``USEFIRST_KEEP_SERVICES=1``.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
TEST_DATA_DIR = Path(os.environ.get("USEFIRST_TEST_DATA_DIR", REPO_ROOT / ".usefirst-test"))

# Must happen before anything reads settings.
os.environ["USEFIRST_DATA_DIR"] = str(TEST_DATA_DIR)
os.environ.setdefault("USEFIRST_PG_PORT", "54339")
os.environ.setdefault("USEFIRST_ANVIL_PORT", "18555")
os.environ.setdefault("USEFIRST_PG_DATABASE", "usefirst_test")
os.environ.setdefault("USEFIRST_PG_UNSAFE_FAST", "1")
os.environ.setdefault("USEFIRST_ANVIL_STATE_INTERVAL_S", "30")
# Periodic chain tasks would race the tests that index and reconcile explicitly.
os.environ.setdefault("USEFIRST_WORKER_BEAT", "0")

from eth_account import Account  # noqa: E402
from eth_account.signers.local import LocalAccount  # noqa: E402
from sqlalchemy import Engine  # noqa: E402
from sqlmodel import Session  # noqa: E402
from web3 import Web3  # noqa: E402

from api.embedded import anvil, postgres, worker  # noqa: E402
from ledger.settings import Settings, get_settings, reset_settings_cache  # noqa: E402

ANVIL_MNEMONIC = "test test test test test test test test test test test junk"
KEEP_SERVICES = os.environ.get("USEFIRST_KEEP_SERVICES") == "1"


@pytest.fixture(scope="session")
def settings() -> Settings:
    reset_settings_cache()
    return get_settings()


@pytest.fixture(scope="session")
def database(settings: Settings) -> Iterator[Settings]:
    """A freshly created, migrated database; yields the settings that point at it."""
    from ledger.db import dispose_engines, migrate

    started = False
    if settings.uses_embedded_postgres:
        started = not postgres.status(settings).running
        postgres.start(settings)
        # A worker left running from an earlier session holds connections to the old DB.
        worker.stop(settings)
        postgres.drop_database(settings, settings.pg_database)
        postgres.ensure_database(settings)
    migrate(settings)
    yield settings
    dispose_engines()
    if started and not KEEP_SERVICES:
        worker.stop(settings)
        postgres.stop(settings)


@pytest.fixture(scope="session")
def db_engine(database: Settings) -> Engine:
    from ledger.db import get_engine

    return get_engine(database)


@pytest.fixture
def db_session(db_engine: Engine) -> Iterator[Session]:
    """A session on the real database; tests commit or roll back themselves."""
    with Session(db_engine, expire_on_commit=False) as session:
        yield session
        session.rollback()


@pytest.fixture(scope="session")
def chain_settings(settings: Settings) -> Iterator[Settings]:
    """A running EVM node (embedded anvil on a fresh chain, or ETH_RPC_URL)."""
    started = False
    if settings.uses_embedded_chain:
        if not anvil.status(settings).running:
            # Each session starts from a fresh chain.
            shutil.rmtree(settings.anvil_state_file.parent, ignore_errors=True)
            shutil.rmtree(settings.deployments_dir, ignore_errors=True)
            anvil.start(settings)
            started = True
    yield settings
    if started and not KEEP_SERVICES:
        anvil.stop(settings)


@pytest.fixture(scope="session")
def w3(chain_settings: Settings) -> Web3:
    web3 = Web3(
        Web3.HTTPProvider(chain_settings.effective_eth_rpc_url, request_kwargs={"timeout": 60})
    )
    assert web3.is_connected(), f"no EVM node at {chain_settings.effective_eth_rpc_url}"
    return web3


@pytest.fixture(scope="session")
def anvil_accounts(chain_settings: Settings) -> list[LocalAccount]:
    Account.enable_unaudited_hdwallet_features()
    return [
        Account.from_mnemonic(ANVIL_MNEMONIC, account_path=f"m/44'/60'/0'/0/{i}") for i in range(10)
    ]


@pytest.fixture(scope="session")
def celery_worker(database: Settings) -> Iterator[Settings]:
    """A real Celery worker process consuming from the configured broker."""
    worker.start(database)
    yield database
    if not KEEP_SERVICES:
        worker.stop(database)


@pytest.fixture(scope="session")
def services(database: Settings, chain_settings: Settings, celery_worker: Settings) -> Settings:
    """Everything running: database, chain and worker."""
    return database
