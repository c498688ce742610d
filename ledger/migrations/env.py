"""Alembic environment: the URL comes from usefirst settings, the metadata from SQLModel."""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine, pool
from sqlmodel import SQLModel

import ledger.tables  # noqa: F401 - registers every table on SQLModel.metadata
from ledger.settings import get_settings

config = context.config
target_metadata = SQLModel.metadata


# Tables owned by Celery/kombu (broker and result backend) live in the same
# database but are not ours to migrate.
FOREIGN_TABLE_PREFIXES = ("kombu_", "celery_")


def include_object(
    obj: object, name: str | None, type_: str, reflected: bool, compare_to: object
) -> bool:
    if type_ == "table" and reflected and compare_to is None:
        return not (name or "").startswith(FOREIGN_TABLE_PREFIXES)
    return True


def _url() -> str:
    return config.get_main_option("sqlalchemy.url") or get_settings().effective_database_url


def run_migrations_offline() -> None:
    context.configure(url=_url(), target_metadata=target_metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    engine = create_engine(_url(), poolclass=pool.NullPool)
    with engine.connect() as connection:
        context.configure(
            connection=connection,
            target_metadata=target_metadata,
            include_object=include_object,
        )
        with context.begin_transaction():
            # Two processes migrating at once (e.g. `up` and a worker) must not interleave.
            connection.exec_driver_sql("SELECT pg_advisory_xact_lock(720101)")
            context.run_migrations()
    engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
