"""No loop of the grid may lose a cancel: closing the server waits for each of its tasks.

On Python 3.11, ``asyncio.wait_for`` returns the awaited result when a cancel arrives in the same
turn of the event loop as that result, and the cancel is lost. A loop waiting on a busy event
(the dispatcher's wake-up during a batch) then never ends, and the server's shutdown waits for it
forever, claiming work meanwhile. ``asyncio.timeout`` passes the cancel on.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from pathlib import Path

import rgrid
from rgrid import tasks
from rgrid.services.events import Listener

SOURCE = Path(rgrid.__file__).parent


def test_no_module_waits_with_wait_for() -> None:
    users = [
        f"{path.relative_to(SOURCE)}:{n}"
        for path in sorted(SOURCE.rglob("*.py"))
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if re.search(r"\bwait_for\(", line)
    ]
    assert users == [], "use `async with asyncio.timeout(...)` instead: " + ", ".join(users)


async def test_a_listener_woken_as_it_is_cancelled_still_ends() -> None:
    listening = Listener()

    async def listen_forever() -> None:
        while True:
            await listening.wait(1.0)

    for _ in range(50):
        task = asyncio.create_task(listen_forever())
        await asyncio.sleep(0)  # it waits now
        listening.notified()  # woken ...
        task.cancel()  # ... and cancelled in the same turn of the loop
        done, _ = await asyncio.wait({task}, timeout=2.0)
        assert done == {task} and task.cancelled()


async def test_cancel_and_wait_ends_the_tasks_and_passes_the_callers_cancel_on() -> None:
    async def forever() -> None:
        await asyncio.Event().wait()

    ended = [asyncio.create_task(forever()) for _ in range(3)]
    await tasks.cancel_and_wait(*ended, None)
    assert all(task.cancelled() for task in ended)

    async def stubborn() -> None:  # takes its time to end once cancelled
        try:
            await asyncio.Event().wait()
        finally:
            await asyncio.sleep(0.5)

    slow = asyncio.create_task(stubborn())
    await asyncio.sleep(0)
    closer = asyncio.create_task(tasks.cancel_and_wait(slow))
    await asyncio.sleep(0.05)
    closer.cancel()  # the caller is given up on while it waits
    with contextlib.suppress(asyncio.CancelledError):
        await closer
    assert closer.cancelled()  # not swallowed: it does not go on as if the wait was over
    await asyncio.wait({slow})
