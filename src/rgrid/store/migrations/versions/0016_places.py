"""where a run's files are: the user's working directory, the script as typed, outside mounts

Revision ID: 0016
Revises: 0015
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0016"
down_revision: str | None = "0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("executions") as batch:
        batch.add_column(sa.Column("cwd", sa.Text(), nullable=True))
        batch.add_column(sa.Column("argv0", sa.Text(), nullable=True))
        batch.add_column(sa.Column("mounts", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("executions") as batch:
        batch.drop_column("mounts")
        batch.drop_column("argv0")
        batch.drop_column("cwd")
