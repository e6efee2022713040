"""rgrid's own stdin, for the script (SPEC §4.1): a terminal gives it end-of-file; anything
else (a pipe, a redirected file, ``/dev/null``) is spooled to a temporary file while hashed,
then uploaded like any input blob, so neither side ever holds it whole in memory."""

from __future__ import annotations

import contextlib
import os
import select
import stat
from collections.abc import Callable, Iterator
from pathlib import Path

from rgrid import digests, errors
from rgrid.client.bundle import LocalFile

CHUNK = 1024 * 1024
#: how long a read may wait for its first byte before the user is told rgrid is reading stdin
QUIET_NOTICE_S = 3.0
#: how the stdin is named in messages and upload reports
STDIN_NAME = "<stdin>"


def _mode(fd: int) -> int | None:
    """The file type of ``fd``, or None when it is closed."""
    try:
        return os.fstat(fd).st_mode
    except OSError:
        return None


def is_piped(fd: int = 0) -> bool:
    """Whether ``fd`` carries input for the script: open and not a terminal."""
    return _mode(fd) is not None and not os.isatty(fd)


def refuse_for_batch(fd: int = 0) -> None:
    """``UsageError`` when ``fd`` is a pipe, socket or file: one stdin cannot feed many
    executions. A terminal, a closed fd or a device such as ``/dev/null`` (how cron and CI
    start commands) carries nothing meant for a script and is let through."""
    mode = _mode(fd)
    if mode is None or os.isatty(fd) or stat.S_ISCHR(mode):
        return
    raise errors.UsageError(
        "--batch cannot forward stdin: it is piped or redirected, and one input cannot feed "
        "every execution",
        hint="save it to a file and pass that as an argument, or run with `< /dev/null`",
    )


@contextlib.contextmanager
def spooled(fd: int = 0, on_quiet: Callable[[], None] | None = None) -> Iterator[LocalFile]:
    """Read ``fd`` to its end into a temporary file, hashing it on the way; yields it as a
    ``LocalFile`` named ``STDIN_NAME`` (removed on exit). ``on_quiet`` is called once if
    nothing arrives for ``QUIET_NOTICE_S`` (a pipe nobody writes to would wait forever). An
    empty stdin (``< /dev/null``, as cron and CI give) needs no file: it is ``os.devnull``."""
    if on_quiet is not None and not _ready(fd, QUIET_NOTICE_S):
        on_quiet()
    first = _read(fd)
    if not first:
        yield LocalFile(
            rel=STDIN_NAME, source=Path(os.devnull), digest=digests.of_bytes(b""), size=0
        )
        return
    import tempfile  # here: only a stdin with bytes needs it, and it costs a run's start ms

    hasher = digests.Hasher()
    size = 0
    handle, name = tempfile.mkstemp(prefix="rgrid-stdin-")
    path = Path(name)
    try:
        with os.fdopen(handle, "wb") as out:
            chunk = first
            while chunk:
                hasher.update(chunk)
                out.write(chunk)
                size += len(chunk)
                chunk = _read(fd)
        yield LocalFile(rel=STDIN_NAME, source=path, digest=hasher.result(), size=size)
    finally:
        path.unlink(missing_ok=True)


def _ready(fd: int, timeout_s: float) -> bool:
    try:
        readable, _, _ = select.select([fd], [], [], timeout_s)
    except (OSError, ValueError):
        return True  # not selectable: just read it
    return bool(readable)


def _read(fd: int) -> bytes:
    try:
        return os.read(fd, CHUNK)
    except OSError as exc:
        raise errors.UsageError(
            f"cannot read stdin: {exc.strerror or exc}",
            hint="run it with `< /dev/null` if the script reads nothing",
        ) from exc
