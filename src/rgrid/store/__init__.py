"""The database: engine and sessions for SQLite (WAL) and PostgreSQL, migrations, error wrapping.

Repository modules (``accounts``, ``executions``, ``logs``, …) take an ``AsyncSession`` and return
frozen domain objects; ORM rows never leave this package.
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
import time
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import ColumnElement, event
from sqlalchemy.dialects.sqlite.aiosqlite import AsyncAdapt_aiosqlite_dbapi
from sqlalchemy.exc import DisconnectionError, SQLAlchemyError
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.sql.elements import SQLCoreOperations

from rgrid import errors
from rgrid.store import sqlite_async
from rgrid.store.pool import FairAsyncPool

logger = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
SQLITE_BUSY_TIMEOUT_MS = 30_000


def make_engine(url: str) -> AsyncEngine:
    """An async engine for ``sqlite+aiosqlite:///…`` or ``postgresql+asyncpg://…`` URLs."""
    url = _async_url(url)
    if url.startswith("sqlite"):
        engine = create_async_engine(
            url,
            poolclass=FairAsyncPool,
            # SQLAlchemy's aiosqlite dialect over one thread hop a statement, not three or four
            module=AsyncAdapt_aiosqlite_dbapi(sqlite_async, sqlite3),
            connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000},
        )
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        return engine
    if url.startswith("postgresql"):
        # A pool of fixed size: overflow connections are closed when given back, so under a
        # load wider than the pool every request would open a connection (a handshake each).
        engine = create_async_engine(url, poolclass=FairAsyncPool, pool_size=20, max_overflow=0)
        event.listen(engine.sync_engine.pool, "checkin", _note_checkin)
        event.listen(engine.sync_engine.pool, "checkout", _check_alive)
        return engine
    raise errors.InvalidRequest(
        f"unsupported database URL {url.split(':', 1)[0]!r}",
        hint="use sqlite:///PATH or postgresql://USER@HOST/DB",
    )


#: a pooled PostgreSQL connection idle this long is pinged before it is used again
PING_IDLE_S = 5.0


def _note_checkin(_dbapi_connection: Any, record: Any) -> None:
    record.info["checked_in"] = time.monotonic()


def _check_alive(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
    """Instead of the pool's pre-ping (BEGIN, a query and ROLLBACK: three round trips before
    every use, a fifth of a status read's cost): a connection the driver saw closed (the
    server restarted, the backend was terminated) is replaced for free, and one idle for
    ``PING_IDLE_S`` is pinged first. The pool retries the checkout with a new connection."""
    if dbapi_connection._connection.is_closed():
        raise DisconnectionError("the database closed this connection")
    checked_in = record.info.get("checked_in")  # none: a new connection, just opened
    if checked_in is not None and time.monotonic() - checked_in > PING_IDLE_S:
        try:
            dbapi_connection.ping()
        except Exception as exc:
            raise DisconnectionError(f"the database did not answer a ping: {exc}") from exc


def _async_url(url: str) -> str:
    """Accept the plain forms users write and pick the async driver."""
    if url.startswith("sqlite:///"):
        return "sqlite+aiosqlite:///" + url.removeprefix("sqlite:///")
    for plain in ("postgresql://", "postgres://"):
        if url.startswith(plain):
            return "postgresql+asyncpg://" + url.removeprefix(plain)
    return url


#: a SQL function of every SQLite connection: the UTC time the statement runs at plus N
#: seconds, as the store writes times (a claim stamps its start with it, under the write lock)
SQLITE_UTC_AFTER = "rgrid_utc_after"


def _utc_after(seconds: float) -> str:
    # the text SQLAlchemy's SQLite DATETIME stores: what the store's comparisons of times expect
    return (datetime.now(UTC) + timedelta(seconds=seconds)).strftime("%Y-%m-%d %H:%M:%S.%f")


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    dbapi_connection.create_function(SQLITE_UTC_AFTER, 1, _utc_after)
    cursor = dbapi_connection.cursor()
    # WAL lets readers (log followers) proceed while a runner writes.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    # no busy_timeout: SQLite would wait for the lock holding a thread (sqlite_async waits
    # asleep on the event loop instead)
    cursor.close()


def starts_with(column: SQLCoreOperations[Any], prefix: str) -> ColumnElement[bool]:
    """``column LIKE 'prefix%'`` with the prefix's own ``%``, ``_`` and ``\\`` taken literally."""
    escaped = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return column.like(escaped + "%", escape="\\")


def dialect_insert(session: AsyncSession) -> Any:
    """The ``insert`` of the session's database, with ``on_conflict_do_…`` (PostgreSQL, SQLite)."""
    from sqlalchemy.dialects import postgresql, sqlite

    return postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert


def session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)


@contextlib.contextmanager
def wrap_errors() -> Iterator[None]:
    """Translate SQLAlchemy failures into ``errors.StoreError`` once, at the adapter edge."""
    try:
        yield
    except SQLAlchemyError as exc:
        # The full statement goes to the server log only; callers get the kind of failure.
        logger.error("database error: %s", exc, extra={"action": "store_error"})
        raise errors.StoreError(f"database error ({type(exc).__name__})") from exc


@contextlib.asynccontextmanager
async def transaction(
    factory: async_sessionmaker[AsyncSession], *, brief: bool = False
) -> AsyncIterator[AsyncSession]:
    """One session, committed on success, rolled back on error; store errors wrapped.
    ``brief``: its statements are known to take the database a few microseconds each (a row
    or a few by an index); on SQLite they run on the event loop without a thread hop."""
    with wrap_errors(), sqlite_async.brief(brief):
        async with factory() as session, session.begin():
            yield session


@contextlib.asynccontextmanager
async def reading(
    factory: async_sessionmaker[AsyncSession],
) -> AsyncIterator[AsyncSession]:
    """One session for reads only, in autocommit on PostgreSQL: no BEGIN and COMMIT around its
    statements (two round trips of a status read's four), each statement reading its own
    snapshot. Nothing written in it is committed: never use it to write."""
    with wrap_errors():
        async with factory() as session:
            # SQLite's driver begins no transaction for a SELECT anyway: switching its
            # connection to autocommit and back would only cost calls
            if session.get_bind().dialect.name != "sqlite":
                await session.connection(execution_options={"isolation_level": "AUTOCOMMIT"})
            yield session


async def upgrade(engine: AsyncEngine) -> None:
    """Bring the schema to the newest Alembic revision (run at server start)."""
    from alembic import command
    from alembic.config import Config

    def run(connection: Any) -> None:
        config = Config()
        config.set_main_option("script_location", str(MIGRATIONS_DIR))
        config.attributes["connection"] = connection
        command.upgrade(config, "head")

    with wrap_errors():
        async with engine.begin() as connection:
            await connection.run_sync(run)
