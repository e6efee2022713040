"""the result cache: each execution's key and its parts, the run it reused, a note for status

Revision ID: 0007
Revises: 0006
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("executions") as batch:
        batch.add_column(sa.Column("cache_key", sa.String(64), nullable=True))
        batch.add_column(sa.Column("cache_parts", sa.JSON(), nullable=True))
        batch.add_column(sa.Column("cached_from", sa.String(40), nullable=True))
        batch.add_column(sa.Column("cache_note", sa.Text(), nullable=True))
        batch.create_index("ix_executions_cache", ["account_id", "cache_key"])
        batch.create_index("ix_executions_account_script", ["account_id", "script", "created_at"])


def downgrade() -> None:
    with op.batch_alter_table("executions") as batch:
        batch.drop_index("ix_executions_account_script")
        batch.drop_index("ix_executions_cache")
        for column in ("cache_note", "cached_from", "cache_parts", "cache_key"):
            batch.drop_column(column)
