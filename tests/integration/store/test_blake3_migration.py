"""Migration 0023 on a database written before BLAKE3 (SQLite and the local PostgreSQL): every
stored address keeps working as ``sha256:<hex>``, the columns are renamed, the schema is the
models' exactly, and going back restores what was there."""

from __future__ import annotations

import json
import secrets
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from sqlalchemy.ext.asyncio import AsyncEngine
from tests.integration.store.conftest import PG_ADMIN_DSN

from rgrid import store
from rgrid.store.models import Base

HEX = {name: f"{i:x}" * 64 for i, name in enumerate(("script", "data", "stdin", "tree"), 10)}
NOW = datetime(2026, 11, 30, tzinfo=UTC)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def empty_engine(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[AsyncEngine]:
    if request.param == "sqlite":
        engine = store.make_engine(f"sqlite:///{tmp_path / 'old.db'}")
        yield engine
        await engine.dispose()
        return
    name = f"rgrid_migration_{secrets.token_hex(4)}"
    admin = await asyncpg.connect(PG_ADMIN_DSN)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        engine = store.make_engine(f"postgresql+asyncpg://postgres@127.0.0.1:5432/{name}")
        try:
            yield engine
        finally:
            await engine.dispose()
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


async def _migrate(engine: AsyncEngine, action: str, revision: str) -> None:
    def run(connection: Any) -> None:
        config = Config()
        config.set_main_option("script_location", str(store.MIGRATIONS_DIR))
        config.attributes["connection"] = connection
        getattr(command, action)(config, revision)

    async with engine.begin() as connection:
        await connection.run_sync(run)


def _fill(table: sa.Table, given: dict[str, Any]) -> dict[str, Any]:
    """``given``, plus a plain value for every other column that may not be NULL."""
    row = dict(given)
    for column in table.columns:
        if column.name in row or column.nullable or column.server_default is not None:
            continue
        kind = column.type
        if isinstance(kind, sa.JSON):
            row[column.name] = []
        elif isinstance(kind, sa.Boolean):
            row[column.name] = False
        elif isinstance(kind, sa.DateTime):
            row[column.name] = NOW
        elif isinstance(kind, sa.Integer | sa.Float | sa.Numeric):
            row[column.name] = 0
        else:
            row[column.name] = "x"
    return row


async def _write_old_rows(engine: AsyncEngine) -> None:
    """What a grid at revision 0022 held: bare sha256 hex everywhere."""

    def write(connection: Any) -> None:
        meta = sa.MetaData()
        meta.reflect(connection)
        t = meta.tables
        inputs = {"data.csv": HEX["data"]}
        parts = {"script": HEX["script"], "inputs": inputs, "stdin": HEX["stdin"], "args": ["a"]}
        rows: list[tuple[str, dict[str, Any]]] = [
            ("accounts", {"id": "acct_1"}),
            ("blobs", {"account_id": "acct_1", "sha256": HEX["data"], "size": 5}),
            (
                "executions",
                {
                    "id": "exec_1",
                    "account_id": "acct_1",
                    "stdin_sha256": HEX["stdin"],
                    "tree_sha256": HEX["tree"],
                    "cache_parts": parts,
                    "args": ["a"],
                },
            ),
            ("executions", {"id": "exec_2", "account_id": "acct_1"}),  # no stdin, no tree
            (
                "artifacts",
                {
                    "execution_id": "exec_1",
                    "kind": "input",
                    "path": "data.csv",
                    "sha256": HEX["data"],
                },
            ),
            ("trees", {"account_id": "acct_1", "sha256": HEX["tree"]}),
            (
                "tree_files",
                {
                    "account_id": "acct_1",
                    "tree_sha256": HEX["tree"],
                    "path": "a",
                    "sha256": HEX["data"],
                },
            ),
        ]
        for name, given in rows:
            connection.execute(t[name].insert().values(**_fill(t[name], given)))

    async with engine.begin() as connection:
        await connection.run_sync(write)


async def _read(engine: AsyncEngine, sql: str) -> list[tuple[Any, ...]]:
    async with engine.connect() as connection:
        return [tuple(row) for row in (await connection.execute(sa.text(sql))).all()]


async def _schema_differences(engine: AsyncEngine) -> list[Any]:
    def compare(connection: Any) -> list[Any]:
        context = MigrationContext.configure(connection)
        found = list(compare_metadata(context, Base.metadata))
        if connection.dialect.name == "sqlite":  # renamed in place, still declared VARCHAR(64):
            found = [d for d in found if not _length_only(d)]  # SQLite enforces no length
        return found

    async with engine.connect() as connection:
        return await connection.run_sync(compare)


def _length_only(difference: Any) -> bool:
    """A change of a VARCHAR's declared length, and nothing else."""
    if not (isinstance(difference, list) and len(difference) == 1):
        return False
    kind, *_, old, new = difference[0]
    return kind == "modify_type" and isinstance(old, sa.String) and isinstance(new, sa.String)


async def test_old_addresses_become_sha256_addresses_and_come_back(
    empty_engine: AsyncEngine,
) -> None:
    engine = empty_engine
    await _migrate(engine, "upgrade", "0022")
    await _write_old_rows(engine)

    await _migrate(engine, "upgrade", "head")

    sha = {name: f"sha256:{value}" for name, value in HEX.items()}
    assert await _read(engine, "SELECT digest FROM blobs") == [(sha["data"],)]
    assert await _read(
        engine, "SELECT id, stdin_digest, tree_digest FROM executions ORDER BY id"
    ) == [("exec_1", sha["stdin"], sha["tree"]), ("exec_2", None, None)]
    assert await _read(engine, "SELECT digest FROM artifacts") == [(sha["data"],)]
    assert await _read(engine, "SELECT digest FROM trees") == [(sha["tree"],)]
    assert await _read(engine, "SELECT tree_digest, digest FROM tree_files") == [
        (sha["tree"], sha["data"])
    ]
    [(parts,)] = await _read(engine, "SELECT cache_parts FROM executions WHERE id = 'exec_1'")
    parts = parts if isinstance(parts, dict) else json.loads(parts)
    assert parts == {
        "script": sha["script"],
        "inputs": {"data.csv": sha["data"]},
        "stdin": sha["stdin"],
        "args": ["a"],  # not an address: untouched
    }
    assert await _schema_differences(engine) == []

    await _migrate(engine, "downgrade", "0022")

    assert await _read(engine, "SELECT sha256 FROM blobs") == [(HEX["data"],)]
    assert await _read(
        engine, "SELECT stdin_sha256, tree_sha256 FROM executions WHERE id = 'exec_1'"
    ) == [(HEX["stdin"], HEX["tree"])]
    assert await _read(engine, "SELECT tree_sha256, sha256 FROM tree_files") == [
        (HEX["tree"], HEX["data"])
    ]


async def test_going_back_is_refused_once_blake3_content_is_stored(
    empty_engine: AsyncEngine,
) -> None:
    engine = empty_engine
    await _migrate(engine, "upgrade", "head")
    async with engine.begin() as connection:
        meta = sa.MetaData()
        await connection.run_sync(lambda sync: meta.reflect(sync, only=["accounts", "blobs"]))
        for name, given in (
            ("accounts", {"id": "acct_1"}),
            ("blobs", {"account_id": "acct_1", "digest": "blake3:" + "a" * 64, "size": 1}),
        ):
            await connection.execute(
                meta.tables[name].insert().values(**_fill(meta.tables[name], given))
            )

    with pytest.raises(RuntimeError, match="blobs holds BLAKE3 addresses"):
        await _migrate(engine, "downgrade", "0022")
    assert await _read(engine, "SELECT digest FROM blobs") == [("blake3:" + "a" * 64,)]
