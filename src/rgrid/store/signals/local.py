"""The work signal of a database other servers cannot be told through (SQLite): this process only."""

from __future__ import annotations

from collections.abc import Callable


class InProcessWorkSignal:
    def __init__(self) -> None:
        self._on_work: Callable[[], None] | None = None

    def start(self, on_work: Callable[[], None]) -> None:
        self._on_work = on_work

    def publish(self) -> None:
        if self._on_work is not None:
            self._on_work()

    async def close(self) -> None:
        self._on_work = None
