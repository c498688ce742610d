"""Backups: a restore onto a fresh data directory reconciles cleanly against the chain."""

from __future__ import annotations

import tarfile
from pathlib import Path

import pytest
from eth_account import Account
from sqlalchemy import Engine

from api.backup import create_backup, restore_backup
from api.embedded import postgres
from api.embedded.apiserver import free_port
from api.embedded.process import SetupError
from contracts.client import UsefirstChain
from ledger.settings import Settings
from ledger.settlements.service import anchor_period, reconcile
from tests.ledger.factories_settlement import closed_period, deploy_chain


def test_backup_restore_onto_a_fresh_data_directory_reconciles(
    db_engine: Engine, chain_settings: Settings, database: Settings, tmp_path: Path
) -> None:
    chain = deploy_chain(chain_settings, tmp_path / "original")
    weights = {Account.create().address: w for w in (3, 5, 7)}
    closed = closed_period(db_engine, weights)
    anchor_period(closed.period_id, chain=chain, settings=chain.settings)

    archive = tmp_path / "backup.tar.gz"
    manifest = create_backup(chain.settings, archive)
    assert manifest["deployments"], "the deployment record must travel with the backup"
    with tarfile.open(archive) as tar:
        assert {"manifest.json", "database.dump"} <= set(tar.getnames())

    fresh = chain.settings.model_copy(
        update={
            "data_dir": tmp_path / "fresh",
            "database_url": None,
            "pg_port": free_port(),
            "pg_database": "usefirst_restored",
        }
    )
    try:
        restore_backup(fresh, archive)
        restored_chain = UsefirstChain.connect(fresh)
        assert restored_chain.settlement.address == chain.settlement.address
        report = reconcile(chain=restored_chain, settings=fresh)
        assert report.settlements_checked >= 1
        assert report.clean, report.findings
        # A second restore refuses to overwrite data unless forced.
        with pytest.raises(SetupError, match="not empty"):
            restore_backup(fresh, archive)
        restore_backup(fresh, archive, force=True)
    finally:
        from ledger.db import dispose_engines

        dispose_engines()
        postgres.stop(fresh)


def test_restore_refuses_a_file_that_is_not_a_backup(tmp_path: Path, database: Settings) -> None:
    bogus = tmp_path / "bogus.tar.gz"
    bogus.write_bytes(b"not a tarball")
    with pytest.raises(SetupError, match="not a usefirst backup"):
        restore_backup(database, bogus)
