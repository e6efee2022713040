"""Pieces shared by the storage backends: stream verification, re-chunking, local-file streaming,
atomic file replacement, and the one place that turns ``OSError`` into ``errors.StorageError``.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import os
import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterator, Sequence
from pathlib import Path

from rgrid import errors
from rgrid.storage import CHUNK_SIZE, BlobInfo, ObjectStorage, validate_key


@contextlib.contextmanager
def wrap_os_errors(action: str) -> Iterator[None]:
    """Re-raise ``OSError`` as ``errors.StorageError`` (``from exc``); rgrid errors pass through.

    ``action`` completes "storage could not …", e.g. ``"write blob 'a/b'"``; it must not hold
    server paths beyond a file name, since the message may reach a client.
    """
    try:
        yield
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise errors.StorageError(f"storage could not {action}: {reason}") from exc


@contextlib.asynccontextmanager
async def closing(chunks: AsyncIterator[bytes]) -> AsyncGenerator[None, None]:
    """On exit, close ``chunks`` if it can be closed (an async generator, an upload body)."""
    try:
        yield
    finally:
        aclose = getattr(chunks, "aclose", None)
        if aclose is not None:
            await aclose()


async def rechunk(
    chunks: AsyncIterator[bytes], size: int = CHUNK_SIZE
) -> AsyncGenerator[bytes, None]:
    """Regroup ``chunks`` into pieces of at least ``size`` bytes (the last may be shorter).

    Holds at most about two pieces in memory, so tiny chunks cost few thread hops downstream.
    A chunk that is big enough on its own passes as it is, without a copy (an upload's body
    arrives in pieces of up to 1 MiB: ``rgrid.api.httpbody``).
    """
    held: list[bytes] = []
    held_bytes = 0
    async for chunk in chunks:
        held.append(chunk)
        held_bytes += len(chunk)
        if held_bytes >= size:
            yield _joined(held)
            held, held_bytes = [], 0
    if held_bytes:
        yield _joined(held)


def _joined(pieces: list[bytes]) -> bytes:
    return pieces[0] if len(pieces) == 1 else b"".join(pieces)


async def iter_file(
    path: Path, *, label: str, offset: int = 0, chunk_size: int = CHUNK_SIZE
) -> AsyncGenerator[bytes, None]:
    """Yield a local file's bytes from ``offset`` on, reading in a worker thread.

    ``errors.NotFound`` ("<label> not found") when there is no regular file at ``path``;
    other ``OSError`` becomes ``errors.StorageError``.
    """
    if offset < 0:
        raise errors.InvalidRequest(f"offset must be >= 0, got {offset}")
    with wrap_os_errors(f"read {label}"):
        fh = await asyncio.to_thread(_open_for_reading, path, offset, label)
        try:
            while chunk := await asyncio.to_thread(fh.read, chunk_size):
                yield chunk
        finally:
            fh.close()


def _open_for_reading(path: Path, offset: int, label: str) -> io.BufferedReader:
    try:
        fh = path.open("rb")
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError) as exc:
        raise errors.NotFound(f"{label} not found") from exc
    try:
        fh.seek(offset)
    except BaseException:
        fh.close()
        raise
    return fh


def temp_sibling(dest: Path) -> Path:
    """A fresh hidden name next to ``dest``, on the same filesystem so that a rename is atomic."""
    return dest.with_name(f".{dest.name}.{uuid.uuid4().hex[:12]}.part")


def replace_atomically(dest: Path, write: Callable[[Path], object]) -> None:
    """Have ``write`` fill a temp file beside ``dest``, then rename it onto ``dest``.

    Blocking; on failure the temp file is removed and ``dest`` is untouched. Raises ``OSError``.
    """
    tmp = temp_sibling(dest)
    try:
        write(tmp)
        os.replace(tmp, dest)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        raise


class FilesThroughPut:
    """``put_file`` for a backend that stores a local file by streaming it through its own
    ``put`` (verified there)."""

    async def put_file(
        self: ObjectStorage,
        key: str,
        src: Path,
        *,
        digest: str | None = None,
        move: bool = False,
        verified: bool = False,  # noqa: ARG002 (the bytes are read to be stored anyway)
    ) -> BlobInfo:
        """See ``ObjectStorage.put_file`` (``move``: ``src`` is removed once stored)."""
        chunks = iter_file(src, label=f"local file {src.name!r}")
        info = await self.put(key, chunks, digest=digest)
        if move:
            src.unlink(missing_ok=True)
        return info


class NoLocalFiles:
    """``copy_to_files`` for a backend whose blobs are not local files: nothing is copied in
    bulk (each blob is fetched and verified on its own)."""

    async def copy_to_files(self, blobs: Sequence[tuple[str, str, Path]]) -> list[bool]:
        """See ``ObjectStorage.copy_to_files``: all False."""
        for key, _, _ in blobs:
            validate_key(key)  # an unsafe key is an error here as everywhere
        return [False] * len(blobs)


class ServedByTheGrid:
    """What a backend without direct URLs or age-based expiry says: its blobs are served only
    through the grid, and go only when the janitor deletes them."""

    async def download_url(self, key: str, expires_s: int) -> None:  # noqa: ARG002
        """See ``ObjectStorage.download_url``: None."""
        validate_key(key)
        return None

    async def expire_unwritten(self, days: int) -> bool:  # noqa: ARG002
        """See ``ObjectStorage.expire_unwritten``: False."""
        return False

    async def rewrite(self, key: str) -> None:
        """See ``ObjectStorage.rewrite``: blobs here do not age by themselves."""
        validate_key(key)
