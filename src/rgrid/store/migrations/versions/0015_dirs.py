"""the project tree's directories: those to create, and the empty ones a run created

Revision ID: 0015
Revises: 0014
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0015"
down_revision: str | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("executions") as batch:
        batch.add_column(sa.Column("dirs", sa.JSON(), nullable=False, server_default="[]"))
        batch.add_column(sa.Column("output_dirs", sa.JSON(), nullable=False, server_default="[]"))


def downgrade() -> None:
    with op.batch_alter_table("executions") as batch:
        batch.drop_column("output_dirs")
        batch.drop_column("dirs")
