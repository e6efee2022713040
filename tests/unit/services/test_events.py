"""The in-process notifier: a notification that comes while a follower reads the store is not
lost (it used to be, and the end of every run reached the CLI up to half a second late)."""

from __future__ import annotations

import asyncio
import time

from rgrid.services import events


async def test_a_notification_during_the_read_wakes_the_next_wait_at_once() -> None:
    notifier = events.Notifier()
    with notifier.listening("exec_1") as changes:
        notifier.notify("exec_1")  # as _finish does while a follower awaits the store
        started = time.monotonic()
        await changes.wait(5.0)
        assert time.monotonic() - started < 0.05
        started = time.monotonic()
        await changes.wait(0.2)  # consumed: the next wait waits again
        assert time.monotonic() - started >= 0.19


async def test_other_executions_and_ended_listeners_are_not_woken() -> None:
    notifier = events.Notifier()
    with notifier.listening("exec_1") as changes:
        notifier.notify("exec_2")
        started = time.monotonic()
        await changes.wait(0.1)
        assert time.monotonic() - started >= 0.09
    notifier.notify("exec_1")  # nobody listens any more: nothing kept
    assert notifier._waiters == {}


async def test_a_waiting_follower_is_woken_by_a_notification() -> None:
    notifier = events.Notifier()
    with notifier.listening("exec_1") as changes:
        asyncio.get_running_loop().call_later(0.05, notifier.notify, "exec_1")
        started = time.monotonic()
        await changes.wait(5.0)
        assert 0.04 <= time.monotonic() - started < 1.0


async def test_a_listener_counts_its_notifications_and_a_batch_hears_its_items_end() -> None:
    notifier = events.Notifier()
    with (
        notifier.listening(events.batch_key("batch_1")) as batch,
        notifier.listening("exec_1") as execution,
    ):
        notifier.notify("exec_1", ended_in_batch="batch_1")
        notifier.notify("exec_2", ended_in_batch="batch_1")
        notifier.notify("exec_3")  # not of a batch
        notifier.notify("exec_4", ended_in_batch="batch_2")
        notifier.notify("exec_5")  # a change that is no end
        assert (batch.received, execution.received) == (2, 1)
