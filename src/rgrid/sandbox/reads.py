"""Which input files a sandboxed run opened, seen by the kernel (fanotify), for the result cache.

One ``ReadObserver`` per worker process: a fanotify group in file-handle mode (no descriptor is
opened per event), a filesystem mark on the filesystem holding the work directories while any
run is watched, and a thread that drains the events and hands each to the watches whose input
files it concerns. Events are matched by file handle (the inode and its generation), not by
path: the path of a file opened inside a bubblewrap mount namespace reads as relative to its
bind mount, the same for every execution. A file shared by two executions (a hard link) counts
for both: a read recorded too many makes a later cache lookup miss, one never recorded could
make it hit wrongly, so every doubt is resolved as "read".

Opens by the grid itself are ignored with an ignore mark on the host's mount of the work
directory: the sandbox reaches the same files through mounts of its own namespace. So only
sandboxes with their own mount namespace (bubblewrap) can be observed.
"""

from __future__ import annotations

import ctypes
import errno
import logging
import os
import select
import struct
import threading
from collections.abc import Iterable, Mapping
from pathlib import Path

from rgrid import domain, proc

logger = logging.getLogger(__name__)

#: ``RGRID_READ_TRACKING`` (a server setting): off records every run as "reads not observed"
SETTING = "RGRID_READ_TRACKING"

FAN_CLOEXEC = 0x1
FAN_NONBLOCK = 0x2
FAN_CLASS_NOTIF = 0x0
FAN_UNLIMITED_QUEUE = 0x10
FAN_REPORT_FID = 0x200
FAN_MARK_ADD = 0x1
FAN_MARK_REMOVE = 0x2
FAN_MARK_MOUNT = 0x10
FAN_MARK_IGNORED_MASK = 0x20
FAN_MARK_IGNORED_SURV_MODIFY = 0x40
FAN_MARK_FILESYSTEM = 0x100
FAN_CLOSE_WRITE = 0x8
FAN_CLOSE_NOWRITE = 0x10
FAN_OPEN = 0x20
FAN_Q_OVERFLOW = 0x4000
FAN_EVENT_INFO_TYPE_FID = 1
AT_FDCWD = -100
MAX_HANDLE_SZ = 128
#: an open (of any mode), and how each open ended: read-only, or with write access
MASK = FAN_OPEN | FAN_CLOSE_WRITE | FAN_CLOSE_NOWRITE
METADATA = struct.Struct("=IBBHQii")  # struct fanotify_event_metadata
INFO_HEADER = struct.Struct("=BBH")  # struct fanotify_event_info_header
FSID_BYTES = 8
HANDLE_HEADER = struct.Struct("=Ii")  # struct file_handle: handle_bytes, handle_type
HANDLE_SIZE = struct.Struct("=I")
READ_BUFFER_BYTES = 64 * 1024
POLL_TIMEOUT_MS = 200


class _Libc:
    """The three system calls Python does not wrap."""

    def __init__(self) -> None:
        libc = proc.libc()
        self.init = libc.fanotify_init
        self.init.argtypes = [ctypes.c_uint, ctypes.c_uint]
        self.mark = libc.fanotify_mark
        self.mark.argtypes = [
            ctypes.c_int,
            ctypes.c_uint,
            ctypes.c_uint64,
            ctypes.c_int,
            ctypes.c_char_p,
        ]
        self.name_to_handle_at = libc.name_to_handle_at
        self.name_to_handle_at.argtypes = [
            ctypes.c_int,
            ctypes.c_char_p,
            ctypes.c_void_p,
            ctypes.POINTER(ctypes.c_int),
            ctypes.c_int,
        ]

    def check(self, result: int, what: str) -> int:
        if result < 0:
            code = ctypes.get_errno()
            raise OSError(code, f"{what}: {os.strerror(code)}")
        return result


def file_handles(libc: _Libc, files: Iterable[tuple[str, Path]]) -> dict[bytes, list[str]]:
    """The kernel's handle (type and bytes, as fanotify reports it) of each file, given as
    (its input name, where it is on this host): handle → the names that have it (hard links
    share one)."""
    buffer = ctypes.create_string_buffer(HANDLE_HEADER.size + MAX_HANDLE_SZ)
    view = memoryview(buffer).cast("B")
    mount_id = ctypes.byref(ctypes.c_int())
    call = libc.name_to_handle_at
    found: dict[bytes, list[str]] = {}
    for name, path in files:
        HANDLE_HEADER.pack_into(buffer, 0, MAX_HANDLE_SZ, 0)
        if call(AT_FDCWD, os.fsencode(path), buffer, mount_id, 0) < 0:
            libc.check(-1, f"name_to_handle_at {name}")
        (size,) = HANDLE_SIZE.unpack_from(buffer, 0)
        # the handle's type and bytes, laid out as in a fanotify event
        found.setdefault(view[4 : HANDLE_HEADER.size + size].tobytes(), []).append(name)
    return found


class Watch:
    """The input files of one running execution, and what the observer saw done to them."""

    def __init__(self, observer: ReadObserver, handles: dict[bytes, list[str]], dev: int) -> None:
        self._observer = observer
        self.handles = handles
        self.dev = dev
        #: path → the union of the event masks seen for it
        self.seen: dict[str, int] = {}
        #: False once an event may have been lost
        self.complete = True

    def note(self, handle: bytes, mask: int) -> None:
        for path in self.handles.get(handle, ()):
            self.seen[path] = self.seen.get(path, 0) | mask

    def finish(self) -> domain.InputReads | None:
        """Stop watching once the run has ended (every process of it gone): what it did, or
        None if some events may have been lost. Blocks while pending events are read."""
        if not self._observer.release(self):
            return None
        # an open never seen closed (a file still open at the end) counts as a read
        read = {p for p, m in self.seen.items() if m & FAN_CLOSE_NOWRITE or not m & ~FAN_OPEN}
        written = self.seen.keys() - read
        return domain.InputReads(tuple(sorted(read)), tuple(sorted(written)))


class ReadObserver:
    """A fanotify listener for this process; ``available()`` says whether it can work here."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._watches: list[Watch] = []
        #: handle → the watches that have a file with it (most events concern none)
        self._index: dict[bytes, list[Watch]] = {}
        self._marked: dict[int, tuple[bytes, int]] = {}  # device → (a path on it, watches)
        self._thread: threading.Thread | None = None
        self._libc = _Libc()
        flags = FAN_CLASS_NOTIF | FAN_CLOEXEC | FAN_NONBLOCK | FAN_UNLIMITED_QUEUE | FAN_REPORT_FID
        self._fd = self._libc.check(
            self._libc.init(flags, os.O_RDONLY | os.O_CLOEXEC), "fanotify_init"
        )

    def handles(self, files: Iterable[tuple[str, Path]]) -> dict[bytes, list[str]]:
        """``file_handles`` of these files: to be taken once for files that never change (a
        shared layer's) and given to ``watch`` as ``known``."""
        return file_handles(self._libc, files)

    def handle_of(self, path: Path) -> bytes:
        """The kernel's handle of one file or directory: its inode and that inode's generation,
        so a path removed and made again gets another."""
        return next(iter(file_handles(self._libc, [("", path)])))

    def watch(
        self,
        workdir: Path,
        files: Iterable[tuple[str, Path]],
        known: Mapping[bytes, list[str]] | None = None,
    ) -> Watch:
        """Start watching the input files (their names, and where each is on this host, on
        ``workdir``'s filesystem) of a run about to start, and those whose handles are
        ``known`` already (``handles``). Raises OSError when they cannot be watched (a
        filesystem without file handles or fanotify support)."""
        handles = dict(known or {})
        for handle, names in file_handles(self._libc, files).items():
            handles[handle] = [*handles.get(handle, ()), *names]
        dev = os.stat(workdir).st_dev
        watch = Watch(self, handles, dev)
        with self._lock:
            if dev not in self._marked:
                self._mark(FAN_MARK_ADD, os.fsencode(workdir))
                self._marked[dev] = (os.fsencode(workdir), 0)
            path, count = self._marked[dev]
            self._marked[dev] = (path, count + 1)
            self._watches.append(watch)
            for handle in handles:
                self._index.setdefault(handle, []).append(watch)
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._listen, name="rgrid-reads", daemon=True
                )
                self._thread.start()
        return watch

    def release(self, watch: Watch) -> bool:
        """Read every pending event, then forget ``watch``; whether it saw all of them."""
        with self._lock:
            try:
                self._drain()
            except OSError:
                logger.exception("reading file events failed", extra={"action": "reads_lost"})
                watch.complete = False
            self._watches.remove(watch)
            for handle in watch.handles:
                if len(watchers := self._index[handle]) > 1:
                    watchers.remove(watch)
                else:
                    del self._index[handle]
            path, count = self._marked[watch.dev]
            if count > 1:
                self._marked[watch.dev] = (path, count - 1)
            else:
                del self._marked[watch.dev]
                try:
                    self._mark(FAN_MARK_REMOVE, path)
                except OSError:  # the directory is gone with its mount: nothing left to watch
                    logger.debug("unmarking failed", extra={"action": "reads_unmark_failed"})
        return watch.complete

    def _mark(self, action: int, path: bytes) -> None:
        self._libc.check(
            self._libc.mark(self._fd, action | FAN_MARK_FILESYSTEM, MASK, AT_FDCWD, path),
            "fanotify_mark (filesystem)",
        )
        ignore = FAN_MARK_MOUNT | FAN_MARK_IGNORED_MASK | FAN_MARK_IGNORED_SURV_MODIFY
        # the grid's own opens (inputs written, outputs hashed) come through this mount
        self._libc.check(
            self._libc.mark(self._fd, action | ignore, MASK, AT_FDCWD, path),
            "fanotify_mark (ignore the host's mount)",
        )

    def _listen(self) -> None:
        poller = select.poll()
        poller.register(self._fd, select.POLLIN)
        while True:
            poller.poll(POLL_TIMEOUT_MS)
            with self._lock:
                try:
                    self._drain()
                except OSError:
                    logger.exception("reading file events failed", extra={"action": "reads_lost"})
                    for watch in self._watches:
                        watch.complete = False

    def _drain(self) -> None:
        """Dispatch every queued event (the caller holds the lock)."""
        while True:
            try:
                data = os.read(self._fd, READ_BUFFER_BYTES)
            except BlockingIOError:
                return
            except OSError as exc:
                if exc.errno == errno.EINTR:
                    continue
                raise
            self._dispatch(data)

    def _dispatch(self, data: bytes) -> None:
        offset, end, index = 0, len(data), self._index
        unpack = METADATA.unpack_from
        while offset + METADATA.size <= end:
            length, _, _, header, mask, _, _ = unpack(data, offset)
            if mask & FAN_Q_OVERFLOW:
                for watch in self._watches:
                    watch.complete = False
            handle = _handle_of(data, offset + header, offset + length)
            if handle is not None and (watchers := index.get(handle)):
                for watch in watchers:
                    watch.note(handle, mask)
            offset += max(length, METADATA.size)


def _handle_of(data: bytes, start: int, end: int) -> bytes | None:
    """The file handle in an event's information records (type and bytes), if any."""
    while start + INFO_HEADER.size <= end:
        kind, _, length = INFO_HEADER.unpack_from(data, start)
        if kind == FAN_EVENT_INFO_TYPE_FID:
            at = start + INFO_HEADER.size + FSID_BYTES
            (size,) = HANDLE_SIZE.unpack_from(data, at)
            return data[at + 4 : at + HANDLE_HEADER.size + size]
        if length <= 0:
            return None
        start += length
    return None


_observer: ReadObserver | None = None
_problem: str | None = None
_create_lock = threading.Lock()


def observer() -> ReadObserver | None:
    """This process's observer, made on first use; None where fanotify cannot be had (not
    root, an old kernel), said once in the log."""
    global _observer, _problem
    with _create_lock:
        if _observer is None and _problem is None:
            try:
                _observer = ReadObserver()
            except (OSError, AttributeError) as exc:
                _problem = str(exc)
                logger.warning(
                    "file reads cannot be observed (%s): the result cache matches whole trees",
                    _problem,
                    extra={"action": "reads_unavailable"},
                )
        return _observer
