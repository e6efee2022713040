"""the project tree stored once per account and named by executions

Revision ID: 0017
Revises: 0016
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0017"
down_revision: str | None = "0016"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "trees",
        sa.Column("account_id", sa.String(40), sa.ForeignKey("accounts.id"), primary_key=True),
        sa.Column("sha256", sa.String(64), primary_key=True),
        sa.Column("dirs", sa.JSON(), nullable=False),
        sa.Column("file_count", sa.Integer(), nullable=False),
        sa.Column("total_bytes", sa.BigInteger(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "tree_files",
        sa.Column("account_id", sa.String(40), primary_key=True),
        sa.Column("tree_sha256", sa.String(64), primary_key=True),
        sa.Column("path", sa.String(4096), primary_key=True),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
    )
    op.create_index("ix_tree_files_blob", "tree_files", ["account_id", "sha256"])
    with op.batch_alter_table("executions") as batch:
        batch.add_column(sa.Column("tree_sha256", sa.String(64), nullable=True))
    op.create_index("ix_executions_tree", "executions", ["account_id", "tree_sha256"])


def downgrade() -> None:
    op.drop_index("ix_executions_tree", "executions")
    with op.batch_alter_table("executions") as batch:
        batch.drop_column("tree_sha256")
    op.drop_index("ix_tree_files_blob", "tree_files")
    op.drop_table("tree_files")
    op.drop_table("trees")
