"""Shared helpers of the benchmark scripts: the machine line, docs/BENCHMARKS.md sections,
the bench database and its seed data, a real uvicorn server, CPU accounting."""

from __future__ import annotations

import os
import platform
import re
import subprocess
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import psutil

from api.embedded.apiserver import ApiServer
from api.embedded.apiserver import free_port as free_port  # for the scripts

REPO = Path(__file__).resolve().parent.parent
DOC = REPO / "docs" / "BENCHMARKS.md"


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return (
        f"{os.cpu_count()} cores ({cpu}), {mem_gib:.0f} GiB, {platform.machine()}, "
        f"Python {platform.python_version()}, {datetime.now(UTC).date().isoformat()}"
    )


def git_revision() -> str:
    try:
        return subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def write_section(title: str, body: str, doc: Path = DOC) -> None:
    """Replace (or append) the ``## title`` section of ``doc`` (docs/BENCHMARKS.md)."""
    text = doc.read_text() if doc.exists() else "# Benchmarks\n"
    block = f"## {title}\n\n{body.strip()}\n"
    pattern = re.compile(rf"^## {re.escape(title)}\n.*?(?=^## |\Z)", re.S | re.M)
    if pattern.search(text):
        text = pattern.sub(lambda _: block + "\n", text)
    else:
        text = text.rstrip() + "\n\n" + block
    doc.write_text(text.rstrip() + "\n")


def setup_database() -> str:
    """A freshly created, migrated benchmark database; returns its psycopg DSN."""
    from api.embedded import postgres
    from ledger.db import migrate
    from ledger.settings import get_settings

    settings = get_settings()
    if settings.uses_embedded_postgres:
        postgres.start(settings)
        postgres.drop_database(settings, settings.pg_database)
        postgres.ensure_database(settings)
    migrate(settings)
    return settings.effective_database_url.replace("postgresql+psycopg://", "postgresql://")


def seed_rag_model(
    dsn: str, dataset_count: int, since: datetime
) -> tuple[str, uuid.UUID, uuid.UUID, list[str]]:
    """A model team with an API key, its model (agreement in force from ``since``, EUR,
    10 % royalty, 30 % training share) and ``dataset_count`` datasets confirmed for RAG
    from ``since``, each with one owner. Returns (API key, account id, model id, dataset
    ids). Rows are inserted directly: registering through the API needs an EIP-712
    signature per dataset."""
    import psycopg
    from sqlmodel import Session

    from ledger.access.service import create_api_key
    from ledger.db import get_engine
    from ledger.owners.service import create_account

    with Session(get_engine()) as session:
        account = create_account(session, role="model_team", display_name="bench team")
        key = create_api_key(session, account.id, label="bench").plaintext
        session.commit()
        account_id = account.id
    model_id = uuid.uuid4()
    datasets = [uuid.uuid4() for _ in range(dataset_count)]
    with psycopg.connect(dsn) as conn, conn.cursor() as cur:
        cur.execute(
            "INSERT INTO model (id, account_id, name, description, kind)"
            " VALUES (%s, %s, 'bench model', '', 'rag_app')",
            (model_id, account_id),
        )
        cur.execute(
            "INSERT INTO agreement (id, model_id, version, royalty_rate_bps, training_share_bps,"
            " min_payout_minor, currency, currency_exponent, training_unit, retrieval_policy,"
            " effective_from) VALUES (%s, %s, 1, 1000, 3000, 100, 'EUR', 2, 'tokens',"
            " 'rank-discount/v1', %s)",
            (uuid.uuid4(), model_id, since),
        )
        for i, dataset_id in enumerate(datasets):
            owner_id = uuid.uuid4()
            address = "0x" + f"{i + 1:040x}"
            cur.execute(
                "INSERT INTO owner (id, address, display_name) VALUES (%s, %s, 'bench owner')",
                (owner_id, address),
            )
            cur.execute(
                "INSERT INTO dataset (id, name, description, registrant_owner_id, licence,"
                " terms_hash, allowed_uses, valid_from, content_root, file_count, total_bytes,"
                " terms_version, status) VALUES (%s, %s, '', %s, 'CC-BY-4.0', %s, 3, %s, %s,"
                " 1, 1, 1, 'confirmed')",
                (dataset_id, f"dataset {i}", owner_id, "00" * 32, since, f"{i:064x}"),
            )
            cur.execute(
                "INSERT INTO dataset_co_owner (dataset_id, terms_version, address, owner_id,"
                " share_bps) VALUES (%s, 1, %s, %s, 10000)",
                (dataset_id, address, owner_id),
            )
            cur.execute(
                "INSERT INTO dataset_confirmation (dataset_id, terms_version, allowed_uses,"
                " confirmed_from) VALUES (%s, 1, 3, %s)",
                (dataset_id, since),
            )
        conn.commit()
    return key, account_id, model_id, [str(d) for d in datasets]


def start_server(port: int, workers: int, log: Path) -> subprocess.Popen[bytes]:
    """``uvicorn api.app:create_app --workers N`` on 127.0.0.1:``port`` through the one
    launcher (``api.embedded.apiserver.ApiServer``; it inherits this process's
    environment, so the bench database); returns its process once /healthz answers."""
    server = ApiServer(port, workers=workers, log=log).start()
    assert server.process is not None
    return server.process


def cpu_seconds(processes: list[psutil.Process]) -> float:
    """User + system CPU seconds of ``processes`` so far (vanished ones count 0)."""
    total = 0.0
    for process in processes:
        try:
            times = process.cpu_times()
            total += times.user + times.system
        except psutil.NoSuchProcess:
            pass
    return total


class CpuMeter:
    """CPU seconds that a changing set of processes spends between :meth:`start` and
    :meth:`stop`. The set (``processes()``) is sampled at both ends, so processes that
    appear during the run (database backends of new connections) count whole; taking the
    set once before the run would miss them."""

    def __init__(self, processes: Callable[[], list[psutil.Process]]) -> None:
        self._processes = processes
        self._before: dict[int, float] = {}

    def start(self) -> None:
        self._before = {p.pid: cpu_seconds([p]) for p in self._processes()}

    def stop(self) -> float:
        return sum(cpu_seconds([p]) - self._before.get(p.pid, 0.0) for p in self._processes())


def process_tree(root: psutil.Process) -> list[psutil.Process]:
    return [root, *root.children(recursive=True)]


def postgres_processes(dsn: str) -> list[psutil.Process]:
    """The postmaster of ``dsn``'s cluster and its children (backends, WAL writer, …)."""
    import psycopg

    with psycopg.connect(dsn) as conn:
        row = conn.execute("SELECT pg_backend_pid()").fetchone()
        assert row is not None
        postmaster = psutil.Process(row[0]).parent()
    return process_tree(postmaster)
