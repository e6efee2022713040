"""SQLite under SQLAlchemy's async engine in one thread hop a statement.

SQLAlchemy's ``sqlite+aiosqlite`` dialect is given this module in aiosqlite's place (the same
names). aiosqlite runs every call of a connection on a thread of its own and hands each result
back: the cursor, the execute, the fetch, the close — three or four thread hops a statement,
which cost the grid more than SQLite's own work for its short, indexed statements. Here a
statement is executed and its rows fetched in one call on a small shared pool of threads;
opening a cursor, reading the fetched rows and closing are done on the event loop. SQLite's
work itself (a long query, a checkpoint's fsync at a commit) never runs on the event loop.

A statement never waits for the database's lock inside a thread: the connection's busy
timeout is 0, and a statement (or commit) the lock refused (``SQLITE_BUSY``) is tried again
after an ``asyncio.sleep``, up to the connection's ``timeout``. Threads waiting on the lock
could otherwise fill the pool while the transaction holding the lock waits for a thread to
commit: a deadlock until the timeout.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import contextvars
import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any, TypeVar

T = TypeVar("T")

#: SQLITE_BUSY. Not SQLITE_BUSY_SNAPSHOT (517): a read snapshot that went stale cannot be
#: helped by trying again; like SQLite's own busy handler, that fails at once.
_BUSY = 5
#: waits between tries, growing to this (SQLite's own busy handler sleeps up to 100 ms)
_FIRST_WAIT_S = 0.001
_LONGEST_WAIT_S = 0.05
#: threads that run statements: a statement holds one only while SQLite works on it (never
#: while it waits for the lock), so a few serve every connection of the grid
_THREADS = concurrent.futures.ThreadPoolExecutor(4, thread_name_prefix="rgrid-sqlite")

#: set by ``brief``: the statements of the current task run on the event loop
_BRIEF: contextvars.ContextVar[bool] = contextvars.ContextVar("rgrid_sqlite_brief", default=False)

DatabaseError = sqlite3.DatabaseError
Error = sqlite3.Error
IntegrityError = sqlite3.IntegrityError
NotSupportedError = sqlite3.NotSupportedError
OperationalError = sqlite3.OperationalError
ProgrammingError = sqlite3.ProgrammingError
sqlite_version = sqlite3.sqlite_version
sqlite_version_info = sqlite3.sqlite_version_info


@contextlib.contextmanager
def brief(on: bool = True) -> Iterator[None]:
    """Within: this task's statements run on the event loop itself, without a thread hop — for
    a caller whose statements are known to take SQLite a few microseconds (a row or a few by
    an index: the dispatcher's claim, an attempt's outcome). Commits still run on a thread: a
    commit may checkpoint the log, with an fsync. ``on=False``: not so within, for a part of
    such a caller's work that may be big (a tree's listing)."""
    token = _BRIEF.set(on)
    try:
        yield
    finally:
        _BRIEF.reset(token)


class _Calls:
    """A connection's calls, one at a time: on a thread of the pool (on the event loop within
    ``brief``, for those that may be); while the database's lock refuses one, again after a
    sleep, for the connection's timeout."""

    def __init__(self, timeout_s: float) -> None:
        self._timeout_s = timeout_s
        #: the last call sent to a thread: its waiter may have been cancelled (the task was),
        #: and it still runs there; the next call of the connection waits for its end
        self._running: concurrent.futures.Future[Any] | None = None

    @property
    def leftover(self) -> concurrent.futures.Future[Any] | None:
        """A call still running on a thread, if any."""
        return self._running if self._running is not None and not self._running.done() else None

    async def settle(self) -> None:
        """Return once no call of the connection runs on a thread."""
        if (leftover := self.leftover) is not None:
            await asyncio.wait([asyncio.wrap_future(leftover)])

    async def run(self, call: Callable[[], T], *, may_be_brief: bool) -> T:
        wait_s, deadline = _FIRST_WAIT_S, time.monotonic() + self._timeout_s
        while True:
            await self.settle()
            try:
                if may_be_brief and _BRIEF.get():
                    return call()
                self._running = _THREADS.submit(call)
                return await asyncio.wrap_future(self._running)
            except sqlite3.OperationalError as exc:
                if exc.sqlite_errorcode != _BUSY or time.monotonic() >= deadline:
                    raise
            await asyncio.sleep(wait_s)
            wait_s = min(wait_s * 2, _LONGEST_WAIT_S)


class Cursor:
    """A cursor whose statement's rows are all fetched with it, in the same hop."""

    def __init__(self, cursor: sqlite3.Cursor, calls: _Calls) -> None:
        self._cursor = cursor
        self._calls = calls
        self._rows: list[Any] = []

    async def __aenter__(self) -> Cursor:
        return self

    async def __aexit__(self, *_exc: object) -> None:
        self._cursor.close()

    @property
    def description(self) -> Any:
        return self._cursor.description

    @property
    def rowcount(self) -> int:
        return self._cursor.rowcount

    @property
    def lastrowid(self) -> int | None:
        return self._cursor.lastrowid

    @property
    def arraysize(self) -> int:
        return self._cursor.arraysize

    @arraysize.setter
    def arraysize(self, value: int) -> None:
        self._cursor.arraysize = value

    async def execute(self, sql: str, parameters: Any = ()) -> Cursor:
        return await self._statement(self._cursor.execute, sql, parameters)

    async def executemany(self, sql: str, parameters: Iterable[Any]) -> Cursor:
        # a list: an iterator would be used up by a try the lock refused
        return await self._statement(self._cursor.executemany, sql, list(parameters))

    async def _statement(self, method: Callable[..., Any], sql: str, parameters: Any) -> Cursor:
        def run() -> None:  # the statement and every row it gives, in one call
            method(sql, parameters)
            self._rows = self._cursor.fetchall() if self._cursor.description else []

        await self._calls.run(run, may_be_brief=True)
        return self

    async def fetchall(self) -> list[Any]:
        rows, self._rows = self._rows, []
        return rows

    async def fetchone(self) -> Any:
        return self._rows.pop(0) if self._rows else None

    async def fetchmany(self, size: int | None = None) -> list[Any]:
        count = self._cursor.arraysize if size is None else size
        rows, self._rows = self._rows[:count], self._rows[count:]
        return rows

    async def close(self) -> None:
        self._rows = []
        self._cursor.close()


class _RunNow:
    """aiosqlite's queue of calls for its thread, as SQLAlchemy's isolation-level setter uses
    it (a future and a function): the function runs at once."""

    def put_nowait(self, item: tuple[asyncio.Future[Any], Callable[[], Any]]) -> None:
        future, function = item
        try:
            future.set_result(function())
        except Exception as exc:  # the awaiting caller gets it
            future.set_exception(exc)


class Connection:
    def __init__(self, connection: sqlite3.Connection, timeout_s: float) -> None:
        self._connection: sqlite3.Connection | None = connection
        self._calls = _Calls(timeout_s)
        self._tx = _RunNow()

    @property
    def _conn(self) -> sqlite3.Connection:
        if self._connection is None:
            raise ValueError("no active connection")  # what aiosqlite says (SQLAlchemy maps it)
        return self._connection

    @property
    def isolation_level(self) -> str | None:
        return self._conn.isolation_level

    @property
    def in_transaction(self) -> bool:
        return self._conn.in_transaction

    def cursor(self) -> Cursor:
        return Cursor(self._conn.cursor(), self._calls)

    async def commit(self) -> None:
        await self._calls.run(self._conn.commit, may_be_brief=False)  # a checkpoint may fsync

    async def rollback(self) -> None:
        await self._calls.settle()  # a leftover call may yet begin a transaction
        if self._conn.in_transaction:  # else nothing to do (every connection given back asks)
            await self._calls.run(self._conn.rollback, may_be_brief=True)

    async def close(self) -> None:
        await self._calls.settle()
        self.stop()

    def stop(self) -> None:
        """Close now, or, while a call still runs on a thread (its task was cancelled, and
        SQLAlchemy ends such a connection at once), as soon as that call ends: never under it."""
        connection, self._connection = self._connection, None
        if connection is None:
            return
        if (leftover := self._calls.leftover) is not None:
            leftover.add_done_callback(lambda _call: connection.close())
        else:
            connection.close()

    async def create_function(self, *args: Any, **kwargs: Any) -> None:
        self._conn.create_function(*args, **kwargs)


class _Opening:
    """What ``connect`` returns: awaited, the connection (as aiosqlite's)."""

    def __init__(self, database: str, timeout_s: float, kwargs: dict[str, Any]) -> None:
        self._database, self._timeout_s, self._kwargs = database, timeout_s, kwargs
        # SQLAlchemy marks aiosqlite's thread a daemon; there is none
        self._thread = self
        self.daemon = True

    def __await__(self) -> Any:
        return self._open().__await__()

    async def _open(self) -> Connection:
        # check_same_thread off: its statements run on the pool's threads, one at a time
        options = {**self._kwargs, "timeout": 0.0, "check_same_thread": False}
        return Connection(sqlite3.connect(self._database, **options), self._timeout_s)


def connect(database: str, *, timeout: float = 5.0, **kwargs: Any) -> _Opening:
    """A connection whose statements wait up to ``timeout`` seconds for the database's lock,
    asleep on the event loop."""
    return _Opening(database, timeout, kwargs)
