"""Reading an execution's log: pages (with an optional long-poll wait) and a live stream."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator

from rgrid import domain, store
from rgrid.enums import ArtifactKind
from rgrid.services import Grid, consoles, retention
from rgrid.services.executions import get
from rgrid.store import blobs as blob_repo
from rgrid.store import executions as repo
from rgrid.store import logs as log_repo

MAX_LOG_PAGE = 10_000
MAX_WAIT_S = 30.0
STREAM_BATCH = 5_000
#: how often a live stream re-checks its key, so that a revocation ends it (SPEC §14)
KEY_CHECK_S = 1.0
#: a stream's last page lists the execution's outputs when it has at most this many, so that
#: the client needs no request after it (with more, it asks for the list itself)
FINAL_OUTPUTS = 1_000


@dataclasses.dataclass(frozen=True)
class LogPage:
    execution: domain.Execution
    lines: list[domain.LogLine]
    #: the sequence number a client should resume after
    last_seq: int
    #: a stream's last page: the execution's outputs (None: not listed, or over FINAL_OUTPUTS)
    outputs: list[domain.Artifact] | None = None

    @property
    def done(self) -> bool:
        """The execution ended and every line it produced has been read."""
        return _done(self.execution, self.last_seq)


def _done(execution: domain.Execution, last_seq: int) -> bool:
    return execution.state.terminal and last_seq >= execution.last_seq


async def _page(
    grid: Grid,
    resolved: domain.Execution,
    after: int,
    limit: int,
    attempt: int | None,
    with_outputs: bool = False,
) -> LogPage:
    """The lines after ``after``; ``with_outputs``: a last page lists the outputs too.
    ``resolved``: the execution as read, with its metadata, when the request resolved its id.
    If it had ended then it is used as it is (an ended execution changes no more); a running
    one is read again (it was read before the caller listened for changes: one made in
    between would be missed)."""
    execution_id = resolved.id
    ended = resolved.state.terminal
    outputs = None
    # read-only: no transaction (on PostgreSQL each statement read its own snapshot anyway;
    # the lines are stored before the state that ends an execution, the outputs before too)
    async with store.reading(grid.sessions) as session:
        # its metadata only on the last page, which carries the whole execution: each page
        # before it needs the state and the last line's number alone
        current = resolved if ended else await repo.get(session, execution_id, with_metadata=False)
        assert current is not None
        lines = []
        if current.last_seq > after:  # else none is stored yet (a wake-up for a new state)
            lines = await log_repo.read(
                session, current.log_source, after=after, limit=limit, attempt=attempt
            )
        if attempt is not None and not lines:
            after = max(after, current.last_seq)  # no more lines of that attempt: no waiting
        last_seq = lines[-1].seq if lines else after
        if _done(current, last_seq):
            if not ended:
                current = await repo.add_metadata(session, current)
            if with_outputs:
                listed = await blob_repo.list_artifacts(
                    session, execution_id, ArtifactKind.OUTPUT, limit=FINAL_OUTPUTS + 1
                )
                if len(listed) <= FINAL_OUTPUTS:
                    outputs = retention.with_expiry(grid, listed)
    return LogPage(current, lines, last_seq, outputs)


async def read_logs(
    grid: Grid,
    principal: domain.Principal,
    id_or_prefix: str,
    *,
    after: int,
    limit: int,
    wait_s: float = 0.0,
    attempt: int | None = None,
    with_outputs: bool = False,
) -> LogPage:
    """Lines after ``after``; with ``wait_s`` > 0 waits for new lines or the end (long poll).
    ``with_outputs``: the page that ends the log lists the outputs too (``LogPage.outputs``)."""
    limit = max(1, min(limit, MAX_LOG_PAGE))
    loop = asyncio.get_running_loop()
    deadline = loop.time() + min(max(wait_s, 0.0), MAX_WAIT_S)
    execution = await get(grid, principal, id_or_prefix)
    with grid.notifier.listening(execution.id) as changes:
        while True:
            page = await _page(grid, execution, after, limit, attempt, with_outputs)
            remaining = deadline - loop.time()
            if page.lines or page.done or remaining <= 0:
                return page
            await changes.wait(remaining)


async def open_stream(
    grid: Grid, principal: domain.Principal, id_or_prefix: str, *, after: int
) -> AsyncIterator[LogPage]:
    """Every line after ``after`` as it is stored, in batches; the last page has ``done`` set
    and lists the execution's outputs (``LogPage.outputs``).

    Resolves the execution first, so ``NotFound``/``AmbiguousId`` are raised here, before
    anything is streamed. While streaming, the key is re-checked in the store every
    ``KEY_CHECK_S``: once it is revoked the iterator raises ``Unauthorized``.
    """
    execution = await get(grid, principal, id_or_prefix)
    return _pages(grid, principal, execution, after)


async def _pages(
    grid: Grid, principal: domain.Principal, execution: domain.Execution, after: int
) -> AsyncIterator[LogPage]:
    loop = asyncio.get_running_loop()
    next_check = loop.time() + KEY_CHECK_S
    with grid.notifier.listening(execution.id) as changes:
        while True:
            if loop.time() >= next_check:
                await consoles.ensure_active(grid, principal)
                next_check = loop.time() + KEY_CHECK_S
            page = await _page(grid, execution, after, STREAM_BATCH, None, with_outputs=True)
            if page.lines or page.done:
                yield page
            if page.done:
                return
            after = page.last_seq
            if not page.lines:
                await changes.wait(MAX_WAIT_S)
