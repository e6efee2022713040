"""workers made by the autoscaler: the provider, its id for the machine, the kind, the end

Revision ID: 0019
Revises: 0018
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0019"
down_revision: str | None = "0018"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("workers") as batch:
        batch.add_column(sa.Column("provider", sa.String(64), nullable=True))
        batch.add_column(sa.Column("provider_id", sa.String(200), nullable=True))
        batch.add_column(sa.Column("kind", sa.String(64), nullable=True))
        batch.add_column(sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("workers") as batch:
        batch.drop_column("ended_at")
        batch.drop_column("kind")
        batch.drop_column("provider_id")
        batch.drop_column("provider")
