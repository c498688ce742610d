"""Start, stop and report the embedded services (``usefirst up/down/status``).

``up`` is idempotent: running services are reused, stale pid records are
cleaned, and external services named by ``DATABASE_URL``, ``ETH_RPC_URL`` or
``CELERY_BROKER_URL`` are checked for reachability instead of being started.
"""

from __future__ import annotations

import shutil
from dataclasses import asdict, dataclass, field
from typing import Any

from api.embedded import anvil, postgres, worker
from api.embedded.process import SetupError
from ledger.settings import Settings

__all__ = ["ServiceReport", "SetupError", "down", "status", "up"]


@dataclass
class ServiceReport:
    name: str
    mode: str  # "embedded" or "external"
    running: bool
    pid: int | None
    url: str
    version: str
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _require_node(settings: Settings) -> None:
    if shutil.which("node") is None:
        raise SetupError(
            "Node.js is not on PATH; install Node.js 20 (with npm), then run `make demo`"
        )
    if not (settings.node_root / "node_modules").is_dir():
        raise SetupError(
            f"{settings.node_root / 'node_modules'} is missing; "
            f"run `npm install` in {settings.node_root}"
        )


def check_database(settings: Settings) -> str:
    """Connect once; return the server version or raise SetupError naming the URL."""
    import psycopg
    from sqlalchemy.engine import make_url

    url = make_url(settings.effective_database_url)
    shown = url.render_as_string(hide_password=True)
    try:
        with psycopg.connect(
            url.set(drivername="postgresql").render_as_string(hide_password=False),
            connect_timeout=5,
        ) as conn:
            row = conn.execute("SHOW server_version").fetchone()
    except psycopg.OperationalError as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        hint = (
            "check the URL, or unset DATABASE_URL to use the embedded PostgreSQL"
            if not settings.uses_embedded_postgres
            else "run `usefirst up`"
        )
        raise SetupError(f"cannot reach the database at {shown}: {reason}; {hint}") from None
    return f"PostgreSQL {row[0] if row else '?'}"


def check_chain(settings: Settings) -> str:
    url = settings.effective_eth_rpc_url
    try:
        chain_id = int(str(anvil.rpc(url, "eth_chainId")), 16)
        client = str(anvil.rpc(url, "web3_clientVersion"))
    except (OSError, RuntimeError, ValueError) as exc:
        hint = (
            "check ETH_RPC_URL, or unset it to use the embedded anvil"
            if not settings.uses_embedded_chain
            else "run `usefirst up`"
        )
        raise SetupError(f"cannot reach the EVM JSON-RPC at {url}: {exc}; {hint}") from None
    return f"{client} (chain id {chain_id})"


def up(settings: Settings, *, worker_enabled: bool = True) -> list[ServiceReport]:
    """Start what is embedded, check what is external, migrate; return a report."""
    from ledger.db import migrate

    reports: list[ServiceReport] = []
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    if settings.uses_embedded_postgres:
        pg = postgres.start(settings)
        reports.append(
            ServiceReport("postgres", "embedded", pg.running, pg.pid, pg.url, pg.version)
        )
    else:
        version = check_database(settings)
        reports.append(
            ServiceReport(
                "postgres", "external", True, None, _hide(settings.effective_database_url), version
            )
        )
    migrate(settings)
    if settings.uses_embedded_chain:
        _require_node(settings)
        node = anvil.start(settings)
        notes = ["stale pid record removed"] if node.stale_record_removed else []
        reports.append(
            ServiceReport(
                "anvil", "embedded", node.running, node.pid, node.url, node.version, notes
            )
        )
    else:
        reports.append(
            ServiceReport(
                "chain",
                "external",
                True,
                None,
                settings.effective_eth_rpc_url,
                check_chain(settings),
            )
        )
    if worker_enabled:
        w = worker.start(settings)
        notes = ["stale pid record removed"] if w.stale_record_removed else []
        reports.append(
            ServiceReport("worker", "embedded", w.running, w.pid, w.broker, w.version, notes)
        )
    return reports


def down(settings: Settings) -> list[str]:
    """Stop every embedded service we started; returns the names stopped."""
    stopped: list[str] = []
    if worker.stop(settings):
        stopped.append("worker")
    if anvil.stop(settings):
        stopped.append("anvil")
    if settings.uses_embedded_postgres and postgres.stop(settings):
        stopped.append("postgres")
    return stopped


def status(settings: Settings) -> list[ServiceReport]:
    reports: list[ServiceReport] = []
    if settings.uses_embedded_postgres:
        pg = postgres.status(settings)
        reports.append(
            ServiceReport("postgres", "embedded", pg.running, pg.pid, pg.url, pg.version)
        )
    else:
        try:
            version, running = check_database(settings), True
        except SetupError as exc:
            version, running = str(exc), False
        reports.append(
            ServiceReport(
                "postgres",
                "external",
                running,
                None,
                _hide(settings.effective_database_url),
                version,
            )
        )
    if settings.uses_embedded_chain:
        node = anvil.status(settings)
        notes = ["stale pid record removed"] if node.stale_record_removed else []
        if node.block_number is not None:
            notes.append(f"block {node.block_number}")
        reports.append(
            ServiceReport(
                "anvil", "embedded", node.running, node.pid, node.url, node.version, notes
            )
        )
    else:
        try:
            version, running = check_chain(settings), True
        except SetupError as exc:
            version, running = str(exc), False
        reports.append(
            ServiceReport(
                "chain", "external", running, None, settings.effective_eth_rpc_url, version
            )
        )
    w = worker.status(settings)
    notes = ["stale pid record removed"] if w.stale_record_removed else []
    reports.append(
        ServiceReport("worker", "embedded", w.running, w.pid, w.broker, w.version, notes)
    )
    return reports


def _hide(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)
