"""Declared usage is append-only; retrieval chunks lose their per-row foreign key; quarantine lookup index

Revision ID: 0005_usage_append_only
Revises: 0004_dataset_terms
Create Date: 2026-11-23 16:30:00.000000

The ingestion path writes a retrieval event and its chunks in one statement. The
foreign key ``usage_retrieval_chunk.retrieval_id → usage_retrieval_event.id`` cost a
per-row lookup and lock of the parent: 45% of the ingestion statement's time
(measured: 355 ms → 203 ms per 5,000 events × 5 chunks). Its guarantee is kept by
other means: chunks are only inserted by that statement, together with their event,
and usage rows can no longer be updated or deleted (triggers below), so a chunk's
event always exists. Corrections of usage are adjustments, never edits.

``ix_usage_quarantine_model_event`` serves the check that a replayed rejected event is
not filed for review twice.
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0005_usage_append_only"
down_revision: str | None = "0004_dataset_terms"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

USAGE_TABLES = ("usage_training_event", "usage_retrieval_event", "usage_retrieval_chunk")


def upgrade() -> None:
    op.drop_constraint(
        "usage_retrieval_chunk_retrieval_id_fkey", "usage_retrieval_chunk", type_="foreignkey"
    )
    op.create_index("ix_usage_quarantine_model_event", "usage_quarantine", ["model_id", "event_id"])
    op.execute(
        """
        CREATE FUNCTION usefirst_reject_usage_mutation() RETURNS trigger
        LANGUAGE plpgsql AS $$
        BEGIN
            RAISE EXCEPTION 'declared usage is append-only: % on % is not allowed; report corrections as an adjustment in an open period',
                TG_OP, TG_TABLE_NAME USING ERRCODE = 'restrict_violation';
        END $$
        """
    )
    for table in USAGE_TABLES:
        op.execute(
            f"CREATE TRIGGER trg_{table}_append_only BEFORE UPDATE OR DELETE ON {table} "
            "FOR EACH ROW EXECUTE FUNCTION usefirst_reject_usage_mutation()"
        )
        op.execute(
            f"CREATE TRIGGER trg_{table}_no_truncate BEFORE TRUNCATE ON {table} "
            "FOR EACH STATEMENT EXECUTE FUNCTION usefirst_reject_usage_mutation()"
        )


def downgrade() -> None:
    for table in USAGE_TABLES:
        op.execute(f"DROP TRIGGER IF EXISTS trg_{table}_no_truncate ON {table}")
        op.execute(f"DROP TRIGGER IF EXISTS trg_{table}_append_only ON {table}")
    op.execute("DROP FUNCTION IF EXISTS usefirst_reject_usage_mutation()")
    op.drop_index("ix_usage_quarantine_model_event", table_name="usage_quarantine")
    op.create_foreign_key(
        "usage_retrieval_chunk_retrieval_id_fkey",
        "usage_retrieval_chunk",
        "usage_retrieval_event",
        ["retrieval_id"],
        ["id"],
    )
