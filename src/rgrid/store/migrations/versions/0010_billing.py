"""billing: each attempt's run on a worker, closed billing periods and executions' shares

Revision ID: 0010
Revises: 0009
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "runs",
        sa.Column("execution_id", sa.String(40), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("worker", sa.String(200), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["execution_id"], ["executions.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("execution_id", "attempt"),
    )
    op.create_index("ix_runs_worker_span", "runs", ["worker", "started_at", "ended_at"])
    op.create_table(
        "billing_periods",
        sa.Column("worker", sa.String(200), nullable=False),
        sa.Column("start", sa.DateTime(timezone=True), nullable=False),
        sa.Column("end", sa.DateTime(timezone=True), nullable=False),
        sa.Column("price_micros", sa.BigInteger(), nullable=False),
        sa.Column("idle_micros", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("worker", "start"),
    )
    op.create_table(
        "cost_shares",
        sa.Column("worker", sa.String(200), nullable=False),
        sa.Column("period_start", sa.DateTime(timezone=True), nullable=False),
        sa.Column("execution_id", sa.String(40), nullable=False),
        sa.Column("run_us", sa.BigInteger(), nullable=False),
        sa.Column("micros", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(["execution_id"], ["executions.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("worker", "period_start", "execution_id"),
    )


def downgrade() -> None:
    op.drop_table("cost_shares")
    op.drop_table("billing_periods")
    op.drop_index("ix_runs_worker_span", "runs")
    op.drop_table("runs")
