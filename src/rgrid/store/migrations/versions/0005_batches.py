"""batches: a batch table and each execution's place in its batch

Revision ID: 0005
Revises: 0004
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "batches",
        sa.Column("id", sa.String(40), nullable=False),
        sa.Column("account_id", sa.String(40), nullable=False),
        sa.Column("script", sa.Text(), nullable=False),
        sa.Column("parallel", sa.Integer(), nullable=False),
        sa.Column("total", sa.Integer(), nullable=False),
        sa.Column("idempotency_key", sa.String(200), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["account_id"], ["accounts.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("account_id", "idempotency_key", name="uq_batches_idempotency"),
    )
    with op.batch_alter_table("executions") as batch:
        batch.add_column(sa.Column("batch_id", sa.String(40), nullable=True))
        batch.add_column(sa.Column("batch_index", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("batch_input", sa.Text(), nullable=True))
        batch.add_column(
            sa.Column("superseded", sa.Boolean(), nullable=False, server_default=sa.false())
        )
        batch.create_index("ix_executions_batch", ["batch_id", "state"])


def downgrade() -> None:
    with op.batch_alter_table("executions") as batch:
        batch.drop_index("ix_executions_batch")
        for column in ("superseded", "batch_input", "batch_index", "batch_id"):
            batch.drop_column(column)
    op.drop_table("batches")
