"""Shared helpers of the benchmark scripts: the machine line and docs/BENCHMARKS.md sections."""

from __future__ import annotations

import os
import platform
import re
import subprocess
from datetime import UTC, datetime
from pathlib import Path

DOC = Path(__file__).resolve().parent.parent / "docs" / "BENCHMARKS.md"


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


def write_section(title: str, body: str) -> None:
    """Replace (or append) the ``## title`` section of docs/BENCHMARKS.md."""
    text = DOC.read_text() if DOC.exists() else "# Benchmarks\n"
    block = f"## {title}\n\n{body.strip()}\n"
    pattern = re.compile(rf"^## {re.escape(title)}\n.*?(?=^## |\Z)", re.S | re.M)
    if pattern.search(text):
        text = pattern.sub(lambda _: block + "\n", text)
    else:
        text = text.rstrip() + "\n\n" + block
    DOC.write_text(text.rstrip() + "\n")


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
