"""Configuration for every usefirst process, read once from the environment.

Three URLs switch between the embedded default and external services:
``DATABASE_URL`` (PostgreSQL), ``ETH_RPC_URL`` (any EVM JSON-RPC) and
``CELERY_BROKER_URL`` (Postgres, Redis or RabbitMQ). When one is unset, the
embedded service started by ``usefirst up`` is used. Everything else carries the
``USEFIRST_`` prefix.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import AliasChoices, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

# The repository (or installed tree) root: where package.json, node_modules and
# scripts/ live. The packages are installed editable, so this is the checkout.
REPO_ROOT = Path(__file__).resolve().parent.parent


class Settings(BaseSettings):
    """All settings; construct through :func:`get_settings` so they are read once."""

    model_config = SettingsConfigDict(env_prefix="USEFIRST_", extra="ignore")

    database_url: str | None = Field(
        default=None, validation_alias=AliasChoices("DATABASE_URL", "USEFIRST_DATABASE_URL")
    )
    eth_rpc_url: str | None = Field(
        default=None, validation_alias=AliasChoices("ETH_RPC_URL", "USEFIRST_ETH_RPC_URL")
    )
    celery_broker_url: str | None = Field(
        default=None,
        validation_alias=AliasChoices("CELERY_BROKER_URL", "USEFIRST_CELERY_BROKER_URL"),
    )
    celery_result_backend: str | None = Field(
        default=None,
        validation_alias=AliasChoices("CELERY_RESULT_BACKEND", "USEFIRST_CELERY_RESULT_BACKEND"),
    )

    data_dir: Path = Field(default_factory=lambda: Path.cwd() / ".usefirst")
    node_root: Path = REPO_ROOT

    # Embedded services: loopback only.
    pg_port: int = 54329
    pg_database: str = "usefirst"
    anvil_port: int = 18545
    anvil_chain_id: int = 31337
    # Anvil writes its state file this often (seconds) and on shutdown.
    anvil_state_interval_s: int = 2
    # Tests only: fsync off for the throwaway embedded cluster.
    pg_unsafe_fast: bool = False
    worker_concurrency: int = 2
    # Periodic tasks (Celery beat inside the embedded worker).
    worker_beat: bool = True
    index_interval_s: float = 15.0
    reconcile_interval_s: float = 300.0
    service_start_timeout_s: float = 60.0

    # Chain behaviour.
    chain_confirmations: int = 1

    # EIP-712 domain for rights confirmations until the registry is deployed.
    eip712_name: str = "usefirst"
    eip712_version: str = "1"

    # --- rights (datasets) ---
    # verifyingContract of the EIP-712 domain off-chain rights signatures are checked in. Until
    # the DatasetRegistry is deployed this is the zero-address placeholder; once it is, set it
    # to the registry's address (or pass the chain client's registry_domain() to the rights
    # service) so one signature is valid both in the ledger and on chain.
    rights_verifying_contract: str = "0x0000000000000000000000000000000000000000"

    # --- chain (contracts) ---
    # Hex private keys of the deployer (admin of the contracts), the settler (publishes and
    # funds settlements, submits dataset registrations) and the guardian (revokes settlements
    # inside their challenge window, pauses). Unset: anvil's well-known accounts 0, 1 and 2,
    # and only when the node's chain id is anvil_chain_id; any other chain requires all three.
    chain_deployer_private_key: SecretStr | None = None
    chain_settler_private_key: SecretStr | None = None
    chain_guardian_private_key: SecretStr | None = None
    # The ERC20 settlements are paid in. Unset: the local chain deploys RoyaltyToken; any
    # other chain requires it.
    chain_token_address: str | None = None
    # Seconds between publishing a settlement and the opening of claims (at most 30 days).
    # Unset: 0 on the local chain, 86,400 elsewhere.
    chain_challenge_window_s: int | None = None
    # Give up waiting for a transaction's confirmations after this long.
    chain_tx_timeout_s: float = 120.0
    chain_poll_interval_s: float = 0.2
    # Transient RPC failures (connection refused, timeouts, HTTP 429/5xx) are retried this
    # many times with exponential backoff starting at chain_rpc_backoff_s.
    chain_rpc_retries: int = 5
    chain_rpc_backoff_s: float = 0.25
    chain_rpc_timeout_s: float = 30.0
    # Gas limit = estimate * (1 + margin); estimates can fall short when state moves.
    chain_gas_margin_bps: int = 2_000
    # Token base units per currency minor unit for settlements. Unset: 10 ** (token decimals −
    # currency exponent), and a token with fewer decimals than the currency is refused. Set it
    # only for a deliberately different scale; owners then verify with the same value.
    chain_units_per_minor: int | None = Field(default=None, ge=1)
    # The claim indexer and reconciliation read event logs in ranges of at most this many
    # blocks (many RPC providers cap eth_getLogs ranges).
    chain_log_block_range: int = Field(default=2_000, ge=1)
    # Tests only: the name of a point where the process exits abruptly to simulate a crash
    # (``after_publish_sent``: right after the publish transaction's hash is committed).
    fault: str | None = None

    log_json: bool = False

    # --- derived values -------------------------------------------------------------

    @property
    def embedded_database_url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.pg_port}/{self.pg_database}"

    @property
    def effective_database_url(self) -> str:
        """SQLAlchemy URL of the database the app uses (psycopg 3 driver)."""
        url = self.database_url or self.embedded_database_url
        return normalize_postgres_url(url)

    @property
    def effective_eth_rpc_url(self) -> str:
        return self.eth_rpc_url or f"http://127.0.0.1:{self.anvil_port}"

    @property
    def effective_broker_url(self) -> str:
        """Celery broker; defaults to kombu's SQLAlchemy transport on our Postgres."""
        if self.celery_broker_url:
            return self.celery_broker_url
        return "sqla+" + self.effective_database_url

    @property
    def effective_result_backend(self) -> str:
        if self.celery_result_backend:
            return self.celery_result_backend
        broker = self.effective_broker_url
        if broker.startswith(("redis://", "rediss://")):
            return broker
        return "db+" + self.effective_database_url

    @property
    def uses_embedded_postgres(self) -> bool:
        return self.database_url is None

    @property
    def uses_embedded_chain(self) -> bool:
        return self.eth_rpc_url is None

    @property
    def run_dir(self) -> Path:
        return self.data_dir / "run"

    @property
    def log_dir(self) -> Path:
        return self.data_dir / "logs"

    @property
    def pg_data_dir(self) -> Path:
        return self.data_dir / "pg"

    @property
    def anvil_state_file(self) -> Path:
        return self.data_dir / "anvil" / "state.json"

    @property
    def deployments_dir(self) -> Path:
        return self.data_dir / "deployments"


def normalize_postgres_url(url: str) -> str:
    """Force the psycopg 3 driver for any ``postgres://``/``postgresql://`` URL."""
    for prefix in ("postgres://", "postgresql://", "postgresql+psycopg2://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read from the environment once."""
    return Settings()


def reset_settings_cache() -> None:
    """Forget the cached settings (tests and the CLI change the environment first)."""
    get_settings.cache_clear()
