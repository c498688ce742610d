"""The database is reachable through psycopg 3 and migrated to the latest revision."""

from __future__ import annotations

from sqlalchemy import Engine, inspect, text

from ledger.db import current_revision, head_revision
from ledger.settings import Settings


def test_database_is_reachable_through_psycopg3(db_engine: Engine) -> None:
    assert db_engine.dialect.driver == "psycopg"
    with db_engine.connect() as conn:
        version = conn.execute(text("SHOW server_version")).scalar_one()
    assert int(str(version).split(".")[0]) >= 14


def test_database_is_migrated_to_head(database: Settings, db_engine: Engine) -> None:
    head = head_revision()
    assert head is not None
    assert current_revision(database) == head
    assert "worker_heartbeat" in inspect(db_engine).get_table_names()


def test_migrating_again_changes_nothing(database: Settings) -> None:
    from ledger.db import migrate

    before = current_revision(database)
    migrate(database)
    assert current_revision(database) == before
