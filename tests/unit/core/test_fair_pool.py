"""The store's connection pool queue (``store.pool.FairQueue``): connections go to requests in
the order they began to wait; one that gave up loses nothing."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy.util import greenlet_spawn
from sqlalchemy.util.queue import Empty

from rgrid.store.pool import FairQueue


async def _take(
    queue: FairQueue, name: str, got: list[tuple[str, str]], timeout: float = 5
) -> None:
    got.append((name, await greenlet_spawn(queue.get, True, timeout)))


async def test_a_connection_given_back_goes_to_the_longest_waiter() -> None:
    queue = FairQueue(maxsize=5)
    got: list[tuple[str, str]] = []
    first = asyncio.create_task(_take(queue, "first", got))
    second = asyncio.create_task(_take(queue, "second", got))
    await asyncio.sleep(0.05)  # both wait
    # a request that arrives now runs before the woken waiter does: it must not take the
    # connection given back, as it did with asyncio.Queue's get
    late = asyncio.create_task(_take(queue, "late", got))
    queue.put_nowait("conn-1")
    await asyncio.sleep(0.05)
    queue.put_nowait("conn-2")
    queue.put_nowait("conn-3")
    await asyncio.gather(first, second, late)
    assert got == [("first", "conn-1"), ("second", "conn-2"), ("late", "conn-3")]


async def test_a_waiter_that_gives_up_loses_no_connection() -> None:
    queue = FairQueue(maxsize=5)
    got: list[tuple[str, str]] = []
    with pytest.raises(Empty):
        await _take(queue, "impatient", got, timeout=0.05)
    cancelled = asyncio.create_task(_take(queue, "cancelled", got))
    patient = asyncio.create_task(_take(queue, "patient", got))
    await asyncio.sleep(0.05)
    cancelled.cancel()
    await asyncio.sleep(0)
    queue.put_nowait("conn-1")  # passes over the two that gave up
    await patient
    assert got == [("patient", "conn-1")]
    queue.put_nowait("conn-2")  # nobody waits: kept for the next request
    assert await greenlet_spawn(queue.get, False) == "conn-2"
