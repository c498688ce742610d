"""``usefirst backup`` / ``usefirst restore``: the database plus the deployment records.

A backup is one ``.tar.gz`` with ``manifest.json`` (format, schema revision, chain
ids, time), ``database.dump`` (``pg_dump --format=custom`` of the app database,
taken with the pg_dump shipped in the pgserver wheel) and ``deployments/*.json``.
Restore loads it into an empty database (``--force`` replaces a non-empty one)
and puts the deployment records back, so the restored ledger reconciles against
the same chain.
"""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import tarfile
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy.engine import make_url

from api.embedded import postgres
from api.embedded.process import SetupError
from ledger.settings import Settings

FORMAT = "usefirst-backup/v1"


def _libpq_url(settings: Settings) -> str:
    url = make_url(settings.effective_database_url).set(drivername="postgresql")
    return url.render_as_string(hide_password=False)


def _run(args: list[str], what: str) -> None:
    result = subprocess.run(args, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        tail = (result.stderr or result.stdout).strip().splitlines()[-3:]
        raise SetupError(f"{what} failed: {' | '.join(tail)}")


def create_backup(settings: Settings, target: Path) -> dict[str, Any]:
    """Write a backup archive to ``target``; returns its manifest."""
    from ledger.db import current_revision

    target = target.resolve()
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="usefirst-backup-") as tmp:
        dump = Path(tmp) / "database.dump"
        _run(
            [
                str(postgres.bin_dir() / "pg_dump"),
                "--format=custom",
                "--no-owner",
                "--file",
                str(dump),
                _libpq_url(settings),
            ],
            "pg_dump",
        )
        deployments = sorted(settings.deployments_dir.glob("*.json"))
        manifest = {
            "format": FORMAT,
            "created_at": datetime.now(UTC).isoformat(),
            "schema_revision": current_revision(settings),
            "database_bytes": dump.stat().st_size,
            "deployments": [p.name for p in deployments],
        }
        partial = target.with_suffix(target.suffix + ".partial")
        with tarfile.open(partial, "w:gz") as archive:
            data = json.dumps(manifest, indent=2).encode()
            info = tarfile.TarInfo("manifest.json")
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
            archive.add(dump, arcname="database.dump")
            for record in deployments:
                archive.add(record, arcname=f"deployments/{record.name}")
        partial.replace(target)
    return manifest


def _database_has_tables(settings: Settings) -> bool:
    import psycopg

    with psycopg.connect(_libpq_url(settings), connect_timeout=10) as conn:
        row = conn.execute(
            "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'"
        ).fetchone()
    return bool(row and row[0])


def restore_backup(settings: Settings, source: Path, *, force: bool = False) -> dict[str, Any]:
    """Load a backup into the configured database and restore deployment records."""
    if not source.exists():
        raise SetupError(f"{source} does not exist; pass the path of a `usefirst backup` archive")
    with tempfile.TemporaryDirectory(prefix="usefirst-restore-") as tmp:
        try:
            with tarfile.open(source, "r:gz") as archive:
                archive.extractall(tmp, filter="data")
        except (tarfile.TarError, OSError) as exc:
            raise SetupError(f"{source} is not a usefirst backup archive: {exc}") from None
        manifest_path = Path(tmp) / "manifest.json"
        if not manifest_path.exists():
            raise SetupError(f"{source} has no manifest.json; it is not a usefirst backup")
        manifest = json.loads(manifest_path.read_text())
        if manifest.get("format") != FORMAT:
            raise SetupError(f"{source} has format {manifest.get('format')!r}, expected {FORMAT}")
        if settings.uses_embedded_postgres:
            postgres.start(settings)
        if _database_has_tables(settings):
            if not force:
                raise SetupError(
                    "the target database is not empty; restore into a fresh data directory, "
                    "or pass --force to replace its contents"
                )
            if not settings.uses_embedded_postgres:
                raise SetupError("--force only replaces the embedded database; empty yours first")
            postgres.drop_database(settings, settings.pg_database)
            postgres.ensure_database(settings)
        _run(
            [
                str(postgres.bin_dir() / "pg_restore"),
                "--no-owner",
                "--exit-on-error",
                "--dbname",
                _libpq_url(settings),
                str(Path(tmp) / "database.dump"),
            ],
            "pg_restore",
        )
        settings.deployments_dir.mkdir(parents=True, exist_ok=True)
        for name in manifest.get("deployments", []):
            shutil.copyfile(Path(tmp) / "deployments" / name, settings.deployments_dir / name)
    return manifest
