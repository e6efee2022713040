"""executions.updated_at: when a row last changed, so a batch's followers fetch only changes

Revision ID: 0006
Revises: 0005
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("executions") as batch:
        batch.add_column(sa.Column("updated_at", sa.DateTime(timezone=True), nullable=True))
        batch.create_index("ix_executions_batch_updated", ["batch_id", "updated_at"])
    op.execute(
        "UPDATE executions SET updated_at = COALESCE(finished_at, started_at, queued_at, created_at)"
    )


def downgrade() -> None:
    with op.batch_alter_table("executions") as batch:
        batch.drop_index("ix_executions_batch_updated")
        batch.drop_column("updated_at")
