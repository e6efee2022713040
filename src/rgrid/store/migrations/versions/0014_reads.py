"""which input files each execution read, and the cache key without its files

Revision ID: 0014
Revises: 0013
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("executions") as batch:
        batch.add_column(sa.Column("cache_base", sa.String(64), nullable=True))
        batch.add_column(sa.Column("reads", sa.JSON(), nullable=True))
        batch.create_index("ix_executions_cache_base", ["account_id", "cache_base"])


def downgrade() -> None:
    with op.batch_alter_table("executions") as batch:
        batch.drop_index("ix_executions_cache_base")
        batch.drop_column("reads")
        batch.drop_column("cache_base")
