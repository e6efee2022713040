"""content addresses name their algorithm: BLAKE3 for new content, sha256 for what was here

Every stored address (blobs, artifacts, trees and their files, an execution's stdin and
tree, the file parts of its result-cache key) gets its algorithm as a prefix, ``sha256:``,
and the columns are renamed from ``sha256`` to ``digest``. Blobs stay where they are in the
storage: a sha256 address keeps its old key.

Revision ID: 0023
Revises: 0022
"""

import json
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op

revision: str = "0023"
down_revision: str | None = "0022"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

NEW, OLD = 71, 64
#: (table, old column, new column)
RENAMES = (
    ("blobs", "sha256", "digest"),
    ("executions", "stdin_sha256", "stdin_digest"),
    ("executions", "tree_sha256", "tree_digest"),
    ("artifacts", "sha256", "digest"),
    ("trees", "sha256", "digest"),
    ("tree_files", "tree_sha256", "tree_digest"),
    ("tree_files", "sha256", "digest"),
)
#: (name, table, old columns, new columns)
INDEXES = (
    (
        "ix_executions_stdin",
        "executions",
        ["account_id", "stdin_sha256"],
        ["account_id", "stdin_digest"],
    ),
    (
        "ix_executions_tree",
        "executions",
        ["account_id", "tree_sha256"],
        ["account_id", "tree_digest"],
    ),
    ("ix_artifacts_sha256", "artifacts", ["sha256"], None),
    ("ix_tree_files_blob", "tree_files", ["account_id", "sha256"], ["account_id", "digest"]),
)
#: the cache key's parts that hold files' addresses: one, or by path
ONE_FILE_PARTS = ("script", "stdin", "tree")
FILES_PARTS = ("modules", "inputs")


def upgrade() -> None:
    for name, table, _, _ in INDEXES:
        op.drop_index(name, table)
    _rename(forward=True)
    for table, _, column in RENAMES:
        op.execute(
            sa.text(
                f"UPDATE {table} SET {column} = 'sha256:' || {column} WHERE {column} IS NOT NULL"
            )
        )
    _rewrite_cache_parts(lambda value: f"sha256:{value}" if value else value)
    for name, table, _, new in INDEXES:
        if new is not None:
            op.create_index(name, table, new)
    op.create_index("ix_artifacts_digest", "artifacts", ["digest"])


def downgrade() -> None:
    # Content hashed with BLAKE3 has no sha256 address: it cannot go back, only be refused.
    bind = op.get_bind()
    checks = [(table, f"{column} LIKE 'blake3:%'") for table, _, column in RENAMES]
    checks.append(("executions", "CAST(cache_parts AS TEXT) LIKE '%blake3:%'"))
    for table, condition in checks:
        found = bind.execute(sa.text(f"SELECT 1 FROM {table} WHERE {condition} LIMIT 1")).first()
        if found is not None:
            raise RuntimeError(
                f"{table} holds BLAKE3 addresses, which the older schema cannot name"
            )
    op.drop_index("ix_artifacts_digest", "artifacts")
    for name, table, _, new in INDEXES:
        if new is not None:
            op.drop_index(name, table)
    for table, _, column in RENAMES:
        op.execute(
            sa.text(f"UPDATE {table} SET {column} = substr({column}, 8) WHERE {column} IS NOT NULL")
        )
    _rewrite_cache_parts(lambda value: value.removeprefix("sha256:") if value else value)
    _rename(forward=False)
    for name, table, old, _ in INDEXES:
        op.create_index(name, table, old)


def _rename(*, forward: bool) -> None:
    sqlite = op.get_bind().dialect.name == "sqlite"
    for table, old, new in RENAMES:
        source, target = (old, new) if forward else (new, old)
        if sqlite:
            # In place: a batch copy would drop and re-create the table, and dropping
            # executions deletes its artifacts (ON DELETE CASCADE). SQLite does not enforce a
            # VARCHAR's length, so the declared 64 may stay.
            op.execute(sa.text(f'ALTER TABLE {table} RENAME COLUMN "{source}" TO "{target}"'))
            continue
        op.alter_column(
            table,
            source,
            new_column_name=target,
            existing_type=sa.String(OLD if forward else NEW),
            type_=sa.String(NEW if forward else OLD),
        )


def _rewrite_cache_parts(change: Any) -> None:
    """Rewrite the file parts of every stored cache key, a page of executions at a time."""
    bind = op.get_bind()
    after = ""
    while rows := bind.execute(
        sa.text(
            "SELECT id, cache_parts FROM executions WHERE cache_parts IS NOT NULL AND id > :after "
            "ORDER BY id LIMIT 1000"
        ),
        {"after": after},
    ).all():
        after = rows[-1][0]
        _rewrite_page(bind, rows, change)


def _rewrite_page(bind: Any, rows: Sequence[Any], change: Any) -> None:
    for execution_id, stored in rows:
        parts = json.loads(stored) if isinstance(stored, str) else stored
        if not isinstance(parts, dict):
            continue
        for name in ONE_FILE_PARTS:
            if isinstance(parts.get(name), str):
                parts[name] = change(parts[name])
        for name in FILES_PARTS:
            if isinstance(parts.get(name), dict):
                parts[name] = {path: change(value) for path, value in parts[name].items()}
        bind.execute(
            sa.text("UPDATE executions SET cache_parts = :parts WHERE id = :id").bindparams(
                sa.bindparam("parts", type_=sa.JSON())
            ),
            {"parts": parts, "id": execution_id},
        )
