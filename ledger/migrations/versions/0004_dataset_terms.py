"""Dataset terms history: every terms version a confirmation may have signed

Revision ID: 0004_dataset_terms
Revises: 0003_access
Create Date: 2026-11-23 17:10:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004_dataset_terms"
down_revision: str | None = "0003_access"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "dataset_terms",
        sa.Column("dataset_id", sa.UUID(), nullable=False),
        sa.Column("terms_version", sa.Integer(), nullable=False),
        sa.Column("content_root", sa.String(length=64), nullable=False),
        sa.Column("licence", sa.String(length=200), nullable=False),
        sa.Column("terms_document_sha256", sa.String(length=64), nullable=True),
        sa.Column("terms_hash", sa.String(length=64), nullable=False),
        sa.Column("allowed_uses", sa.SmallInteger(), nullable=False),
        sa.Column("valid_from", sa.DateTime(timezone=True), nullable=False),
        sa.Column("valid_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("file_count", sa.Integer(), nullable=False),
        sa.Column("total_bytes", sa.BigInteger(), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(["dataset_id"], ["dataset.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("dataset_id", "terms_version"),
    )
    # Datasets registered before this revision: their current terms become version rows.
    op.execute(
        """
        INSERT INTO dataset_terms (dataset_id, terms_version, content_root, licence,
            terms_document_sha256, terms_hash, allowed_uses, valid_from, valid_until,
            file_count, total_bytes, created_at)
        SELECT id, terms_version, content_root, licence, terms_document_sha256, terms_hash,
            allowed_uses, valid_from, valid_until, file_count, total_bytes, updated_at
          FROM dataset
        """
    )


def downgrade() -> None:
    op.drop_table("dataset_terms")
