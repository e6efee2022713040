"""piped stdin per execution: its blob (none when empty) and size

Revision ID: 0013
Revises: 0012
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("executions") as batch:
        batch.add_column(sa.Column("stdin_sha256", sa.String(64), nullable=True))
        batch.add_column(sa.Column("stdin_size", sa.BigInteger(), nullable=True))
    # retention: which executions still use a blob as their stdin
    op.create_index("ix_executions_stdin", "executions", ["account_id", "stdin_sha256"])


def downgrade() -> None:
    op.drop_index("ix_executions_stdin", "executions")
    with op.batch_alter_table("executions") as batch:
        batch.drop_column("stdin_size")
        batch.drop_column("stdin_sha256")
