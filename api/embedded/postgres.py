"""The embedded PostgreSQL: the server binaries shipped in the ``pgserver`` wheel.

We drive ``initdb``/``pg_ctl`` ourselves (rather than ``pgserver.get_server``) so
the server listens on a fixed loopback TCP port, outlives the command that
started it, and ships ``pg_dump``/``pg_restore`` for backups. PostgreSQL refuses
to run as root; as root we run it as the unprivileged ``pgserver`` user, the same
way the pgserver package does.
"""

from __future__ import annotations

import os
import pwd
import subprocess
from dataclasses import dataclass
from pathlib import Path

import psycopg

from api.embedded.process import SetupError, port_is_free, tail
from ledger.settings import Settings

SYSTEM_USER = "pgserver"


def bin_dir() -> Path:
    import warnings

    with warnings.catch_warnings():
        # pgserver's import asks platformdirs for a runtime dir it does not need here.
        warnings.simplefilter("ignore")
        from pgserver._commands import POSTGRES_BIN_PATH

    return Path(POSTGRES_BIN_PATH)


@dataclass
class PostgresStatus:
    running: bool
    pid: int | None
    port: int
    url: str
    version: str


def _run_as() -> str | None:
    """The system user to run the server as: ``pgserver`` when we are root."""
    if os.geteuid() != 0:
        return None
    from pgserver.utils import (
        ensure_folder_permissions,
        ensure_prefix_permissions,
        ensure_user_exists,
    )

    ensure_user_exists(SYSTEM_USER)
    binaries = bin_dir()
    ensure_prefix_permissions(binaries)
    import stat

    read = stat.S_IRGRP | stat.S_IROTH
    execute = stat.S_IXGRP | stat.S_IXOTH
    ensure_folder_permissions(binaries, read | execute)
    ensure_folder_permissions(binaries.parent / "lib", read)
    return SYSTEM_USER


def _chown(path: Path, user: str | None) -> None:
    if user is None:
        return
    entry = pwd.getpwnam(user)
    os.chown(path, entry.pw_uid, entry.pw_gid)


def _pg_ctl(
    args: list[str], user: str | None, timeout_s: float
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(bin_dir() / "pg_ctl"), *args],
        capture_output=True,
        text=True,
        timeout=timeout_s,
        user=user,
        check=False,
    )


def server_version() -> str:
    out = subprocess.run(
        [str(bin_dir() / "postgres"), "--version"], capture_output=True, text=True, check=False
    )
    return out.stdout.strip()


def status(settings: Settings) -> PostgresStatus:
    pgdata = settings.pg_data_dir
    pid: int | None = None
    running = False
    pid_file = pgdata / "postmaster.pid"
    if pid_file.exists():
        try:
            pid = int(pid_file.read_text().splitlines()[0])
            running = _pid_alive(pid)
        except (ValueError, IndexError, OSError):
            pid = None
    return PostgresStatus(
        running=running,
        pid=pid if running else None,
        port=settings.pg_port,
        url=settings.embedded_database_url,
        version=server_version(),
    )


def _pid_alive(pid: int) -> bool:
    import psutil

    try:
        return bool(psutil.Process(pid).name() == "postgres")
    except psutil.NoSuchProcess:
        return False


def start(settings: Settings) -> PostgresStatus:
    """Start (or reuse) the embedded server and create the app database; idempotent."""
    pgdata = settings.pg_data_dir
    current = status(settings)
    if current.running:
        ensure_database(settings)
        return current
    if not port_is_free(settings.pg_port):
        raise SetupError(
            f"port {settings.pg_port} (embedded PostgreSQL) is taken by another program; "
            "free it or set USEFIRST_PG_PORT to a free port"
        )
    user = _run_as()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    settings.log_dir.mkdir(parents=True, exist_ok=True)
    if user is not None:
        from pgserver.utils import ensure_prefix_permissions

        ensure_prefix_permissions(settings.data_dir)
    if pgdata.exists() and any(pgdata.iterdir()) and not (pgdata / "PG_VERSION").exists():
        raise SetupError(
            f"{pgdata} exists but is not a PostgreSQL data directory (no PG_VERSION); "
            "the data directory looks corrupted: move it away and run `usefirst up` again"
        )
    if not (pgdata / "PG_VERSION").exists():
        pgdata.mkdir(parents=True, exist_ok=True)
        _chown(pgdata, user)
        init = subprocess.run(
            [
                str(bin_dir() / "initdb"),
                "-D",
                str(pgdata),
                "--auth=trust",
                "--encoding=UTF8",
                "--locale=C",
                "-U",
                "postgres",
            ],
            capture_output=True,
            text=True,
            user=user,
            check=False,
        )
        if init.returncode != 0:
            raise SetupError(f"initdb failed in {pgdata}: {init.stderr.strip().splitlines()[-1:]}")
    log_file = settings.log_dir / "postgres.log"
    log_file.touch()
    _chown(log_file, user)
    options = [
        f"-p {settings.pg_port}",
        "-c listen_addresses=127.0.0.1",
        "-c unix_socket_directories=''",
        "-c max_connections=200",
    ]
    if settings.pg_unsafe_fast:
        # Test databases only: durability is traded for speed.
        options += ["-c fsync=off", "-c synchronous_commit=off", "-c full_page_writes=off"]
    result = _pg_ctl(
        [
            "-D",
            str(pgdata),
            "-l",
            str(log_file),
            "-o",
            " ".join(options),
            "-w",
            "-t",
            str(int(settings.service_start_timeout_s)),
            "start",
        ],
        user,
        settings.service_start_timeout_s + 10,
    )
    if result.returncode != 0:
        raise SetupError(
            f"PostgreSQL did not start from {pgdata} (log: {log_file}: {tail(log_file, 3)}); "
            "if the data directory is corrupted, move it away and run `usefirst up` again"
        )
    ensure_database(settings)
    return status(settings)


def stop(settings: Settings) -> bool:
    """Stop the embedded server; returns whether one was running."""
    if not status(settings).running:
        return False
    user = SYSTEM_USER if os.geteuid() == 0 else None
    result = _pg_ctl(["-D", str(settings.pg_data_dir), "-m", "fast", "-w", "stop"], user, 60)
    if result.returncode != 0:
        raise SetupError(f"pg_ctl stop failed: {result.stderr.strip()}")
    return True


def admin_url(settings: Settings, database: str = "postgres") -> str:
    return f"postgresql://postgres@127.0.0.1:{settings.pg_port}/{database}"


def ensure_database(settings: Settings, database: str | None = None) -> None:
    """Create the application database if it does not exist."""
    name = database or settings.pg_database
    with psycopg.connect(admin_url(settings), autocommit=True, connect_timeout=10) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
        if not exists:
            conn.execute(psycopg.sql.SQL("CREATE DATABASE {}").format(psycopg.sql.Identifier(name)))


def drop_database(settings: Settings, database: str) -> None:
    with psycopg.connect(admin_url(settings), autocommit=True, connect_timeout=10) as conn:
        conn.execute(
            psycopg.sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                psycopg.sql.Identifier(database)
            )
        )
