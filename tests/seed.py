"""Filler history for scale tests and benches: thousands of finished executions written
straight into a grid's database (running them would take an hour). They are ordinary rows:
the API lists, filters and pages them like any other; only their runs never happened."""

from __future__ import annotations

import asyncio
import concurrent.futures
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import insert, text

from rgrid import store
from rgrid.store.models import ExecutionMetadataRow, ExecutionRow

SEEDED_SCRIPTS = ("seed_a.py", "seed_b.py")
CHUNK = 5000


def _row(i: int, account_id: str, created: datetime) -> dict[str, Any]:
    failed = i % 7 == 0
    return {
        "id": f"exec_seed{i:07d}",
        "account_id": account_id,
        "state": "failed" if failed else "succeeded",
        "script": SEEDED_SCRIPTS[i % 2],
        "args": [f"item-{i}"],
        "env_ciphertext": "",
        "env_names": [],
        "timeout_s": 60.0,
        "memory_bytes": 2**30,
        "disk_bytes": 10 * 2**30,
        "dirs": [],
        "output_dirs": [],
        "network": True,
        "exit_code": 1 if failed else 0,
        "failure_class": "script_error" if failed else None,
        "cause": "the script exited with code 1" if failed else None,
        "attempt": 1,
        "created_at": created,
        "queued_at": created,
        "started_at": created,
        "finished_at": created + timedelta(seconds=2),
        "updated_at": created + timedelta(seconds=2),
        "last_seq": 0,
        "cancel_requested": False,
        "requirements": [],
        "dependency_source": "none",
        "packages": [],
        "max_retries": 2,
        "superseded": False,
        "cost_micros": 5,
        "cost_final": True,
    }


async def seed_executions_async(
    database_url: str, account_id: str, count: int, *, days: int = 20
) -> None:
    """``count`` finished executions of ``account_id``, spread over the last ``days`` days:
    every seventh failed, the others succeeded; each with metadata ``shard=N%4``."""
    engine = store.make_engine(database_url)
    now = datetime.now(UTC)
    step = timedelta(seconds=days * 86400 / count)
    start = now - timedelta(days=days)
    try:
        for first in range(0, count, CHUNK):
            numbers = range(first, min(first + CHUNK, count))
            async with store.transaction(store.session_factory(engine)) as session:
                await session.execute(
                    insert(ExecutionRow), [_row(i, account_id, start + i * step) for i in numbers]
                )
                await session.execute(
                    insert(ExecutionMetadataRow),
                    [
                        {"execution_id": f"exec_seed{i:07d}", "key": "shard", "value": str(i % 4)}
                        for i in numbers
                    ],
                )
        async with engine.begin() as connection:
            # the statistics autovacuum keeps on a grid that grew over weeks, not in one go
            await connection.execute(text("ANALYZE"))
    finally:
        await engine.dispose()


def seed_executions(database_url: str, account_id: str, count: int, *, days: int = 20) -> None:
    """The same from synchronous code, in a thread of its own: the caller may be inside an
    event loop already (Playwright's sync API runs one)."""
    seeding = seed_executions_async(database_url, account_id, count, days=days)
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, seeding).result()
