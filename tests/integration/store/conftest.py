"""The store/service suite runs on SQLite files and on the local PostgreSQL (one database per run)."""

from __future__ import annotations

import asyncio
import concurrent.futures
import secrets
from collections.abc import AsyncIterator, Coroutine, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from rgrid import store
from rgrid.envs.pythons import python_version
from rgrid.services import Grid
from rgrid.services.accounts import bootstrap_admin
from rgrid.services.events import Notifier
from rgrid.services.secrets import SecretBox
from rgrid.settings import ServerSettings
from rgrid.storage.local import LocalStorage


def _run_sync(coro: Coroutine[Any, Any, None]) -> None:
    """Run a coroutine to completion in its own thread and loop (fixtures may run inside a loop)."""
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, coro).result()


PG_ADMIN_DSN = "postgresql://postgres@127.0.0.1:5432/test"
TABLES = [
    "console_links",
    "console_sessions",
    "cost_shares",
    "billing_periods",
    "runs",
    "spending_limits",
    "workers",
    "tree_files",
    "trees",
    "log_chunks",
    "artifacts",
    "execution_metadata",
    "executions",
    "blobs",
    "api_keys",
    "accounts",
]


@pytest.fixture(scope="session")
def postgres_database() -> Iterator[str]:
    """A fresh database for this test run, dropped at the end. Fails loudly if PostgreSQL is down."""
    name = f"rgrid_test_{secrets.token_hex(4)}"

    async def admin(sql: str) -> None:
        conn = await asyncpg.connect(PG_ADMIN_DSN)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    try:
        _run_sync(admin(f'CREATE DATABASE "{name}"'))
    except OSError as exc:
        pytest.fail(f"PostgreSQL at 127.0.0.1:5432 is not reachable ({exc}); `make test` starts it")
    url = f"postgresql+asyncpg://postgres@127.0.0.1:5432/{name}"

    async def migrate() -> None:
        engine = store.make_engine(url)
        await store.upgrade(engine)
        await engine.dispose()

    try:
        _run_sync(migrate())
        yield url
    finally:
        _run_sync(admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def engine(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    if request.param == "sqlite":
        eng = store.make_engine(f"sqlite:///{tmp_path / 'rgrid.db'}")
        await store.upgrade(eng)
    else:
        eng = store.make_engine(request.getfixturevalue("postgres_database"))
        async with eng.begin() as conn:
            await conn.execute(text(f"TRUNCATE {', '.join(TABLES)} CASCADE"))
    yield eng
    await eng.dispose()


ADMIN_KEY = "rg_" + "a" * 40


@pytest.fixture
async def grid(engine: AsyncEngine, tmp_path: Path) -> Grid:
    settings = ServerSettings(home=tmp_path / "home", slots=2, lease_s=3.0)
    settings.home.mkdir()
    g = Grid(
        settings=settings,
        sessions=store.session_factory(engine),
        storage=LocalStorage(tmp_path / "blobs"),
        notifier=Notifier(),
        secrets=SecretBox.from_file(settings.home / "secret.key"),
        pythons=(python_version(),),
        default_python=python_version(),
    )
    await bootstrap_admin(g, ADMIN_KEY)
    return g
