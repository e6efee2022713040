"""dependencies: requirements, their source, runtime, resolved packages

Revision ID: 0002
Revises: 0001
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("executions") as batch:
        batch.add_column(sa.Column("requirements", sa.JSON(), nullable=False, server_default="[]"))
        batch.add_column(
            sa.Column("dependency_source", sa.String(64), nullable=False, server_default="none")
        )
        batch.add_column(sa.Column("runtime", sa.String(64), nullable=True))
        batch.add_column(sa.Column("python_version", sa.String(32), nullable=True))
        batch.add_column(sa.Column("packages", sa.JSON(), nullable=False, server_default="[]"))


def downgrade() -> None:
    with op.batch_alter_table("executions") as batch:
        for column in (
            "packages",
            "python_version",
            "runtime",
            "dependency_source",
            "requirements",
        ):
            batch.drop_column(column)
