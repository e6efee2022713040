"""a disk limit per execution

Revision ID: 0012
Revises: 0011
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

#: what executions recorded before this revision were allowed (the sandbox's default)
DEFAULT_DISK_BYTES = 10 * 1024**3


def upgrade() -> None:
    with op.batch_alter_table("executions") as batch:
        batch.add_column(
            sa.Column(
                "disk_bytes",
                sa.BigInteger(),
                nullable=False,
                server_default=str(DEFAULT_DISK_BYTES),
            )
        )


def downgrade() -> None:
    with op.batch_alter_table("executions") as batch:
        batch.drop_column("disk_bytes")
