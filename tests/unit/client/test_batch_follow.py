"""Following a batch: after the first page, each poll asks the grid to hold its answer until
the batch ends; a grid that answers at once (one from before the long poll) is still asked no
more often than every ``POLL_S``."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

from rgrid import schemas
from rgrid.client import batch


def _page(done: bool) -> schemas.BatchItemsPublic:
    counts = {"succeeded": 1} if done else {"running": 1}
    public = schemas.BatchPublic(
        id="batch_1", script="s.py", parallel=1, total=1, created_at=datetime.now(UTC),
        counts=counts, done=done,
    )  # fmt: skip
    return schemas.BatchItemsPublic(batch=public, data=[], next_changed_after=datetime.now(UTC))


class AnsweringAtOnce:
    """A grid that ignores ``wait``: the batch ends at the fourth page."""

    def __init__(self) -> None:
        self.asked: list[tuple[float, float]] = []  # (when, wait_s)
        self.inline: set[int] = set()

    def batch_items(
        self, _batch_id: str, _after: Any, wait_s: float = 0.0, inline_bytes: int = 0
    ) -> Any:
        self.asked.append((time.monotonic(), wait_s))
        self.inline.add(inline_bytes)
        return _page(done=len(self.asked) == 4)


def test_a_grid_that_answers_at_once_is_polled_every_poll_interval() -> None:
    grid = AnsweringAtOnce()
    final, _ = batch.follow(grid, "batch_1", lambda *_: None, lambda _: None, inline_bytes=512)  # type: ignore[arg-type]
    assert final.done
    assert grid.inline == {512}  # every page asked for small outputs inline
    waits = [wait for _, wait in grid.asked]
    assert waits == [0.0, batch.POLL_S, batch.POLL_S, batch.POLL_S]  # the first page at once
    gaps = [b - a for (a, _), (b, _) in zip(grid.asked[1:], grid.asked[2:], strict=False)]
    assert all(gap >= batch.POLL_S * 0.95 for gap in gaps), gaps
