"""log lines stored in chunks (one row per shipped batch instead of one per line)

Revision ID: 0003
Revises: 0002
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "log_chunks",
        sa.Column("execution_id", sa.String(40), nullable=False),
        sa.Column("first_seq", sa.Integer(), nullable=False),
        sa.Column("last_seq", sa.Integer(), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("lines", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(["execution_id"], ["executions.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("execution_id", "first_seq"),
    )
    op.create_index("ix_log_chunks_last_seq", "log_chunks", ["execution_id", "last_seq"])
    # Carry existing lines over, one chunk per line (old grids only; new ones have none).
    connection = op.get_bind()
    old = sa.table(
        "log_lines",
        sa.column("execution_id"),
        sa.column("seq"),
        sa.column("attempt"),
        sa.column("stream"),
        sa.column("ts", sa.DateTime(timezone=True)),
        sa.column("text"),
    )
    chunks = sa.table(
        "log_chunks",
        sa.column("execution_id"),
        sa.column("first_seq"),
        sa.column("last_seq"),
        sa.column("attempt"),
        sa.column("lines", sa.JSON()),
    )
    rows = connection.execute(sa.select(old)).all()
    if rows:
        connection.execute(
            chunks.insert(),
            [
                {
                    "execution_id": r.execution_id,
                    "first_seq": r.seq,
                    "last_seq": r.seq,
                    "attempt": r.attempt,
                    "lines": [[r.stream, r.ts.timestamp() if r.ts else 0.0, r.text]],
                }
                for r in rows
            ],
        )
    op.drop_table("log_lines")


def downgrade() -> None:
    raise NotImplementedError("log chunks cannot be turned back into per-line rows")
