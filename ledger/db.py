"""Database engine, units of work and migrations.

One unit of work per request or task: :func:`session_scope` commits on success
and rolls back on error; service functions take the session and only flush.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, create_engine
from sqlmodel import Session

from ledger.settings import Settings, get_settings

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"


@lru_cache(maxsize=4)
def _engine_for(url: str) -> Engine:
    return create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=20, future=True)


def get_engine(settings: Settings | None = None) -> Engine:
    """The process-wide engine for the configured database (psycopg 3)."""
    return _engine_for((settings or get_settings()).effective_database_url)


def dispose_engines() -> None:
    """Close pooled connections (after fork, or when tests switch databases)."""
    for engine in list(_engine_cache()):
        engine.dispose()
    _engine_for.cache_clear()


def _engine_cache() -> list[Engine]:
    # lru_cache has no public iterator; we rebuild from the known URL when needed.
    try:
        return [_engine_for(get_settings().effective_database_url)]
    except Exception:
        return []


@contextmanager
def session_scope(settings: Settings | None = None) -> Iterator[Session]:
    """A session that commits when the block succeeds and rolls back when it raises."""
    session = Session(get_engine(settings), expire_on_commit=False)
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


def alembic_config(settings: Settings | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option(
        "sqlalchemy.url",
        (settings or get_settings()).effective_database_url.replace("%", "%%"),
    )
    return config


def migrate(settings: Settings | None = None, revision: str = "head") -> None:
    """Upgrade the schema to ``revision`` (idempotent)."""
    command.upgrade(alembic_config(settings), revision)


def current_revision(settings: Settings | None = None) -> str | None:
    from alembic.runtime.migration import MigrationContext

    with get_engine(settings).connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def head_revision() -> str | None:
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(alembic_config()).get_current_head()
