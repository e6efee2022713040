"""retries: per-execution max_retries, retry_of, and why the current attempt is a retry

Revision ID: 0004
Revises: 0003
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("executions") as batch:
        batch.add_column(sa.Column("max_retries", sa.Integer(), nullable=False, server_default="2"))
        batch.add_column(sa.Column("retry_of", sa.String(40), nullable=True))
        batch.add_column(sa.Column("retry_reason", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("executions") as batch:
        for column in ("retry_reason", "retry_of", "max_retries"):
            batch.drop_column(column)
